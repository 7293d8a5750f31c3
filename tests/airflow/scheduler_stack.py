"""A real local Airflow in a temporary folder, for tests that run DAGs through the scheduler.

The same pieces `make run` uses (recurly_elt.local), rooted in a temporary folder instead of the
project's `.local/`: the sandbox started from the `recurly_default` connection of
airflow_settings.yaml (two sites, on a free loopback port, data up to today), a migrated SQLite
metadata database in write-ahead-log mode, the settings loaded into it with `recurly_warehouse`
pointed at a warehouse file of the test, then the API server (the task workers report to its
execution API), the scheduler and the DAG processor, each in its own process group.

The test process itself reads and writes that metadata database (settings, backfills, run
states) with the helpers of recurly_elt.local, which use Airflow's ORM. Airflow configures its
ORM once per process, and tests/conftest.py has already pointed this pytest session at another
AIRFLOW_HOME, so `use_metadata_db` switches the ORM to the stack's database for the test and
back afterwards.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

from recurly_elt.local import cli, fakes, stack
from recurly_elt.local.airflow_env import PROJECT_ROOT, LocalLayout, airflow_environment
from recurly_elt.local.backfill import BackfillWindow
from recurly_elt.local.processes import ManagedProcess, log_tail, wait_until
from recurly_elt.local.settings import Settings, apply_to_airflow, load_settings
from recurly_elt.local.summary import render_log_tail, task_log_path

# Only what the DAGs need: no triggerer (no deferrable task).
COMPONENTS = ("api-server", "scheduler", "dag-processor")
UNFINISHED_TASK_STATES = ("queued", "running", "up_for_retry", "restarting", "deferred")


def free_port() -> int:
    """A loopback port free right now (the servers need a number up front: the settings and the
    execution API URL name it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalAirflow:
    """The stack's files, environment and settings; `start` brings it up, `stop` takes it down."""

    layout: LocalLayout
    env: dict[str, str]
    settings: Settings
    today: date
    accounts: int

    @classmethod
    def in_folder(cls, root: Path, *, keys: dict[str, str], accounts: int, parallelism: int = 4,
                  today: date | None = None) -> "LocalAirflow":
        from airflow.configuration import conf

        layout = LocalLayout(root=Path(root), api_port=free_port())
        sandbox_url = f"http://127.0.0.1:{free_port()}"
        settings = (
            load_settings(PROJECT_ROOT / "airflow_settings.yaml")
            .with_connection("recurly_default", host=sandbox_url, password=json.dumps(keys))
            .with_connection("recurly_warehouse", host=str(layout.local_dir / "warehouse.db"))
        )
        for api in fakes.APIS:  # the offline destinations, on free ports, started as `make run` does
            settings = settings.with_connection(f"recurly_{api}", host=f"http://127.0.0.1:{free_port()}")
        airflow_env = airflow_environment(
            home=layout.airflow_home,
            dags_folder=PROJECT_ROOT / "dags",
            plugins_folder=PROJECT_ROOT / "plugins",
            api_host=layout.api_host,
            api_port=layout.api_port,
            parallelism=parallelism,
        )
        # Connections are stored encrypted, the stack and this process with one Fernet key: this
        # process's, or a new one when it has none yet (an empty key would store every password
        # in plain text in the metadata database; the suite's key check finds them there).
        from cryptography.fernet import Fernet

        airflow_env["AIRFLOW__CORE__FERNET_KEY"] = (conf.get("core", "fernet_key", fallback="")
                                                    or Fernet.generate_key().decode())
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))}
        return cls(layout=layout, env={**inherited, **airflow_env}, settings=settings,
                   today=today or datetime.now(timezone.utc).date(), accounts=accounts)

    @property
    def warehouse_url(self) -> str:
        return f"sqlite:///{self.settings.connection('recurly_warehouse').host}"

    def window(self, days: int) -> BackfillWindow:
        """The last `days` complete days: the sandbox's data ends today, as with `make run`."""
        return BackfillWindow(today=self.today, days=days)

    def start(self) -> datetime:
        """Sandbox, database, settings, servers; returns when the settings were loaded.

        Call inside `use_metadata_db(self.env)`.
        """
        self.layout.make_dirs()
        cli.start_sandbox(self.layout, self.settings, self.window(1), self.accounts)
        cli.start_fakes(self.layout, self.settings)
        cli.migrate_database(self.layout, self.env)
        apply_to_airflow(self.settings, self.env)
        loaded_at = datetime.now(timezone.utc)
        for component in COMPONENTS:
            process = stack.airflow_process(self.layout, component, self.env)
            process.start()
            if component == "api-server":
                wait_until(lambda: stack.airflow_health(self.layout), what="the Airflow API server",
                           timeout=180, process=process)
        wait_until(lambda: not stack.unhealthy_components(stack.airflow_health(self.layout)),
                   what=f"healthy {', '.join(stack.REQUIRED_HEALTH)}", timeout=180)
        return loaded_at

    def stop(self) -> None:
        """Stop every server by its pid file (process groups: TERM, then KILL), as `make stop`."""
        cli.cmd_stop(None, self.layout)

    def servers(self) -> list[ManagedProcess]:
        return stack.all_processes(self.layout)

    def diagnostics(self, dag_id: str, run_ids: list[str] | None = None) -> str:
        """Log tails of the tasks that failed or never finished (of `run_ids`, or of every run of
        the DAG), then of every server."""
        parts = []
        for run_id, task_id, map_index, try_number, state in _unfinished_or_failed_tasks(self.layout, dag_id, run_ids):
            path = task_log_path(self.layout.airflow_home / "logs", dag_id, run_id, task_id, map_index, try_number)
            label = f"{task_id}[{map_index}]" if map_index >= 0 else task_id
            parts.append(f"--- {run_id} / {label}: {state} (try {try_number}), {path}:\n{render_log_tail(path)}")
        for server in self.servers():
            parts.append(f"--- {server.name} ({server.log_file}):\n{log_tail(server.log_file, 30)}")
        return "\n\n".join(parts)


