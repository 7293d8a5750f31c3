"""`recurly-elt local ...`: a real local Airflow running the daily sync against the sandbox.

    run       sandbox + Airflow up, settings loaded, the history imported if the warehouse is
              empty, backfill of the last N days, summary (make run)
    stop      stop every server `run` started (make stop)
    status    which servers are running
    settings  migrate the metadata database and load airflow_settings.yaml into it
    summary   the per-run table of the last N days again, without running anything
    env       the environment `run` gives Airflow, as shell exports: eval "$(recurly-elt local env)"
              before any `airflow ...` command that should reach the local Airflow

Everything lives in <project>/.local (AIRFLOW_HOME, server logs, pid files, warehouse).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sqlite3
import subprocess
import time
from datetime import datetime, timezone

from recurly_elt.local import backfill as bf
from recurly_elt.local import initial_import, stack
from recurly_elt.local.airflow_api import AirflowApi, AirflowApiError
from recurly_elt.local.airflow_cli import AirflowCommandError, run_airflow_command
from recurly_elt.local.airflow_env import ADMIN_USER, LocalLayout, apply_to_process
from recurly_elt.local.processes import ProcessError, log_tail, wait_until
from recurly_elt.local.settings import Settings, SettingsError, apply_to_airflow, load_settings
from recurly_elt.local.summary import collect_runs, failed_tasks, login_lines, render_log_tail
from recurly_elt.run_table import render_table, warehouse_figures, with_figures
from recurly_elt.tasks.common import WAREHOUSE_CONN_ID


def configure(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="start everything, backfill the last days, print a summary")
    _window_args(run)
    run.add_argument(
        "--reprocess", choices=bf.REPROCESS_CHOICES, default="completed",
        help="what to do with runs of the window that exist already (default: run them again)",
    )
    run.add_argument("--max-active-runs", type=int, default=1, help="backfill runs at once (default 1)")
    run.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the backfill")
    run.add_argument("--accounts", type=int, default=None, help="sandbox accounts per site (sandbox default)")
    run.add_argument(
        "--skip-import", action="store_true",
        help="do not run the one-time import of the history first, even when the warehouse is empty",
    )

    sub.add_parser("stop", help="stop the servers started by `run`")
    sub.add_parser("status", help="show which servers are running")
    sub.add_parser("settings", help="migrate the metadata database and load airflow_settings.yaml")
    summary = sub.add_parser("summary", help="print the per-run summary of the last days")
    _window_args(summary)
    sub.add_parser("env", help='print the local Airflow environment as exports: eval "$(recurly-elt local env)"')


def _window_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=3, help="complete UTC days before today (default 3)")


def run(args: argparse.Namespace) -> int:
    layout = LocalLayout()
    commands = {"run": cmd_run, "stop": cmd_stop, "status": cmd_status, "settings": cmd_settings,
                "summary": cmd_summary, "env": cmd_env}
    try:
        return commands[args.command](args, layout)
    except (SettingsError, ProcessError, bf.BackfillError, AirflowCommandError, AirflowApiError) as exc:
        say(f"error: {exc}")
        return 1


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"==> {text}")


# --- steps ------------------------------------------------------------------------------------------


def start_sandbox(layout: LocalLayout, settings: Settings, window: bf.BackfillWindow, accounts: int | None) -> None:
    sandbox = stack.sandbox_process(layout, settings, until=window.today, accounts=accounts)
    port = sandbox.meta["port"]
    previous = sandbox.recorded()
    if sandbox.is_running() and previous and previous.get("meta") != sandbox.meta:
        say(f"    restarting the sandbox (was {previous.get('meta')}, now {sandbox.meta})")
        sandbox.stop()
    if not sandbox.is_running():
        stack.sandbox_ready_file(layout).unlink(missing_ok=True)  # a stale file would look ready
    if sandbox.start():
        say(f"    started (log: {_rel(layout, sandbox.log_file)})")
    try:
        wait_until(lambda: stack.sandbox_ready(layout, port), what=f"the sandbox on port {port}", timeout=300,
                   process=sandbox)
    finally:  # read at start-up: no need to leave the keys on disk
        stack.sandbox_sites_file(layout).unlink(missing_ok=True)
    say(f"    ready on http://127.0.0.1:{port}, data until {window.today}")


def start_fakes(layout: LocalLayout, settings: Settings) -> None:
    """The offline Braze and Klaviyo the destination connections point at (local/fakes.py)."""
    from recurly_elt.local import fakes

    started = fakes.fake_processes(layout, settings)
    if not started:
        say("    no destination connection points at this machine: none started")
    for process, key in started:
        fakes.prepare(process, key)
        process.start()
        try:
            wait_until(lambda p=process: fakes.is_ready(p), what=f"{process.name}", timeout=60, process=process)
        finally:
            fakes.key_file(process).unlink(missing_ok=True)
        say(f"    {process.name} ready on http://127.0.0.1:{process.meta['port']} (log: {_rel(layout, process.log_file)})")


def migrate_database(layout: LocalLayout, env: dict[str, str]) -> None:
    log_file = layout.logs_dir / "airflow-db-migrate.log"
    with open(log_file, "ab") as log:
        proc = subprocess.run([stack.bin_path("airflow"), "db", "migrate"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=600)
    if proc.returncode != 0:
        raise ProcessError(f"`airflow db migrate` failed; last lines of {log_file}:\n{log_tail(log_file)}")
    # Write-ahead logging (a property of the file, kept once set): readers such as the API server
    # and this command's progress polling no longer block the scheduler's writes, or the reverse.
    with sqlite3.connect(layout.metadata_db, timeout=30) as db:
        db.execute("PRAGMA journal_mode=WAL")


def start_airflow(layout: LocalLayout, env: dict[str, str]) -> None:
    for component in stack.AIRFLOW_COMPONENTS:
        process = stack.airflow_process(layout, component, env)
        started = process.start()
        say(f"    {component}: {'started' if started else 'already running'} (log: {_rel(layout, process.log_file)})")
        if component == "api-server":
            wait_until(lambda: stack.airflow_health(layout), what="the Airflow API server", timeout=180,
                       process=process)
    wait_until(lambda: not stack.unhealthy_components(stack.airflow_health(layout)),
               what=f"healthy {', '.join(stack.REQUIRED_HEALTH)}", timeout=180)


def wait_for_dag(layout: LocalLayout, dag_id: str, parsed_since: datetime | None) -> dict[str, str]:
    """Wait until the DAG processor has parsed the DAG since `parsed_since`; return import errors."""
    api = local_api(layout)

    def check():
        parsed, errors = bf.dag_parse_status(api, dag_id, parsed_since)
        return (parsed or errors) and (parsed, errors)

    _, errors = wait_until(check, what=f"the DAG processor to parse {dag_id}", timeout=180)
    return errors


def local_api(layout: LocalLayout) -> AirflowApi:
    """Airflow's REST API of the local API server, logged in as the generated admin."""
    return AirflowApi.for_local(f"http://{layout.api_host}:{layout.api_port}", ADMIN_USER, layout.passwords_file)


