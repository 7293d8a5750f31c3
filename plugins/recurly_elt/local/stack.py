"""The servers of the local stack and how to tell each is ready.

The sandbox plays the Recurly sites of the `recurly_default` connection in airflow_settings.yaml
(its port and its {"subdomain": "api_key"} map), so the settings file stays the single source.

Airflow runs as four components rather than `airflow standalone`: each gets its own log file and
pid file (a failing component is visible at once, `make stop` stops exactly what was started),
they start only after the database is migrated and the settings are loaded, and nothing
overrides the environment built in airflow_env.py (standalone forces some settings itself).
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

from recurly_elt.local.airflow_env import LocalLayout
from recurly_elt.local.processes import ManagedProcess, http_json
from recurly_elt.local.settings import Settings, SettingsError

SANDBOX_CONN_ID = "recurly_default"
# Started in this order; stopped in reverse. The API server comes first: the scheduler's task
# workers report to it through the execution API.
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Health keys of /api/v2/monitor/health that must be "healthy" before a backfill is created.
REQUIRED_HEALTH = ("metadatabase", "scheduler", "dag_processor")


def bin_path(name: str) -> str:
    """A console script of this virtualenv (the one running this code)."""
    return str(Path(sys.executable).parent / name)


def sandbox_sites(settings: Settings) -> tuple[int, dict[str, str]]:
    """(port, {subdomain: api_key}) of the sandbox the `recurly_default` connection points at."""
    conn = settings.connection(SANDBOX_CONN_ID)
    parsed = urlparse(conn.host or "")
    if parsed.hostname not in ("127.0.0.1", "localhost") or not parsed.port:
        raise SettingsError(
            f"{settings.source.name}: connection {SANDBOX_CONN_ID!r} must point at the local sandbox "
            f"(http://127.0.0.1:<port>) for `make run`, not {conn.host!r}"
        )
    try:
        keys = json.loads(conn.password or "")
    except ValueError:
        keys = None
    if not isinstance(keys, dict) or not keys:
        raise SettingsError(
            f'{settings.source.name}: connection {SANDBOX_CONN_ID!r}: the password must be a {{"subdomain": '
            '"api_key"}} map for the sandbox'
        )
    return parsed.port, keys


def sandbox_process(
    layout: LocalLayout, settings: Settings, until: date, accounts: int | None = None
) -> ManagedProcess:
    port, keys = sandbox_sites(settings)
    argv = [
        sys.executable, "-m", "recurly_elt.cli", "sandbox", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--sites", json.dumps(keys),
        "--until", until.isoformat(),
        "--ready-file", str(sandbox_ready_file(layout)),
    ]
    if accounts is not None:
        argv += ["--accounts", str(accounts)]
    return ManagedProcess(
        name="sandbox",
        argv=argv,
        log_file=layout.logs_dir / "sandbox.log",
        pid_file=layout.run_dir / "sandbox.pid",
        meta={"until": until.isoformat(), "port": port, "accounts": accounts},
        secret_options=("--sites",),
    )


def sandbox_ready_file(layout: LocalLayout) -> Path:
    return layout.run_dir / "sandbox.ready.json"


def sandbox_ready(layout: LocalLayout, port: int) -> bool:
    try:
        ready = json.loads(sandbox_ready_file(layout).read_text())
    except (OSError, ValueError):
        return False
    return ready.get("port") == port


def airflow_process(layout: LocalLayout, component: str, env: dict[str, str]) -> ManagedProcess:
    return ManagedProcess(
        name=f"airflow-{component}",
        argv=[bin_path("airflow"), component],
        log_file=layout.logs_dir / f"airflow-{component}.log",
        pid_file=layout.run_dir / f"airflow-{component}.pid",
        env=env,
    )


def airflow_health(layout: LocalLayout) -> dict | None:
    return http_json(f"http://{layout.api_host}:{layout.api_port}/api/v2/monitor/health")


def unhealthy_components(health: dict | None) -> list[str]:
    """The required components the health document does not report healthy (all if no document)."""
    if not isinstance(health, dict):
        return list(REQUIRED_HEALTH)
    return [
        key for key in REQUIRED_HEALTH
        if not isinstance(health.get(key), dict) or health[key].get("status") != "healthy"
    ]


def all_processes(layout: LocalLayout, env: dict[str, str] | None = None) -> list[ManagedProcess]:
    """Every server `make run` may have started, in start order (to stop: by pid file alone)."""
    sandbox = ManagedProcess(
        name="sandbox", argv=[], log_file=layout.logs_dir / "sandbox.log", pid_file=layout.run_dir / "sandbox.pid"
    )
    return [sandbox, *(airflow_process(layout, c, env or {}) for c in AIRFLOW_COMPONENTS)]
