"""Fixtures for tests that need Airflow's metadata database or a running sandbox.

The session's AIRFLOW_HOME (a temporary folder, SQLite, examples off) is set by tests/conftest.py
before anything imports Airflow; here the database is migrated once per session, and DAG runs
get their connections and variables as AIRFLOW_CONN_* / AIRFLOW_VAR_* built from the project's
airflow_settings.yaml, pointed at a sandbox and a warehouse of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recurly_elt.local.processes import ManagedProcess, wait_until
from recurly_elt.local.settings import load_settings
from recurly_elt.local.stack import write_private
from known_keys import DESTINATIONS
from sandbox_sites import SANDBOX_ACCOUNTS, SANDBOX_DATES, SANDBOX_KEYS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sandbox_url(tmp_path_factory):
    """A sandbox with two small sites (keys in SANDBOX_KEYS) on an ephemeral port."""
    folder = tmp_path_factory.mktemp("sandbox")
    ready, sites_file = folder / "ready.json", folder / "sites.json"
    write_private(sites_file, json.dumps(SANDBOX_KEYS))  # as `make run` passes the keys
    server = ManagedProcess(
        name="sandbox",
        argv=[sys.executable, "-m", "recurly_elt.cli", "sandbox", "serve", "--host", "127.0.0.1", "--port", "0",
              "--sites-file", str(sites_file), "--accounts", str(SANDBOX_ACCOUNTS),
              "--start-date", SANDBOX_DATES[0], "--until", SANDBOX_DATES[1], "--ready-file", str(ready)],
        log_file=folder / "sandbox.log",
        pid_file=folder / "sandbox.pid",
    )
    server.start()
    try:
        wait_until(ready.exists, what="the sandbox", timeout=120, process=server)
        port = wait_until(lambda: json.loads(ready.read_text() or "{}").get("port"), what="its port", timeout=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


FAKE_KEYS = DESTINATIONS  # the suite's keys live in tests/known_keys.py


@pytest.fixture(scope="session")
def fake_destinations():
    """The offline destinations, in this process, on ephemeral ports: {name: server}."""
    from recurly_elt.fakes.cli import build_server

    servers = {name: build_server(name, api_key=key).start() for name, key in FAKE_KEYS.items()}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture
def run_settings(sandbox_url, fake_destinations, tmp_path, monkeypatch):
    """The project's settings pointed at the test sandbox, the fake destinations and a fresh
    warehouse, as env vars."""
    settings = (
        load_settings(ROOT / "airflow_settings.yaml")
        .with_connection("recurly_default", host=sandbox_url, password=json.dumps(SANDBOX_KEYS))
        .with_connection("recurly_warehouse", host=str(tmp_path / "warehouse.db"))
    )
    for name, server in fake_destinations.items():
        settings = settings.with_connection(f"recurly_{name}", host=server.url, password=FAKE_KEYS[name])
    for name, value in settings.environment().items():
        monkeypatch.setenv(name, value)
    return settings
