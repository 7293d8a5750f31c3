"""Each data-quality check logs what it checked and the rows it found, and records the result."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from recurly_elt.transform import pipeline
from recurly_elt.transform.check_log import run_and_record
from recurly_elt.transform.checks import CHECKS, DataQualityError
from recurly_elt.warehouse.engine import create_engine_from_url

from .staging_data import DEFAULT_UNTIL, load_objects, simulation


def test_passing_and_failing_checks_are_logged_and_recorded(warehouse_url, caplog):
    engine = create_engine_from_url(warehouse_url)
    load_objects(engine, "sandbox", simulation(accounts=40).objects)
    pipeline.run(engine, "2025-06-01", DEFAULT_UNTIL, health_days=1)
    log = logging.getLogger("test.checks")
    with caplog.at_level(logging.INFO, logger="test.checks"):
        for name in CHECKS:
            run_and_record(engine, name, "run-1", log)
    with engine.connect() as c:
        movements = c.execute(sa.text("SELECT COUNT(*) FROM mrr_movements_monthly")).scalar()
    assert "check mrr_reconciles passed" in caplog.text
    assert f"checked {movements:,} rows of mrr_movements_monthly; 0 offending rows" in caplog.text
    with engine.begin() as c:
        c.execute(sa.text("UPDATE mrr_account_runs SET mrr = -1 WHERE account_id IN "
                          "(SELECT account_id FROM mrr_account_runs ORDER BY account_id LIMIT 2)"))
    with pytest.raises(DataQualityError), caplog.at_level(logging.INFO, logger="test.checks"):
        run_and_record(engine, "no_negative_mrr", "run-2", log)
    assert "check no_negative_mrr FAILED" in caplog.text
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT run_id, check_name, status, offending_rows, checked_rows "
                                 "FROM transform_check_log ORDER BY id")).all()
    assert len(rows) == len(CHECKS) + 1
    assert all(r.status == "pass" and r.offending_rows == 0 and r.checked_rows > 0 for r in rows[:-1])
    assert tuple(rows[-1])[:3] == ("run-2", "no_negative_mrr", "fail") and rows[-1].offending_rows >= 2
    engine.dispose()
