"""Background servers: start once, found again by pid file, stopped with their children."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from recurly_elt.local.airflow_env import LocalLayout
from recurly_elt.local.processes import ManagedProcess, ProcessError, wait_until
from recurly_elt.local.settings import SettingsError, parse_settings
from recurly_elt.local.stack import sandbox_process, sandbox_sites, unhealthy_components

from known_keys import LOCAL

SITE_KEYS = {"acme": LOCAL["acme"], "globex": LOCAL["globex"]}

# A server that forks a child and waits: stopping must take the child down too.
PARENT_WITH_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return stat[0] != "Z"


def _server(tmp_path: Path, argv: list[str] | None = None) -> ManagedProcess:
    return ManagedProcess(
        name="probe",
        argv=argv or [sys.executable, "-c", PARENT_WITH_CHILD, str(tmp_path / "child.pid")],
        log_file=tmp_path / "logs" / "probe.log",
        pid_file=tmp_path / "run" / "probe.pid",
    )


def test_start_is_idempotent_and_stop_kills_the_group(tmp_path):
    server = _server(tmp_path)
    try:
        assert server.start() is True
        child_pid = int(wait_until(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text(),
                                   what="the child", timeout=30, process=server))
        again = _server(tmp_path)  # a later `make run`: a new object, same pid file
        assert again.is_running() and again.pid() == server.pid()
        assert again.start() is False
        assert _alive(child_pid)
    finally:
        stopped = _server(tmp_path).stop(timeout=10)
    assert stopped is True
    assert not server.pid_file.exists()
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child_pid)
    assert _server(tmp_path).stop() is False  # idempotent


def test_stale_and_reused_pid_files_count_as_stopped(tmp_path):
    server = _server(tmp_path)
    server.pid_file.parent.mkdir(parents=True)
    server.pid_file.write_text(json.dumps({"pid": 2**22 + 12345, "started": 1}))  # no such process
    assert not server.is_running()
    # our own pid, but recorded with another start time: a reused pid, not our server
    server.pid_file.write_text(json.dumps({"pid": os.getpid(), "started": 1}))
    assert not server.is_running()
    assert server.stop() is False and not server.pid_file.exists()
    assert _alive(os.getpid())


def test_a_server_that_dies_fails_the_wait_with_its_log(tmp_path):
    server = _server(tmp_path, [sys.executable, "-c", "import sys; print('port in use'); sys.exit(3)"])
    server.start()
    with pytest.raises(ProcessError, match=r"(?s)probe exited with code 3.*port in use"):
        wait_until(lambda: False, what="readiness", timeout=30, process=server)


def test_wait_until_times_out():
    with pytest.raises(ProcessError, match="timed out after 0s waiting for nothing"):
        wait_until(lambda: None, what="nothing", timeout=0.2, every=0.05)


SETTINGS = {
    "airflow": {
        "connections": [
            {"conn_id": "recurly_default", "conn_type": "http", "conn_host": "http://127.0.0.1:8765",
             "conn_password": json.dumps(SITE_KEYS)},
        ]
    }
}


def test_sandbox_is_configured_from_the_recurly_default_connection(tmp_path):
    settings = parse_settings(SETTINGS, tmp_path / "airflow_settings.yaml")
    assert sandbox_sites(settings) == (8765, SITE_KEYS)
    from datetime import date

    process = sandbox_process(LocalLayout(root=tmp_path), settings, until=date(2025, 3, 10))
    argv = process.argv
    assert argv[argv.index("--port") + 1] == "8765" and argv[argv.index("--until") + 1] == "2025-03-10"
    # the keys never reach the command line (ps), the log header or the pid file: a private file
    assert "--sites" not in argv and not any(LOCAL["acme"] in arg for arg in argv)
    sites_file = Path(argv[argv.index("--sites-file") + 1])
    assert json.loads(sites_file.read_text()) == SITE_KEYS
    assert stat.S_IMODE(sites_file.stat().st_mode) == 0o600
    assert LOCAL["acme"] not in json.dumps(process.meta)
    # other keys, another sandbox: `make run` restarts a running one
    other = settings.with_connection("recurly_default", password=json.dumps({**SITE_KEYS, "acme": LOCAL["other"]}))
    assert sandbox_process(LocalLayout(root=tmp_path), other, until=date(2025, 3, 10)).meta != process.meta


@pytest.mark.parametrize(
    "host, password, message",
    [
        ("https://v3.recurly.com", '{"acme": "k"}', "must point at the local sandbox"),
        ("http://127.0.0.1:8765", LOCAL["single"], "password must be a"),
    ],
)
def test_sandbox_settings_errors(tmp_path, host, password, message):
    document = {"airflow": {"connections": [
        {"conn_id": "recurly_default", "conn_type": "http", "conn_host": host, "conn_password": password}]}}
    with pytest.raises(SettingsError, match=message):
        sandbox_sites(parse_settings(document, tmp_path / "airflow_settings.yaml"))


def test_unhealthy_components():
    healthy = {"status": "healthy"}
    assert unhealthy_components(None) == ["metadatabase", "scheduler", "dag_processor"]
    assert unhealthy_components({"metadatabase": healthy, "scheduler": healthy, "dag_processor": healthy}) == []
    assert unhealthy_components({"metadatabase": healthy, "scheduler": {"status": "unhealthy"},
                                 "dag_processor": healthy}) == ["scheduler"]
