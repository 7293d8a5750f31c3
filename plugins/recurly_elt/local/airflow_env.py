"""Where the local Airflow lives and the environment every local command runs it with.

All Airflow configuration of `make run` is set here, through `AIRFLOW__SECTION__KEY` environment
variables, and nowhere else: the servers, `airflow db migrate`, `airflow backfill create`, the
settings loader and the tests all get their environment from `airflow_environment`, so they
can never disagree about the metadata database, the DAGs folder or the API URL.

Airflow reads its configuration once, when it is first imported: the environment must be in
place before anything imports `airflow` (see `apply_to_process`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The folder that holds pyproject.toml, dags/ and plugins/ (this file is plugins/recurly_elt/local/).
PROJECT_ROOT = Path(__file__).resolve().parents[3]

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ADMIN_USER = "admin"


@dataclass(frozen=True)
class LocalLayout:
    """The files of a local Airflow, all under `<project>/.local/` (git-ignored)."""

    root: Path = PROJECT_ROOT
    api_host: str = "127.0.0.1"
    api_port: int = 8080

    @property
    def local_dir(self) -> Path:
        return self.root / ".local"

    @property
    def airflow_home(self) -> Path:
        return self.local_dir / "airflow"

    @property
    def logs_dir(self) -> Path:
        """Server logs (sandbox, scheduler, api-server ...); task logs stay under AIRFLOW_HOME/logs."""
        return self.local_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files and ready files of the background processes `make run` starts."""
        return self.local_dir / "run"

    @property
    def dags_folder(self) -> Path:
        return self.root / "dags"

    @property
    def plugins_folder(self) -> Path:
        return self.root / "plugins"

    @property
    def settings_file(self) -> Path:
        return self.root / "airflow_settings.yaml"

    @property
    def metadata_db(self) -> Path:
        return self.airflow_home / "airflow.db"

    @property
    def passwords_file(self) -> Path:
        """Written by the simple auth manager when the API server starts: {"admin": "<password>"}."""
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    @property
    def ui_url(self) -> str:
        host = "localhost" if self.api_host in ("127.0.0.1", "0.0.0.0") else self.api_host
        return f"http://{host}:{self.api_port}"

    def make_dirs(self) -> None:
        for folder in (self.airflow_home, self.logs_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def environment(self, parallelism: int = 4) -> dict[str, str]:
        return airflow_environment(
            home=self.airflow_home,
            dags_folder=self.dags_folder,
            plugins_folder=self.plugins_folder,
            api_host=self.api_host,
            api_port=self.api_port,
            parallelism=parallelism,
        )


def airflow_environment(
    *,
    home: Path,
    dags_folder: Path,
    plugins_folder: Path,
    api_host: str = "127.0.0.1",
    api_port: int = 8080,
    parallelism: int = 4,
) -> dict[str, str]:
    """The `AIRFLOW_*` variables of a self-contained Airflow in `home`.

    SQLite metadata database and LocalExecutor (the one executor that runs on SQLite in Airflow 3),
    examples off, the simple auth manager with one admin user, and small worker counts: the
    reference machine has two cores shared by the scheduler, the DAG processor, the API server,
    the sandbox and the tasks themselves.
    """
    home = Path(home)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        # New DAGs start paused: `local run` creates its backfill first, then unpauses, so the
        # scheduler's own catch-up run cannot race the backfill for the same data interval.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        # Four servers and the task workers share one SQLite file: wait up to 30 s for a lock
        # (Python's default is 5 s) rather than fail with "database is locked".
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}?timeout=30",
        "AIRFLOW__API__HOST": api_host,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        # Task workers report to the API server: it must be the one started here.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{api_host}:{api_port}/execution/",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Pick up a DAG file change within seconds rather than the default five minutes.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # Re-parse a known file every 10 s (default 30): after `make run` reloads the settings,
        # DAG files that read Variables at parse time are current again within seconds.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
    }


def apply_to_process(env: dict[str, str]) -> None:
    """Put `env` into this process's environment; refuses once Airflow is already configured.

    Airflow resolves AIRFLOW_HOME and its config when first imported, so a late change would
    silently talk to another metadata database.
    """
    import sys

    if "airflow.configuration" in sys.modules and os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]:
        raise RuntimeError(
            "Airflow was imported before the local environment was set "
            f"(AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')!r}); set it first"
        )
    os.environ.update(env)
