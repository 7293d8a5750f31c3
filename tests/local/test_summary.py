"""The run table (rendering, warehouse figures: whatever exists) and the rest of `make run`'s
end-of-run summary: log tails, login."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import sqlalchemy as sa

from recurly_elt.local.summary import login_lines, render_log_tail, task_log_path
from recurly_elt.run_table import RunRow, WarehouseFigures, render_table, warehouse_figures, with_figures

UTC = timezone.utc


def _row(day: int, state: str = "success", seconds: int = 75, **figures: int) -> RunRow:
    start = datetime(2025, 3, day, tzinfo=UTC)
    return RunRow(
        run_id=f"backfill__2025-03-{day + 1:02d}T00:00:00+00:00",
        interval_start=start,
        interval_end=datetime(2025, 3, day + 1, tzinfo=UTC),
        state=state,
        started=datetime(2025, 3, 10, 12, 0, 0, tzinfo=UTC),
        ended=datetime(2025, 3, 10, 12, seconds // 60, seconds % 60, tzinfo=UTC),
        figures=figures,
    )


def test_table_without_figures():
    table = render_table([_row(7), _row(8, state="failed", seconds=5)])
    assert table.splitlines() == [
        "run id                               data interval             state    duration",
        "-----------------------------------  ------------------------  -------  --------",
        "backfill__2025-03-08T00:00:00+00:00  [2025-03-07, 2025-03-08)  success  1m15s",
        "backfill__2025-03-09T00:00:00+00:00  [2025-03-08, 2025-03-09)  failed   5s",
    ]


def test_table_with_figures_per_resource():
    table = render_table([_row(7, accounts=12, invoices=340), _row(8, accounts=3)])
    lines = table.splitlines()
    assert lines[0].split() == ["run", "id", "data", "interval", "state", "duration", "accounts", "invoices"]
    assert lines[2].endswith("12       340")
    assert lines[3].endswith("3         -")


def test_table_of_nothing_and_unfinished_runs():
    assert render_table([]).splitlines()[-1] == "(no runs)"
    running = RunRow(run_id="r", interval_start=None, interval_end=None, state="running",
                     started=datetime(2025, 1, 1, tzinfo=UTC))
    assert render_table([running]).splitlines()[-1].split() == ["r", "[-,", "-)", "running", "-"]


def test_missing_warehouse_is_not_an_error(tmp_path):
    figures = warehouse_figures(f"sqlite:///{tmp_path / 'none.db'}", ["r1"])
    assert figures.by_run == {} and "no warehouse" in figures.source
    assert not (tmp_path / "none.db").exists()  # reading must not create it


def test_empty_warehouse(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    sa.create_engine(url).connect().close()
    assert warehouse_figures(url, ["r1"]).by_run == {}


def test_figures_from_the_run_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE extract_run_log (run_id TEXT, site TEXT, resource TEXT, records INT)")
        conn.exec_driver_sql(
            "INSERT INTO extract_run_log VALUES ('r1','acme','accounts',5), ('r1','globex','accounts',7),"
            " ('r1','acme','invoices',3), ('r2','acme','accounts',1), ('other','acme','accounts',99)"
        )
        # staging exists too, but the run log wins
        conn.exec_driver_sql("CREATE TABLE stg_accounts (site TEXT, id TEXT, _run_id TEXT)")
    figures = warehouse_figures(url, ["r1", "r2"])
    assert figures.by_run == {"r1": {"accounts": 12, "invoices": 3}, "r2": {"accounts": 1}}
    assert "extract_run_log" in figures.source


def test_figures_from_staging_when_no_run_log(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE stg_accounts (site TEXT, id TEXT, _run_id TEXT)")
        conn.exec_driver_sql("INSERT INTO stg_accounts VALUES ('acme','a','r1'), ('acme','b','r1'), ('x','c','r2')")
        conn.exec_driver_sql("CREATE TABLE stg_plans (site TEXT, id TEXT, _run_id TEXT)")
        conn.exec_driver_sql("INSERT INTO stg_plans VALUES ('acme','p','r2')")
        conn.exec_driver_sql("CREATE TABLE some_run_log (what TEXT)")  # not a run log we can read
    figures = warehouse_figures(url, ["r1", "r2"])
    assert figures.by_run == {"r1": {"accounts": 2}, "r2": {"accounts": 1, "plans": 1}}
    assert "staging" in figures.source


def test_with_figures_attaches_per_run():
    rows = with_figures([_row(7), _row(8)], WarehouseFigures("x", {_row(7).run_id: {"accounts": 4}}))
    assert [r.figures for r in rows] == [{"accounts": 4}, {}]


def test_log_tail_renders_json_lines_and_exceptions(tmp_path):
    log = tmp_path / "attempt=1.log"
    lines = [json.dumps({"timestamp": f"t{i}", "level": "info", "event": f"line {i}"}) for i in range(40)]
    lines.append(json.dumps({"timestamp": "t40", "level": "error", "event": "Task failed with exception",
                             "error_detail": [{"exc_type": "PreflightError", "exc_value": "key refused"}]}))
    lines.append("plain text line")
    log.write_text("\n".join(lines))
    tail = render_log_tail(log, lines=3).splitlines()
    assert tail == [
        "t39 INFO    line 39",
        "t40 ERROR   Task failed with exception",
        "    PreflightError: key refused",
        "plain text line",
    ]
    assert "not found" in render_log_tail(tmp_path / "missing.log")


def test_task_log_path_follows_airflow_template(tmp_path):
    assert task_log_path(tmp_path, "d", "r", "t", -1, 2) == tmp_path / "dag_id=d/run_id=r/task_id=t/attempt=2.log"
    mapped = tmp_path / "dag_id=d/run_id=r/task_id=t/map_index=3/attempt=1.log"
    assert task_log_path(tmp_path, "d", "r", "t", 3, 1) == mapped


def test_login_lines(tmp_path):
    passwords = tmp_path / "simple_auth_manager_passwords.json.generated"
    assert login_lines("http://localhost:8080", "admin", passwords)[1] == f"  login: admin / (see {passwords})"
    passwords.write_text(json.dumps({"admin": "pw123"}))
    assert login_lines("http://localhost:8080", "admin", passwords) == [
        "Airflow UI: http://localhost:8080", "  login: admin / pw123",
        "Recurly pages (plugin recurly): http://localhost:8080/plugin/recurly-revenue",
        "  Recurly health: http://localhost:8080/plugin/recurly-health, "
        "Recurly runs: http://localhost:8080/plugin/recurly-runs",
        '  and on each DAG run\'s page, the tab "Sync summary"']
