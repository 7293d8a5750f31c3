"""`recurly-elt sandbox serve` and `advance` as a user runs them: a subprocess, a ready file, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from recurly_elt.local.stack import write_private

from known_keys import SANDBOX

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "recurly_elt.cli", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "plugins") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _wait_ready(process: subprocess.Popen, ready: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return json.loads(ready.read_text())
        if process.poll() is not None:
            raise AssertionError(f"sandbox exited early: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("sandbox did not become ready")


def test_serve_several_sites_advance_and_stop_on_sigterm(tmp_path):
    ready, log = tmp_path / "ready.json", tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        _cli("sandbox", "serve", "--port", "0", "--sites", json.dumps(SANDBOX),
             "--accounts", "15", "--start-date", "2025-01-01", "--until", "2025-03-01", "--rate-limit", "600",
             "--request-log", str(log), "--ready-file", str(ready)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        info = _wait_ready(process, ready)
        assert info["sites"] == ["acme", "globex"] and info["port"] > 0
        line = process.stdout.readline()
        assert f":{info['port']}" in line and "acme" in line and "globex" in line
        headers = {"Accept": "application/vnd.recurly.v2021-02-25"}
        response = requests.get(info["url"] + "/accounts", auth=(SANDBOX["globex"], ""), headers=headers, timeout=30)
        assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "600"
        advanced = subprocess.run(_cli("sandbox", "advance", "--url", info["url"], "--days", "2", "--site", "acme"),
                                  capture_output=True, text=True, env=_env(), timeout=120)
        assert advanced.returncode == 0, advanced.stderr
        assert "acme: now 2025-03-03T00:00:00Z" in advanced.stdout and "globex" not in advanced.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "sandbox stopped" in out
    assert not ready.exists()
    assert json.loads(log.read_text().splitlines()[0])["site"] == "globex"


def test_advance_names_an_unreachable_sandbox():
    result = subprocess.run(_cli("sandbox", "advance", "--url", "http://127.0.0.1:9", "--days", "1"),
                            capture_output=True, text=True, env=_env(), timeout=60)
    assert result.returncode == 1 and "not reachable" in result.stderr


def test_bad_sites_json_is_refused():
    result = subprocess.run(_cli("sandbox", "serve", "--sites", '["acme"]'), capture_output=True, text=True,
                            env=_env(), timeout=60)
    assert result.returncode == 2 and "--sites must be a JSON object" in result.stderr


def test_sites_file_gives_the_sites_without_keys_on_the_command_line(tmp_path, capsys):
    from recurly_elt.cli import build_parser

    parser = build_parser("sandbox")
    sites_file = tmp_path / "sites.json"
    write_private(sites_file, json.dumps(SANDBOX))  # keys live in private files
    args = parser.parse_args(["sandbox", "serve", "--sites-file", str(sites_file)])
    assert args.sites == SANDBOX
    for argv, message in (
        (["--sites-file", str(tmp_path / "missing.json")], "cannot read"),
        (["--sites", json.dumps({"acme": SANDBOX["acme"]}), "--sites-file", str(sites_file)], "not allowed with argument"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["sandbox", "serve", *argv])
        assert message in capsys.readouterr().err
