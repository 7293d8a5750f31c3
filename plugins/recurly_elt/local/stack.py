"""The servers of the local stack and how to tell each is ready.

The sandbox plays the Recurly sites of the `recurly_default` connection in airflow_settings.yaml
(its port and its {"subdomain": "api_key"} map), so the settings file stays the single source.
Its keys reach it through a file only this user can read (`--sites-file`), never its command
line, which every local user sees in `ps`.

Airflow runs as four components rather than `airflow standalone`: each gets its own log file and
pid file (a failing component is visible at once, `make stop` stops exactly what was started),
they start only after the database is migrated and the settings are loaded, and nothing
overrides the environment built in airflow_env.py (standalone forces some settings itself).
"""

from __future__ import annotations

import hashlib
import json
import os
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
    """The sandbox server of `make run`; writes the sites file its command line points at."""
    port, keys = sandbox_sites(settings)
    sites_json = json.dumps(keys, sort_keys=True)
    sites_file = sandbox_sites_file(layout)
    write_private(sites_file, sites_json)
    argv = [
        sys.executable, "-m", "recurly_elt.cli", "sandbox", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--sites-file", str(sites_file),
        "--until", until.isoformat(),
        "--ready-file", str(sandbox_ready_file(layout)),
    ]
    if accounts is not None:
        argv += ["--accounts", str(accounts)]
    # A digest of the sites, not the keys: a running sandbox whose keys differ from the settings
    # file is restarted like one with another day or size.
    sites_digest = hashlib.sha256(sites_json.encode()).hexdigest()[:12]
    return ManagedProcess(
        name="sandbox",
        argv=argv,
        log_file=layout.logs_dir / "sandbox.log",
        pid_file=layout.run_dir / "sandbox.pid",
        meta={"until": until.isoformat(), "port": port, "accounts": accounts, "sites": sites_digest},
    )


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by this user only (0600 from the start, never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # an existing file would keep its old permissions
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def sandbox_sites_file(layout: LocalLayout) -> Path:
    """The sandbox's {"subdomain": "api_key"} map; it reads it once at start, `local run` then removes it."""
    return layout.run_dir / "sandbox.sites.json"


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


def all_processes(layout: LocalLayout) -> list[ManagedProcess]:
    """Every server `make run` may have started, in start order (to stop: by pid file alone)."""
    sandbox = ManagedProcess(
        name="sandbox", argv=[], log_file=layout.logs_dir / "sandbox.log", pid_file=layout.run_dir / "sandbox.pid"
    )
    return [sandbox, *(airflow_process(layout, c, {}) for c in AIRFLOW_COMPONENTS)]
