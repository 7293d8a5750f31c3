"""Fakes started in-process for a test, and a Transport to them (no Airflow connection needed)."""

from __future__ import annotations

import contextlib

import requests

from recurly_elt.destinations.adapter import load_adapter
from recurly_elt.destinations.mapping import load_mapping
from recurly_elt.destinations.transport import Transport
from recurly_elt.http_retry import RetryPolicy
from recurly_elt.fakes.http import FakeServer, parse_rate_limit

KEY = "test-key-0123456789"
FAST_RETRY = RetryPolicy(max_attempts=10, base_seconds=0.01, max_backoff_seconds=0.05, read_timeout=20)


def make_app(name: str, **kw):
    if name == "braze":
        from recurly_elt.fakes.braze import BrazeApp

        return BrazeApp(KEY, **kw)
    if name == "klaviyo":
        from recurly_elt.fakes.klaviyo import KlaviyoApp

        return KlaviyoApp(KEY, **kw)
    import importlib

    return importlib.import_module(f"recurly_elt.fakes.{name}").APP(KEY, **kw)


@contextlib.contextmanager
def running(name: str, *, faults: str = "", rate_limit: str = "", seed: int = 7, **app_kw):
    server = FakeServer(make_app(name, seed=seed, **app_kw), faults=faults, limiter=parse_rate_limit(rate_limit),
                        seed=seed)
    with server:
        yield server


def destination(name: str):
    mapping = load_mapping(name)
    return mapping, load_adapter(mapping)


def transport(server: FakeServer, adapter, retry: RetryPolicy = FAST_RETRY) -> Transport:
    session = requests.Session()
    session.headers.update(adapter.auth_headers(KEY))
    return Transport(session=session, base_url=server.url, rate=adapter.rate_headers, retry=retry)


def state(server: FakeServer) -> dict:
    return requests.get(server.url + "/_fake/state", timeout=30).json()


def dry_then_real(run, warehouse, server: FakeServer, counted: tuple[str, ...], **kw) -> tuple:
    """A dry run, which must send the fake nothing, then the same run for real (`run` is the test
    file's own runner, `kw` its arguments): (dry, real), with equal totals of every `counted` name."""
    dry = run(warehouse, server, run_id="dry", dry_run=True, **kw)
    assert state(server)["server"]["requests"] == 0
    real = run(warehouse, server, run_id="real", **kw)
    for name in counted:
        assert dry.total(name) == real.total(name), name
    return dry, real
