"""The Recurly client against the sandbox: fail fast on a wrong key, wait out 429s, retry faults."""

from __future__ import annotations

import logging
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from recurly_elt.recurly.client import RecurlyClient
from recurly_elt.recurly.errors import RecurlyConfigError
from recurly_elt.recurly.ratebudget import RateBudget
from recurly_elt.http_retry import RetryPolicy
from recurly_elt.recurly.sites import Site

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))
from extract_helpers import KEYS, client_for, sandbox  # noqa: E402,F401
from known_keys import WRONG


def test_wrong_key_fails_fast_naming_the_connection_never_the_key(sandbox, caplog):
    wrong = WRONG
    client = client_for(sandbox, key=wrong)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(RecurlyConfigError) as info:
        next(client.pages("/accounts", {"limit": 200}))
    assert time.monotonic() - started < 2 and client.stats.requests == 1  # no retries
    message = str(info.value)
    assert "recurly_test" in message and "acme" in message and "401" in message
    assert wrong not in message and wrong not in caplog.text
    assert KEYS["acme"] not in message


def test_unknown_api_version_is_a_config_error(sandbox):
    client = client_for(sandbox)
    client.session.headers["Accept"] = "application/vnd.recurly.v2000-01-01+json"
    with pytest.raises(RecurlyConfigError, match="406"):
        client.get_json("/accounts")


def test_rate_limited_reads_wait_for_the_budget_instead_of_hammering(sandbox):
    site = sandbox.sites_by_name["acme"]
    from recurly_elt.sandbox.ratelimit import SlidingWindowLimiter

    site.limiter = SlidingWindowLimiter(600, 2.0)  # 20 requests per 2-second window
    client = client_for(sandbox)
    started = time.monotonic()
    for _ in range(60):
        client.get_json("/plans", {"limit": 1})
    seconds = time.monotonic() - started
    # 60 requests through a 20-per-2s window need about 4 s; at most 1% answered 429
    assert seconds >= 3.5
    assert client.stats.status_429 <= 1
    assert site.statuses.get(429, 0) <= 1


def test_transient_faults_are_retried_and_bodies_never_returned_broken(sandbox):
    from recurly_elt.sandbox.faults import FaultSpec

    sandbox.sites_by_name["acme"].set_faults(FaultSpec.parse("5xx=0.3,drop=0.1,malformed=0.1"))
    client = client_for(sandbox)
    ids = [a["id"] for page in client.pages("/accounts", {"limit": 20, "order": "asc"}) for a in page.data]
    assert len(ids) == len(set(ids)) == len(sandbox.sites_by_name["acme"].sim.objects["accounts"])
    assert client.stats.retries > 0


def test_budget_pacing_spreads_remaining_over_time_to_reset():
    now = [1000.0]
    budget = RateBudget(readers=2, clock=lambda: now[0])
    assert budget.delay() == 0.0  # unknown budget: go
    budget.observe({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "42", "X-RateLimit-Reset": "1010"})
    budget.wait(sleep=lambda s: None)
    # 40 spare requests (2 kept in reserve for 2 readers) over 10 s: every 0.25 s
    assert budget.delay() == pytest.approx(0.25)
    budget.observe({"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "1003"})
    assert budget.delay() == pytest.approx(3.05)  # at the reserve: wait for the reset
    assert budget.rate_limited_wait({"Retry-After": "7"}) == pytest.approx(7.0)


def test_backoff_grows_and_is_bounded():
    policy = RetryPolicy(base_seconds=1, max_backoff_seconds=8)
    waits = [policy.backoff(a) for a in range(1, 8)]
    assert 0.5 <= waits[0] <= 1 and all(w <= 8 for w in waits) and waits[5] >= 4
