"""The per-run table every run's `run_summary` task logs and `make run` prints: one row per run
(id, data interval, state, duration) and the figures the warehouse holds for it.

The per-run figures come from whatever the warehouse already has, so this keeps working as the
pipeline grows: the extraction run log (a table whose name ends in `run_log`, with `run_id`,
`resource` and `records` columns) when it exists, otherwise the staging rows each run wrote last
(`stg_*._run_id`), otherwise nothing. A missing warehouse is not an error.
"""

from __future__ import annotations

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


def with_figures(rows: Sequence[RunRow], figures: WarehouseFigures) -> list[RunRow]:
    return [
        RunRow(**{**row.__dict__, "figures": figures.by_run.get(row.run_id, {})}) for row in rows
    ]
