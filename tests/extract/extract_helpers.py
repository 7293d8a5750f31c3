"""An in-process sandbox (one or two sites) and helpers to extract from it."""

from __future__ import annotations

from datetime import date

import pytest

from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.recurly.client import RecurlyClient
from recurly_elt.recurly.ratebudget import RateBudget
from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.http_retry import RetryPolicy
from recurly_elt.recurly.sites import Site

from known_keys import EXTRACT as KEYS  # noqa: E402 (the one registry of the suite's keys)
START, UNTIL = date(2024, 10, 1), date(2025, 4, 1)


@pytest.fixture
def sandbox():
    from recurly_elt.sandbox.server import SandboxServer
    from recurly_elt.sandbox.sites import build_sites

    sites = build_sites(KEYS, seed=7, accounts=400, start_date=START, until=UNTIL, embedded_line_items=2)
    server = SandboxServer(sites).start()
    yield server
    server.stop()


def client_for(server, subdomain: str = "acme", *, key: str | None = None, fast_retries: bool = True) -> RecurlyClient:
    retry = RetryPolicy(base_seconds=0.01, max_backoff_seconds=0.05, max_attempts=12) if fast_retries else RetryPolicy()
    site = Site(subdomain, server.url, "recurly_test", key or KEYS[subdomain])
    return RecurlyClient(site=site, budget=RateBudget(readers=1), retry=retry)


def extract_all(server, engine, window: Window = Window(), run_id: str = "run-1", subdomain: str = "acme") -> dict:
    client = client_for(server, subdomain)
    return {name: extract_resource(client, engine, name, window, run_id=run_id, mode="test", progress_every=3600)
            for name in RESOURCES}


def sim_objects(server, subdomain: str = "acme") -> dict:
    return server.sites_by_name[subdomain].sim.objects


@pytest.fixture
def no_key_in_logs(caplog):
    """After the test: no sandbox key (as sent, URL-quoted, or in a Basic header) in any log record
    captured at any level. Autouse in tests/extract and tests/recurly (their conftest.py)."""
    import base64
    import logging
    from urllib.parse import quote

    caplog.set_level(logging.DEBUG)
    yield
    forms = {form for key in KEYS.values()
             for form in (key, quote(key, safe=""), base64.b64encode(f"{key}:".encode()).decode())}
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)
    leaked = sorted(form for form in forms if form in text)
    assert not leaked, "an API key reached the logs"
