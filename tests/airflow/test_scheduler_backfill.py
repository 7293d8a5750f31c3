"""A 7-day backfill of recurly_daily_sync run by Airflow's own scheduler, twice.

What a user does: a local Airflow (API server, scheduler, DAG processor; SQLite metadata
database, LocalExecutor) configured from airflow_settings.yaml, the history imported once with
recurly_one_time_import, then `airflow backfill create --dag-id recurly_daily_sync` over seven
days, and the same backfill again with `--reprocess-behavior completed`. The second pass must
leave every staging and snapshot table with the same checksum over its business columns, add
no snapshot row and keep the transform outputs' row counts, while the extraction run log shows
that each (run, site, resource) was read twice.
"""

from __future__ import annotations

import argparse
import time

import pytest

from conftest import SANDBOX_ACCOUNTS, SANDBOX_KEYS
from scheduler_stack import LocalAirflow, use_metadata_db

from recurly_elt.local import backfill as bf
from recurly_elt.local import cli
from recurly_elt.local.summary import collect_runs

DAYS = 7
# Bounded waits: a run that does not finish in time fails the test with the log tails of its
# unfinished tasks and of the servers.
IMPORT_TIMEOUT = 300
BACKFILL_TIMEOUT = 420

pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.timeout(1800)]


@pytest.fixture
def local_airflow(tmp_path):
    """The stack up, the DAGs parsed after the settings were loaded; always stopped at the end."""
    airflow = LocalAirflow.in_folder(tmp_path, keys=SANDBOX_KEYS, accounts=SANDBOX_ACCOUNTS)
    with use_metadata_db(airflow.env):
        try:
            settings_loaded_at = airflow.start()
            errors = cli.wait_for_dag(bf.DAG_ID, parsed_since=settings_loaded_at)
            assert not errors, f"import errors: {errors}\n\n{airflow.diagnostics(bf.DAG_ID, [])}"
            yield airflow
        finally:
            airflow.stop()


def _wait(airflow: LocalAirflow, read, timeout: float, dag_id: str, run_ids) -> bf.Progress:
    try:
        return bf.wait_for_progress(read, timeout=timeout, every=3)
    except bf.BackfillError as exc:
        pytest.fail(f"{exc}\n\n{airflow.diagnostics(dag_id, run_ids())}", pytrace=False)


def _backfill(airflow: LocalAirflow, window: bf.BackfillWindow, reprocess: str) -> list:
    """`airflow backfill create` (as `make run` types it), then wait for the scheduler to finish it."""
    args = argparse.Namespace(reprocess=reprocess, max_active_runs=1)
    backfill_id = cli.create_backfill(airflow.layout, airflow.env, window, args)
    assert backfill_id is not None

    def run_ids():
        return [r.run_id for r in collect_runs(bf.DAG_ID, window.from_date, window.to_date)]

    _wait(airflow, lambda: bf.read_progress(window, backfill_id), BACKFILL_TIMEOUT, bf.DAG_ID, run_ids)
    runs = collect_runs(bf.DAG_ID, window.from_date, window.to_date)
    failed = [r.run_id for r in runs if r.state != "success"]
    assert not failed, f"runs did not succeed: {failed}\n\n{airflow.diagnostics(bf.DAG_ID, failed)}"
    return runs


def _one_time_import(airflow: LocalAirflow, window: bf.BackfillWindow) -> str:
    from recurly_elt.local.initial_import import IMPORT_DAG_ID, warehouse_is_empty

    assert warehouse_is_empty(airflow.warehouse_url)
    run_id, ok = cli.run_initial_import(airflow.env, window, IMPORT_TIMEOUT)
    assert ok, f"{run_id} did not succeed\n\n{airflow.diagnostics(IMPORT_DAG_ID, [run_id])}"
    return run_id


