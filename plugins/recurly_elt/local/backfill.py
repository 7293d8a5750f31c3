"""The backfill `make run` asks the scheduler for, and the wait for its runs.

Window arithmetic (no Airflow needed): with D = today 00:00 UTC, the last N complete days are
the data intervals [D-N, D-N+1) ... [D-1, D). The daily-sync timetable labels each run with its
interval start (the logical date), and `airflow backfill create` takes the *logical dates* to
cover, both ends inclusive: so `--from-date D-N --to-date D-1` creates exactly N runs. (A run
whose interval has not ended yet is never created, so `--to-date D` would give the same N.)

Creating goes through the `airflow backfill create` command, as a user would type it (see
airflow_cli.py); the scheduler runs the backfill; pausing and cancelling go through Airflow's REST
API (airflow_api.py), and so does `read_progress`, whose figures `wait_for_progress` prints.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from recurly_elt.local.airflow_api import api_time

if TYPE_CHECKING:
    from recurly_elt.local.airflow_api import AirflowApi

DAG_ID = "recurly_daily_sync"
REPROCESS_CHOICES = ("none", "failed", "completed")
FINISHED_RUN_STATES = {"success", "failed"}
FINISHED_TASK_STATES = {"success", "failed", "skipped", "upstream_failed", "removed"}


class BackfillError(RuntimeError):
    pass


@dataclass(frozen=True)
class BackfillWindow:
    """The last `days` complete UTC days before `today`."""

    today: date
    days: int = 3

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"a backfill needs at least one day, got {self.days}")

    @property
    def end(self) -> datetime:
        """D: today 00:00 UTC, the end of the last interval."""
        return datetime.combine(self.today, dtime(0), tzinfo=timezone.utc)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)

    @property
    def from_date(self) -> datetime:
        """`--from-date`: the logical date (interval start) of the first run."""
        return self.start

    @property
    def to_date(self) -> datetime:
        """`--to-date`, inclusive: the logical date of the last run, [D-1, D)."""
        return self.end - timedelta(days=1)

    def intervals(self) -> list[tuple[datetime, datetime]]:
        return [
            (self.start + timedelta(days=i), self.start + timedelta(days=i + 1)) for i in range(self.days)
        ]

    @classmethod
    def ending_now(cls, days: int = 3, now: datetime | None = None) -> "BackfillWindow":
        now = now or datetime.now(timezone.utc)
        return cls(today=now.astimezone(timezone.utc).date(), days=days)


def backfill_command(
    airflow_bin: Path | str,
    window: BackfillWindow,
    *,
    dag_id: str = DAG_ID,
    reprocess: str = "completed",
    max_active_runs: int = 1,
) -> list[str]:
    if reprocess not in REPROCESS_CHOICES:
        raise ValueError(f"reprocess must be one of {REPROCESS_CHOICES}, got {reprocess!r}")
    return [
        str(airflow_bin), "backfill", "create",
        "--dag-id", dag_id,
        "--from-date", window.from_date.isoformat(),
        "--to-date", window.to_date.isoformat(),
        "--reprocess-behavior", reprocess,
        "--max-active-runs", str(max_active_runs),
    ]


def cancel_backfill_of(api: AirflowApi, window: BackfillWindow, dag_id: str = DAG_ID) -> int | None:
    """Cancel the running backfill of exactly this window, if any (a half-made one); its id."""
    active = api.active_backfill(dag_id)
    if active and (as_utc(active[1]), as_utc(active[2])) == (window.from_date, window.to_date):
        api.cancel_backfill(active[0])
        return active[0]
    return None


@dataclass(frozen=True)
class Progress:
    """Where the window's runs stand: counts of runs per state and of finished tasks."""

    runs: dict[str, int]
    tasks_done: int
    tasks_total: int
    backfill_complete: bool

    @property
    def finished(self) -> bool:
        return self.backfill_complete and sum(self.runs.values()) > 0 and set(self.runs) <= FINISHED_RUN_STATES

    def line(self, elapsed: float) -> str:
        runs = ", ".join(f"{self.runs.get(s, 0)} {s}" for s in ("queued", "running", "success", "failed"))
        return f"[{elapsed:5.0f}s] runs: {runs} | tasks done: {self.tasks_done}/{self.tasks_total}"


def read_progress(
    api: "AirflowApi",
    window: BackfillWindow | None,
    backfill_id: int | None,
    dag_id: str = DAG_ID,
    run_ids: list[str] | None = None,
) -> Progress:
    """The runs of `dag_id` whose logical date lies in `window` (or the runs `run_ids`), from the
    REST API."""
    runs = api.dag_runs(dag_id, from_date=window.from_date if window else None,
                        to_date=window.to_date if window else None, run_ids=run_ids)
    found = [r["dag_run_id"] for r in runs]
    task_states = [t["state"] for t in api.task_instances(dag_id, found)]
    complete = api.backfill_completed(backfill_id) if backfill_id is not None else True
    states = Counter(str(r["state"]) for r in runs)
    done = sum(1 for s in task_states if s is not None and s in FINISHED_TASK_STATES)
    return Progress(runs=dict(states), tasks_done=done, tasks_total=len(task_states), backfill_complete=complete)


def wait_for_progress(
    read: Callable[[], Progress],
    *,
    timeout: float,
    every: float = 5.0,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """Poll `read` until the runs it describes have finished (see `Progress.finished`).

    Prints a progress line whenever the figures change, and at least every 30 s.
    """
    started = clock()
    last_line, last_print = None, 0.0
    while True:
        progress = read()
        elapsed = clock() - started
        line = progress.line(elapsed)
        body = line.split("]", 1)[1]
        if body != last_line or elapsed - last_print >= 30:
            out(line)
            last_line, last_print = body, elapsed
        if progress.finished:
            return progress
        if elapsed > timeout:
            raise BackfillError(
                f"the runs did not finish within {timeout:.0f}s ({line.strip()}); "
                "the scheduler log is in .local/logs/airflow-scheduler.log"
            )
        sleep(every)


def dag_parse_status(api: "AirflowApi", dag_id: str = DAG_ID,
                     parsed_since: datetime | None = None) -> tuple[bool, dict[str, str]]:
    """(is the DAG known to the API [and parsed again since `parsed_since`], {file: error} of import
    errors), from the REST API: the import errors are what `airflow dags list-import-errors` prints.

    `parsed_since` matters when the DAG processor was already running: a DAG file may read
    Variables at parse time, so the DAG must be parsed again after the settings were loaded.
    """
    dag = api.dag(dag_id)
    last_parsed = dag.get("last_parsed_time") if dag else None
    fresh = parsed_since is None or (
        last_parsed is not None and as_utc(api_time(last_parsed)) >= parsed_since)
    return dag is not None and fresh, api.import_errors()


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