def _unfinished_or_failed_tasks(layout: LocalLayout, dag_id: str, run_ids: list[str] | None) -> list[tuple]:
    """(run id, task id, map index, try, state) of the tasks that failed or never finished, read
    from Airflow's REST API as `make run` reads them."""
    api = cli.local_api(layout)
    if run_ids is None:
        run_ids = [r["dag_run_id"] for r in api.dag_runs(dag_id)]
    states = ["failed", "upstream_failed", *UNFINISHED_TASK_STATES]
    rows = api.task_instances(dag_id, run_ids, states=states)
    return sorted((r["dag_run_id"], r["task_id"], r["map_index"], r["try_number"], r["state"]) for r in rows)


@contextmanager
def use_metadata_db(env: dict[str, str]) -> Iterator[None]:
    """Point this process's Airflow ORM at the database of `env`, and back on exit.

    Airflow reads `[database] sql_alchemy_conn` into `airflow.settings` when first imported;
    the variable is read again (environment first) by `configure_vars`, and `reconfigure_orm`
    disposes of the old engine and builds the session factory anew.
    """
    from airflow import settings
    from airflow.models.crypto import get_fernet

    names = [name for name in env if name.startswith("AIRFLOW")]
    saved = {name: os.environ.get(name) for name in names}

    def reconfigure() -> None:
        settings.configure_vars()
        settings.reconfigure_orm()
        get_fernet.cache_clear()  # the Fernet key of the environment now in force

    os.environ.update({name: env[name] for name in names})
    try:
        reconfigure()
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reconfigure()


def fake_requests(settings: Settings) -> dict[str, int]:
    """Requests each offline destination has received so far (its `/_fake/state`)."""
    import requests

    out = {}
    for api in fakes.APIS:
        host = settings.connection(f"recurly_{api}").host
        out[api] = requests.get(f"{host}/_fake/state", timeout=30).json()["server"]["requests"]
    return out