def create_backfill(layout: LocalLayout, env: dict[str, str], window: bf.BackfillWindow, args) -> int | None:
    api = local_api(layout)
    active = api.active_backfill(bf.DAG_ID)
    if active:
        backfill_id, from_date, to_date = active
        if (bf.as_utc(from_date), bf.as_utc(to_date)) == (window.from_date, window.to_date):
            say(f"    backfill #{backfill_id} for this window is still running: waiting for it")
            api.set_paused(bf.DAG_ID, False)
            return backfill_id
        raise bf.BackfillError(
            f"backfill #{backfill_id} ({from_date:%Y-%m-%d} to {to_date:%Y-%m-%d}) is still running; "
            f"wait for it or cancel it in the UI ({layout.ui_url}, Browse > Backfills) and run again"
        )
    command = bf.backfill_command(stack.bin_path("airflow"), window, reprocess=args.reprocess,
                                  max_active_runs=args.max_active_runs)
    say(f"    airflow {' '.join(command[1:])}")
    # Paused while the backfill is recorded, so the scheduler's own latest-interval run cannot
    # take the last day first; unpaused right after (backfill runs only start on an active DAG).
    api.set_paused(bf.DAG_ID, True)
    try:
        run_airflow_command(command, env, clean_up=lambda: bf.cancel_backfill_of(api, window))
    finally:
        api.set_paused(bf.DAG_ID, False)
    return api.latest_backfill_id(bf.DAG_ID)


