"""The offline destination APIs of `make run`: one `recurly-elt fakes serve` per destination
connection of airflow_settings.yaml that points at this machine (recurly_braze, recurly_klaviyo,
recurly_activecampaign, recurly_bloomreach, recurly_customersuccessbox).

The port comes from the connection's host, the key from its password (handed over in a file only
this user can read, removed once the fake is listening). A connection pointing elsewhere (a real
account) starts nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from recurly_elt.local.processes import ManagedProcess
from recurly_elt.local.settings import Settings, SettingsError
from recurly_elt.local.stack import write_private

APIS = ("braze", "klaviyo", "activecampaign", "bloomreach", "customersuccessbox")
LOOPBACK = ("127.0.0.1", "localhost")


def fake_processes(layout, settings: Settings | None) -> list[tuple[ManagedProcess, str]]:
    """(server, API key) of each fake the settings call for (all of them, keys empty, without
    settings: what `make stop` may have to stop)."""
    out = []
    for api in APIS:
        port, key = None, None
        if settings is not None:
            try:
                conn = settings.connection(f"recurly_{api}")
            except SettingsError:
                continue
            host = urlsplit(conn.host or "")
            if host.hostname not in LOOPBACK or not host.port:
                continue
            port, key = host.port, conn.password or ""
        run_dir: Path = layout.run_dir
        argv = [sys.executable, "-m", "recurly_elt.cli", "fakes", "serve", api, "--host", "127.0.0.1",
                "--port", str(port), "--api-key-file", str(run_dir / f"fake-{api}.key"),
                "--ready-file", str(run_dir / f"fake-{api}.ready.json")] if port else []
        process = ManagedProcess(name=f"fake-{api}", argv=argv, log_file=layout.logs_dir / f"fake-{api}.log",
                                 pid_file=run_dir / f"fake-{api}.pid", meta={"port": port})
        out.append((process, key or ""))
    return out


def ready_file(process: ManagedProcess) -> Path:
    return process.pid_file.with_name(process.name + ".ready.json")


def key_file(process: ManagedProcess) -> Path:
    return process.pid_file.with_name(process.name + ".key")


def is_ready(process: ManagedProcess) -> bool:
    try:
        return bool(json.loads(ready_file(process).read_text()).get("port"))
    except (OSError, ValueError):
        return False


def prepare(process: ManagedProcess, key: str) -> None:
    """Hand the key over before start (a running fake keeps the key it was started with)."""
    if not process.is_running():
        ready_file(process).unlink(missing_ok=True)
        write_private(key_file(process), key)
