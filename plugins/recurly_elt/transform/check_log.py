"""The data-quality check log: one row per check run, for the run-history page and analysts.

Written by the DAG's `transform.check` task after each check, pass or fail (a failing check is
recorded before the task fails). Columns: run_id (the Airflow run), check_name, status (`pass` or
`fail`), offending_rows, checked_rows (rows in the tables the check reads), description,
checked_at (UTC).
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa

from recurly_elt.warehouse.engine import write_transaction

METADATA = sa.MetaData()

CHECK_LOG = sa.Table(
    "transform_check_log", METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text()),
    sa.Column("check_name", sa.Text(), nullable=False),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("offending_rows", sa.BigInteger(), nullable=False),
    sa.Column("checked_rows", sa.BigInteger(), nullable=False),
    sa.Column("description", sa.Text()),
    sa.Column("checked_at", sa.DateTime(), nullable=False),
)


def record(engine: sa.Engine, *, run_id: str | None, check_name: str, offending_rows: int, checked_rows: int,
           description: str) -> None:
    CHECK_LOG.create(engine, checkfirst=True)
    with write_transaction(engine) as conn:
        conn.execute(CHECK_LOG.insert().values(
            run_id=run_id, check_name=check_name, status="pass" if offending_rows == 0 else "fail",
            offending_rows=offending_rows, checked_rows=checked_rows, description=description,
            checked_at=datetime.now(timezone.utc).replace(tzinfo=None)))


def run_and_record(engine: sa.Engine, name: str, run_id: str | None, log) -> None:
    """Run one check, log what it checked and how many rows it found, record it, and raise
    DataQualityError (naming the offending rows) when it fails."""
    from recurly_elt.transform import checks

    counts = checks.checked_rows(engine, name)
    checked = sum(counts.values())
    described = ", ".join(f"{n:,} rows of {t}" for t, n in counts.items()) or "no table"
    try:
        checks.run_check(engine, name)
    except checks.DataQualityError as exc:
        offending = int(getattr(exc, "offending_rows", 1))
        record(engine, run_id=run_id, check_name=name, offending_rows=offending, checked_rows=checked,
               description=checks.CHECKS[name].description)
        log.error("check %s FAILED: checked %s; %d offending row(s)", name, described, offending)
        raise
    record(engine, run_id=run_id, check_name=name, offending_rows=0, checked_rows=checked,
           description=checks.CHECKS[name].description)
    log.info("check %s passed: %s; checked %s; 0 offending rows", name, checks.CHECKS[name].description,
             described)
