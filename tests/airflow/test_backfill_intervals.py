"""The `make run` window, checked against Airflow's own backfill planning for the real DAG."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from recurly_elt.local.backfill import BackfillWindow

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def serialized_daily_sync():
    """The DAG as the scheduler sees it (what `airflow backfill create` plans with)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagBag(dag_folder=str(DAGS)).dags["recurly_daily_sync"]
    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


@pytest.mark.parametrize("days", [1, 3, 7])
def test_backfill_dates_give_exactly_the_window_intervals(serialized_daily_sync, days):
    window = BackfillWindow(today=date(2025, 3, 10), days=days)
    infos = list(serialized_daily_sync.iter_dagrun_infos_between(window.from_date, window.to_date))
    assert [(i.data_interval.start, i.data_interval.end) for i in infos] == window.intervals()
    assert [i.logical_date for i in infos] == [start for start, _ in window.intervals()]


def test_the_running_day_is_never_planned(serialized_daily_sync):
    """Up to today 00:00 inclusive: Airflow plans today's run too, but drops it (its interval has
    not ended), so either --to-date gives the same 3 runs; we pass D-1 to say what we mean."""
    from airflow.models.backfill import _get_info_list

    now = datetime.now(timezone.utc)
    window = BackfillWindow.ending_now(3, now=now)
    infos = _get_info_list(from_date=window.from_date, to_date=window.end, reverse=False, dag=serialized_daily_sync)
    assert [(i.data_interval.start, i.data_interval.end) for i in infos] == window.intervals()
    assert window.intervals()[-1][1] <= now < window.end + timedelta(days=1)
