"""What `make run` prints at the end: one row per run, the figures the warehouse holds for it,
the log tail of any failed task, and how to log in to the UI.

The per-run figures come from whatever the warehouse already has, so this module keeps working
as the pipeline grows: the extraction run log (a table whose name ends in `run_log`, with
`run_id`, `resource` and `records` columns) when it exists, otherwise the staging rows each run
wrote last (`stg_*._run_id`), otherwise nothing. A missing warehouse is not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class RunRow:
    run_id: str
    interval_start: datetime | None
    interval_end: datetime | None
    state: str
    started: datetime | None = None
    ended: datetime | None = None
    figures: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return (self.ended - self.started).total_seconds()


@dataclass(frozen=True)
class WarehouseFigures:
    """Per-run counts by resource, and where they were read from (shown under the table)."""

    source: str = ""
    by_run: dict[str, dict[str, int]] = field(default_factory=dict)


def _day(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d") if (value.hour, value.minute, value.second) == (0, 0, 0) else value.isoformat()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def render_table(rows: Sequence[RunRow]) -> str:
    """A plain-text table: run id, data interval, state, duration, then one column per resource."""
    resources = sorted({name for row in rows for name in row.figures})
    header = ["run id", "data interval", "state", "duration", *resources]
    body = [
        [
            row.run_id,
            f"[{_day(row.interval_start)}, {_day(row.interval_end)})",
            row.state,
            _duration(row.seconds),
            *(str(row.figures[r]) if r in row.figures else "-" for r in resources),
        ]
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body)]
    numeric = [False] * 4 + [True] * len(resources)

    def line(cells: Iterable[str]) -> str:
        return "  ".join(
            cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric)
        ).rstrip()

    out = [line(header), line("-" * w for w in widths)]
    out += [line(cells) for cells in body] or ["(no runs)"]
    return "\n".join(out)


# --- the warehouse ---------------------------------------------------------------------------------


def _run_log_figures(conn: Any, inspector: Any, run_ids: list[str]) -> WarehouseFigures | None:
    import sqlalchemy as sa

    for table in sorted(t for t in inspector.get_table_names() if t.endswith("run_log")):
        columns = {c["name"] for c in inspector.get_columns(table)}
        if not {"run_id", "resource", "records"} <= columns:
            continue
        t = sa.table(table, sa.column("run_id"), sa.column("resource"), sa.column("records"))
        query = (
            sa.select(t.c.run_id, t.c.resource, sa.func.sum(t.c.records))
            .where(t.c.run_id.in_(run_ids))
            .group_by(t.c.run_id, t.c.resource)
        )
        by_run: dict[str, dict[str, int]] = {}
        for run_id, resource, records in conn.execute(query):
            by_run.setdefault(run_id, {})[str(resource)] = int(records or 0)
        source = f"records read per resource, all attempts of the run (warehouse table {table})"
        return WarehouseFigures(source=source, by_run=by_run)
    return None


def _staging_figures(conn: Any, inspector: Any, run_ids: list[str]) -> WarehouseFigures | None:
    import sqlalchemy as sa

    tables = sorted(t for t in inspector.get_table_names() if t.startswith("stg_"))
    by_run: dict[str, dict[str, int]] = {}
    found = False
    for table in tables:
        if "_run_id" not in {c["name"] for c in inspector.get_columns(table)}:
            continue
        found = True
        t = sa.table(table, sa.column("_run_id"))
        query = sa.select(t.c._run_id, sa.func.count()).where(t.c._run_id.in_(run_ids)).group_by(t.c._run_id)
        for run_id, count in conn.execute(query):
            by_run.setdefault(run_id, {})[table.removeprefix("stg_")] = int(count)
    if not found:
        return None
    return WarehouseFigures(source="staging rows last written by each run (stg_* tables)", by_run=by_run)


def warehouse_figures(url: Any, run_ids: Sequence[str]) -> WarehouseFigures:
    """Per-run figures from the warehouse at `url`; empty when it or its tables do not exist yet."""
    import sqlalchemy as sa

    from recurly_elt.warehouse.engine import create_engine_from_url, normalize_url

    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or not Path(parsed.database).exists()):
        return WarehouseFigures(source="no warehouse file yet")
    engine = create_engine_from_url(parsed)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for reader in (_run_log_figures, _staging_figures):
                figures = reader(conn, inspector, list(run_ids))
                if figures is not None:
                    return figures
    except sa.exc.SQLAlchemyError as exc:
        return WarehouseFigures(source=f"warehouse not readable: {type(exc).__name__}")
    finally:
        engine.dispose()
    return WarehouseFigures(source="no staging tables yet")


# --- task logs -------------------------------------------------------------------------------------


def _render_log_line(line: str) -> str:
    """Airflow 3 task logs are JSON lines; show them as `time level message` (+ the exception)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    text = f"{record.get('timestamp', '')} {str(record.get('level', '')).upper():7} {record.get('event', '')}"
    for error in record.get("error_detail") or []:
        if isinstance(error, dict):
            text += f"\n    {error.get('exc_type', '')}: {error.get('exc_value', '')}"
    return text.strip()