def _warehouse_state(url: str) -> dict:
    """Checksums of every staging and snapshot table, transform output counts, the run log."""
    import sqlalchemy as sa

    from recurly_elt.staging.checksum import checksums
    from recurly_elt.staging.runlog import RUN_LOG
    from recurly_elt.staging.tables import all_tables
    from recurly_elt.transform import tables as transform_tables
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(url)
    try:
        staged = checksums(engine, all_tables())
        with engine.connect() as conn:
            outputs = {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in transform_tables.METADATA.sorted_tables
                if t is not transform_tables.RUN_LOG  # one row per transform run: grows by design
            }
            run_log = {
                (r.run_id, r.site, r.resource): r._asdict()
                for r in conn.execute(sa.select(RUN_LOG).where(RUN_LOG.c.mode == "daily"))
            }
    finally:
        engine.dispose()
    return {"staging": staged, "transform_rows": outputs, "run_log": run_log}


def test_a_seven_day_backfill_run_twice_by_the_scheduler_changes_nothing(local_airflow):
    from recurly_elt.recurly.resources import RESOURCES

    airflow = local_airflow
    window = airflow.window(DAYS)
    started = time.monotonic()
    _one_time_import(airflow, window)
    after_import = _warehouse_state(airflow.warehouse_url)
    print(f"one-time import: {time.monotonic() - started:.0f}s")

    # First pass: seven runs, one per UTC day, each with the day as its data interval.
    started = time.monotonic()
    runs = _backfill(airflow, window, reprocess="none")
    print(f"first backfill: {time.monotonic() - started:.0f}s")
    assert [(r.interval_start, r.interval_end) for r in runs] == window.intervals()
    assert all(r.run_id.startswith("backfill__") for r in runs)
    first = _warehouse_state(airflow.warehouse_url)

    expected_keys = {(r.run_id, site, resource) for r in runs for site in SANDBOX_KEYS for resource in RESOURCES}
    assert set(first["run_log"]) == expected_keys
    for (run_id, _site, _resource), row in first["run_log"].items():
        run = next(r for r in runs if r.run_id == run_id)
        assert (row["status"], row["attempts"]) == ("success", 1), row
        assert (row["window_start"], row["window_end"]) == (
            run.interval_start.replace(tzinfo=None), run.interval_end.replace(tzinfo=None)), row
    read_first = sum(row["records"] for row in first["run_log"].values())
    assert read_first > 0, "the seven daily windows held no change: the test would prove nothing"
    grown = [name for name, c in first["staging"].items() if c.rows > after_import["staging"][name].rows]
    assert grown, "the daily runs added nothing to staging"
    assert first["transform_rows"]["mrr_subscription_runs"] > 0

    # Second pass: the same backfill, every run reprocessed (same run ids, a new try of each task).
    started = time.monotonic()
    again = _backfill(airflow, window, reprocess="completed")
    print(f"second backfill: {time.monotonic() - started:.0f}s")
    assert [(r.run_id, r.interval_start, r.interval_end) for r in again] == [
        (r.run_id, r.interval_start, r.interval_end) for r in runs]
    second = _warehouse_state(airflow.warehouse_url)

    snapshot_rows = {name: c.rows for name, c in first["staging"].items() if name.startswith("snap_")}
    assert {name: second["staging"][name].rows for name in snapshot_rows} == snapshot_rows
    assert second["staging"] == first["staging"]
    assert second["transform_rows"] == first["transform_rows"]

    # The run log recorded both passes: one row per (run, site, resource), now with two tries
    # whose counters add up; the second read the same records and wrote none of them.
    assert set(second["run_log"]) == expected_keys
    for key, row in second["run_log"].items():
        before = first["run_log"][key]
        assert (row["status"], row["attempts"]) == ("success", 2), row
        assert row["records"] == 2 * before["records"], (key, before, row)
        assert row["unchanged"] - before["unchanged"] == before["records"], (key, before, row)
        for counter in ("inserted", "updated", "snapshots"):
            assert row[counter] == before[counter], (key, counter, before, row)
