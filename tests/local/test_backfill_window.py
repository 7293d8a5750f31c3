"""Window arithmetic of the `make run` backfill, its command line, and the progress wait."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from recurly_elt.local.backfill import BackfillError, BackfillWindow, Progress, backfill_command, wait_for_progress

UTC = timezone.utc


def test_three_complete_days_before_today():
    window = BackfillWindow.ending_now(3, now=datetime(2025, 3, 10, 14, 30, tzinfo=UTC))
    assert window.today == date(2025, 3, 10)
    assert window.intervals() == [
        (datetime(2025, 3, 7, tzinfo=UTC), datetime(2025, 3, 8, tzinfo=UTC)),
        (datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 9, tzinfo=UTC)),
        (datetime(2025, 3, 9, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC)),
    ]
    # backfill create takes logical dates (= interval starts), both ends inclusive
    assert window.from_date == datetime(2025, 3, 7, tzinfo=UTC)
    assert window.to_date == datetime(2025, 3, 9, tzinfo=UTC)


def test_today_is_the_utc_day():
    from datetime import timedelta

    tokyo = timezone(timedelta(hours=9))
    # 2025-03-10 01:00 in Tokyo is still 2025-03-09 in UTC
    window = BackfillWindow.ending_now(3, now=datetime(2025, 3, 10, 1, 0, tzinfo=tokyo))
    assert window.end == datetime(2025, 3, 9, tzinfo=UTC)


def test_at_midnight_the_day_just_ended_is_included():
    window = BackfillWindow.ending_now(1, now=datetime(2025, 1, 1, 0, 0, tzinfo=UTC))
    assert window.intervals() == [(datetime(2024, 12, 31, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))]
    assert window.from_date == window.to_date


def test_at_least_one_day():
    with pytest.raises(ValueError):
        BackfillWindow(today=date(2025, 1, 1), days=0)


def test_backfill_command():
    window = BackfillWindow(today=date(2025, 3, 10), days=3)
    assert backfill_command("airflow", window, reprocess="completed", max_active_runs=1) == [
        "airflow", "backfill", "create", "--dag-id", "recurly_daily_sync",
        "--from-date", "2025-03-07T00:00:00+00:00", "--to-date", "2025-03-09T00:00:00+00:00",
        "--reprocess-behavior", "completed", "--max-active-runs", "1",
    ]
    with pytest.raises(ValueError, match="reprocess"):
        backfill_command("airflow", window, reprocess="everything")


def test_progress_finished_only_when_backfill_complete_and_runs_done():
    done = Progress(runs={"success": 2, "failed": 1}, tasks_done=9, tasks_total=9, backfill_complete=True)
    assert done.finished
    assert not Progress(runs={"success": 3}, tasks_done=9, tasks_total=9, backfill_complete=False).finished
    assert not Progress(runs={"success": 2, "running": 1}, tasks_done=8, tasks_total=9, backfill_complete=True).finished
    assert not Progress(runs={}, tasks_done=0, tasks_total=0, backfill_complete=True).finished


def test_progress_line():
    progress = Progress(runs={"queued": 1, "running": 1, "success": 1}, tasks_done=4, tasks_total=9,
                        backfill_complete=False)
    assert progress.line(12.4) == "[   12s] runs: 1 queued, 1 running, 1 success, 0 failed | tasks done: 4/9"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_prints_changes_and_returns_when_finished():
    states = iter([
        Progress({"queued": 3}, 0, 3, False),
        Progress({"queued": 3}, 0, 3, False),  # unchanged: not printed again
        Progress({"running": 1, "queued": 2}, 0, 3, False),
        Progress({"success": 3}, 3, 3, True),
    ])
    clock, lines = FakeClock(), []
    result = wait_for_progress(lambda: next(states), timeout=100, every=5, out=lines.append,
                               sleep=clock.sleep, clock=clock)
    assert result.runs == {"success": 3}
    assert [line.split("] ")[1] for line in lines] == [
        "runs: 3 queued, 0 running, 0 success, 0 failed | tasks done: 0/3",
        "runs: 2 queued, 1 running, 0 success, 0 failed | tasks done: 0/3",
        "runs: 0 queued, 0 running, 3 success, 0 failed | tasks done: 3/3",
    ]


def test_wait_repeats_an_unchanged_line_every_30_seconds():
    clock, lines = FakeClock(), []
    calls = {"n": 0}

    def read():
        calls["n"] += 1
        return Progress({"success": 3}, 3, 3, True) if calls["n"] > 8 else Progress({"running": 1}, 0, 1, False)

    wait_for_progress(read, timeout=100, every=5, out=lines.append, sleep=clock.sleep, clock=clock)
    assert [line[:8] for line in lines] == ["[    0s]", "[   30s]", "[   40s]"]


def test_wait_times_out_with_a_clear_error():
    clock = FakeClock()
    with pytest.raises(BackfillError, match="did not finish within 20s"):
        wait_for_progress(lambda: Progress({"running": 1}, 0, 1, False), timeout=20, every=5,
                          out=lambda line: None, sleep=clock.sleep, clock=clock)