def render_log_tail(path: Path, lines: int = 25) -> str:
    try:
        raw = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(log not found: {path})"
    return "\n".join(_render_log_line(line) for line in raw[-lines:])


def task_log_path(logs_folder: Path, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
    """Airflow 3's default log file name template."""
    folder = Path(logs_folder) / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if map_index >= 0:
        folder = folder / f"map_index={map_index}"
    return folder / f"attempt={try_number}.log"


# --- the metadata database (needs the local Airflow environment in os.environ) -------------------


def collect_runs(dag_id: str, from_date: datetime, to_date: datetime) -> list[RunRow]:
    """The DAG's runs whose logical date lies in [from_date, to_date], oldest first."""
    from sqlalchemy import select

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.scalars(
            select(DagRun)
            .where(DagRun.dag_id == dag_id, DagRun.logical_date >= from_date, DagRun.logical_date <= to_date)
            .order_by(DagRun.logical_date)
        ).all()
        return [
            RunRow(
                run_id=r.run_id,
                interval_start=r.data_interval_start,
                interval_end=r.data_interval_end,
                state=str(getattr(r.state, "value", r.state)),
                started=r.start_date,
                ended=r.end_date,
            )
            for r in runs
        ]


@dataclass(frozen=True)
class FailedTask:
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str
    log_file: Path

    @property
    def label(self) -> str:
        return f"{self.task_id}[{self.map_index}]" if self.map_index >= 0 else self.task_id


def failed_tasks(dag_id: str, run_ids: Sequence[str], logs_folder: Path) -> list[FailedTask]:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(TI.run_id, TI.task_id, TI.map_index, TI.try_number, TI.state)
            .where(TI.dag_id == dag_id, TI.run_id.in_(list(run_ids)), TI.state.in_(["failed", "upstream_failed"]))
            .order_by(TI.run_id, TI.task_id, TI.map_index)
        ).all()
    return [
        FailedTask(
            run_id=r.run_id,
            task_id=r.task_id,
            map_index=r.map_index,
            try_number=r.try_number,
            state=str(getattr(r.state, "value", r.state)),
            log_file=task_log_path(logs_folder, dag_id, r.run_id, r.task_id, r.map_index, r.try_number),
        )
        for r in rows
    ]


def with_figures(rows: Sequence[RunRow], figures: WarehouseFigures) -> list[RunRow]:
    return [
        RunRow(**{**row.__dict__, "figures": figures.by_run.get(row.run_id, {})}) for row in rows
    ]


def login_lines(ui_url: str, user: str, passwords_file: Path) -> list[str]:
    """How to open the UI; the password is the one the simple auth manager generated locally."""
    try:
        password = json.loads(Path(passwords_file).read_text()).get(user)
    except (OSError, ValueError):
        password = None
    shown = password if password else f"(see {passwords_file})"
    from recurly_elt.ui.plugin import EXTERNAL_VIEWS

    pages = [v for v in EXTERNAL_VIEWS if v["destination"] == "nav"]
    return [f"Airflow UI: {ui_url}", f"  login: {user} / {shown}",
            f"Recurly pages (plugin recurly): {ui_url}/plugin/{pages[0]['url_route']}",
            "  " + ", ".join(f"{v['name']}: {ui_url}/plugin/{v['url_route']}" for v in pages[1:]),
            "  and on each DAG run's page, the tab \"Sync summary\""]