def run_initial_import(layout: LocalLayout, env: dict[str, str], window: bf.BackfillWindow,
                       timeout: float) -> tuple[str, bool]:
    """Trigger recurly_one_time_import up to the window's start and wait: (run id, succeeded)."""
    errors = wait_for_dag(layout, initial_import.IMPORT_DAG_ID, parsed_since=None)
    if errors:
        raise bf.BackfillError("import errors: " + "; ".join(errors))
    run_id, command = initial_import.trigger_command(stack.bin_path("airflow"), window)
    say(f"    airflow {' '.join(command[1:])}")
    # manual-only DAG: unpausing schedules nothing
    api = local_api(layout)
    api.set_paused(initial_import.IMPORT_DAG_ID, False)
    run_airflow_command(command, env)
    progress = bf.wait_for_progress(
        lambda: bf.read_progress(api, None, None, initial_import.IMPORT_DAG_ID, run_ids=[run_id]),
        timeout=timeout, out=lambda line: say(f"    {line}"),
    )
    return run_id, progress.runs == {"success": 1}


def print_failed_tasks(layout: LocalLayout, dag_id: str, run_ids: list[str]) -> None:
    """The log tail of each failed task, and the tasks that never ran because of one."""
    tasks = failed_tasks(local_api(layout), dag_id, run_ids, layout.airflow_home / "logs")
    for task in (t for t in tasks if t.state == "failed"):
        say()
        say(f"--- failed: {task.run_id} / {task.label} (try {task.try_number}), "
            f"log tail ({_rel(layout, task.log_file)}):")
        say(render_log_tail(task.log_file))
    skipped = sorted({t.label for t in tasks if t.state == "upstream_failed"})
    if skipped:
        say()
        say(f"did not run because an upstream task failed: {', '.join(skipped)}")


def print_login(layout: LocalLayout) -> None:
    say()
    for line in login_lines(layout.ui_url, ADMIN_USER, layout.passwords_file):
        say(line)


def print_summary(layout: LocalLayout, settings: Settings, window: bf.BackfillWindow) -> int:
    """The per-run table, failed tasks' log tails and the UI login. 1 if a run did not succeed."""
    rows = collect_runs(local_api(layout), bf.DAG_ID, window.from_date, window.to_date)
    figures = warehouse_figures(_warehouse_url(settings), [r.run_id for r in rows])
    say()
    say(f"{bf.DAG_ID}: {len(rows)} runs for {window.start:%Y-%m-%d} to {window.end:%Y-%m-%d} (UTC)")
    say(render_table(with_figures(rows, figures)))
    if figures.source:
        say(f"figures: {figures.source}")
    say()
    say(_health_summary(settings))
    say()
    say(_delivery_summary(settings))
    failed = [r for r in rows if r.state != "success"]
    print_failed_tasks(layout, bf.DAG_ID, [r.run_id for r in failed])
    print_login(layout)
    ok = len(rows) == window.days and not failed
    if not ok:
        say(f"{len(failed)} of {len(rows)} runs did not succeed" if failed
            else f"expected {window.days} runs, found {len(rows)}")
    return 0 if ok else 1


def _health_summary(settings: Settings) -> str:
    """MRR, last month's movements and accounts by health band, read from the warehouse."""
    from recurly_elt.transform.summary import health_summary
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(_warehouse_url(settings))
    try:
        return health_summary(engine)
    finally:
        engine.dispose()


def _delivery_summary(settings: Settings) -> str:
    """Per destination: sent, unchanged, rejected (load_run_log)."""
    from recurly_elt.destinations.summary import delivery_summary
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(_warehouse_url(settings))
    try:
        return delivery_summary(engine)
    finally:
        engine.dispose()


def _warehouse_url(settings: Settings):
    from recurly_elt.warehouse.engine import url_from_connection

    try:
        return url_from_connection(settings.connection(WAREHOUSE_CONN_ID))
    except (SettingsError, ValueError):
        return "sqlite://"  # no file: the summary shows no figures


