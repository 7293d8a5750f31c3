"""Where no browser is installed, the browser test is skipped with a reason that says what to install."""

from __future__ import annotations

from .browser import missing_browser


def test_the_skip_reason_names_the_debian_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium, no chromedriver
    assert missing_browser() == "no Chromium on PATH (Debian: apt-get install -y chromium chromium-driver)"
    (tmp_path / "chromium").write_text("#!/bin/sh\n")
    (tmp_path / "chromium").chmod(0o755)
    assert missing_browser() == "no chromedriver on PATH (Debian: apt-get install -y chromium-driver)"