def _rel(layout: LocalLayout, path) -> str:
    try:
        return str(path.relative_to(layout.root))
    except ValueError:
        return str(path)


# --- commands ---------------------------------------------------------------------------------------


def cmd_run(args, layout: LocalLayout) -> int:
    started = time.monotonic()
    layout.make_dirs()
    settings = load_settings(layout.settings_file)
    window = bf.BackfillWindow.ending_now(args.days)
    airflow_env = layout.environment()
    env = {**os.environ, **airflow_env}

    step("Sandbox (the Recurly sites of connection recurly_default)")
    start_sandbox(layout, settings, window, args.accounts)

    step("Offline destinations (the recurly_<destination> connections pointing at this machine)")
    start_fakes(layout, settings)

    step(f"Airflow metadata database ({_rel(layout, layout.airflow_home)})")
    migrate_database(layout, env)
    apply_to_process(airflow_env)
    report = apply_to_airflow(settings, env)
    settings_loaded_at = datetime.now(timezone.utc)
    say(f"    loaded {_rel(layout, layout.settings_file)}: {report.describe()}")

    step("Airflow servers")
    start_airflow(layout, env)

    step(f"DAG {bf.DAG_ID}")
    errors = wait_for_dag(layout, bf.DAG_ID, parsed_since=settings_loaded_at)
    if errors:
        for filename, trace in errors.items():
            say(f"import error in {filename}:\n{trace}")
        return 1
    say("    parsed, no import errors")

    warehouse_url = _warehouse_url(settings)
    if not args.skip_import and initial_import.warehouse_is_empty(warehouse_url):
        step(f"Empty warehouse: one-time import of the history before {window.start:%Y-%m-%d}")
        run_id, ok = run_initial_import(layout, env, window, args.timeout)
        if not ok:
            say(f"the one-time import {run_id} did not succeed")
            print_failed_tasks(layout, initial_import.IMPORT_DAG_ID, [run_id])
            print_login(layout)
            return 1

    step(f"Backfill of {window.days} days: [{window.start:%Y-%m-%d}, {window.end:%Y-%m-%d}) UTC")
    backfill_id = create_backfill(layout, env, window, args)
    api = local_api(layout)
    bf.wait_for_progress(lambda: bf.read_progress(api, window, backfill_id), timeout=args.timeout,
                         out=lambda line: say(f"    {line}"))

    code = print_summary(layout, settings, window)
    say(f"make run took {time.monotonic() - started:.0f}s; Airflow and the sandbox keep running (`make stop`).")
    return code


def cmd_stop(args, layout: LocalLayout) -> int:
    from recurly_elt.local.fakes import fake_processes

    for process in [*reversed(stack.all_processes(layout)), *(p for p, _ in fake_processes(layout, None))]:
        pid = process.pid()
        if process.stop():
            say(f"stopped {process.name} (pid {pid})")
    stack.sandbox_ready_file(layout).unlink(missing_ok=True)
    stack.sandbox_sites_file(layout).unlink(missing_ok=True)
    return 0


def cmd_status(args, layout: LocalLayout) -> int:
    for process in stack.all_processes(layout):
        pid = process.pid()
        say(f"{process.name:22} {'running, pid ' + str(pid) if pid else 'stopped'}")
    return 0


def cmd_settings(args, layout: LocalLayout) -> int:
    layout.make_dirs()
    settings = load_settings(layout.settings_file)
    airflow_env = layout.environment()
    env = {**os.environ, **airflow_env}
    migrate_database(layout, env)
    apply_to_process(airflow_env)
    say(f"loaded {_rel(layout, layout.settings_file)}: {apply_to_airflow(settings, env).describe()}")
    return 0


def cmd_summary(args, layout: LocalLayout) -> int:
    if not layout.metadata_db.exists():
        say("no local Airflow yet: run `make run` first")
        return 1
    apply_to_process(layout.environment())
    return print_summary(layout, load_settings(layout.settings_file), bf.BackfillWindow.ending_now(args.days))


def cmd_env(args, layout: LocalLayout) -> int:
    """Shell exports of the local Airflow's environment (no secret: the UI password is generated)."""
    say("\n".join(f"export {name}={shlex.quote(value)}" for name, value in layout.environment().items()))
    return 0
