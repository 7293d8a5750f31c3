"""A hostile Recurly at the transport level: links, cursors, bodies, versions, rate headers, key echoes.

Each scenario of sandbox/hostile.py is run through the real extraction entry point
(extract_resource) on SQLite and PostgreSQL; the test asserts what happens and that the key is
nowhere (log, exception, run log, XCom, warehouse).
"""

from __future__ import annotations

import json
import re

import pytest

from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.http_retry import RetryPolicy
from recurly_elt.recurly.errors import (
    RecurlyConfigError,
    RecurlyRequestError,
    RecurlyUnavailableError,
    RecurlyUntrustedResponse,
)
from recurly_elt.recurly.sites import SiteConfigError, sites_from_connection
from recurly_elt.staging import state
from recurly_elt.staging.load import ensure_staging_tables
from recurly_elt.warehouse.engine import create_engine_from_url, write_transaction

from extract_helpers import client_for, sim_objects
from hostile_helpers import assert_no_key, run_scenario
from known_keys import SENDABLE, UNSENDABLE

# scenario -> (error class, words the message must hold)
REFUSED = {
    "foreign_next": (RecurlyUntrustedResponse, ["https://evil.example", "refusing"]),
    "netpath_next": (RecurlyUntrustedResponse, ["evil.example", "refusing"]),
    "scheme_next": (RecurlyUntrustedResponse, ["https://127.0.0.1", "refusing"]),
    "other_list_next": (RecurlyUntrustedResponse, ["/transactions", "not at the list '/accounts'"]),
    "has_more_without_next": (RecurlyUntrustedResponse, ["has_more but gives no next link"]),
    "cursor_loop": (RecurlyUntrustedResponse, ["cursor loop", "loop-a"]),
    "cursor_cycle": (RecurlyUntrustedResponse, ["cursor loop", "cycle-"]),
    "endless_list": (RecurlyUntrustedResponse, ["Recurly-Total-Records", "does not end as announced"]),
    "html_body": (RecurlyUnavailableError, ["malformed body", "failed 12 times"]),
    "truncated_body": (RecurlyUnavailableError, ["malformed body", "failed 12 times"]),
    "wrong_version": (RecurlyUntrustedResponse, ["recurly.v2019-10-10", "v2021-02-25"]),
    "huge_body": (RecurlyUntrustedResponse, ["at most 1,048,576 bytes are read"]),
    "redirect_foreign": (RecurlyUntrustedResponse, ["redirect", "https://evil.example"]),
    "rate_limited_for_a_day": (RecurlyUnavailableError, ["still rate limited"]),
    "key_echo_400": (RecurlyRequestError, ["HTTP 400", "***"]),
    "key_echo_503": (RecurlyUnavailableError, ["HTTP 503", "failed 12 times"]),
    "key_echo_401": (RecurlyConfigError, ["HTTP 401", "***"]),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_answers_fail_the_read_naming_connection_site_and_what(sandbox, warehouse_url, caplog, name):
    error_class, words = REFUSED[name]
    outcome = run_scenario(sandbox, warehouse_url, name, caplog, max_body_bytes=1024 * 1024)
    assert isinstance(outcome.error, error_class), repr(outcome.error)
    message = str(outcome.error)
    assert "'recurly_test'" in message and "'acme'" in message
    for word in words:
        assert word in message, (word, message)
    assert outcome.run_log["status"] == "failed" and outcome.run_log["error"].endswith(message[-100:])
    assert_no_key(outcome)


def test_no_request_follows_a_foreign_link(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "foreign_next", caplog)
    # one HEAD (the count) and the first page; nothing after the foreign link, nothing staged
    assert outcome.client.stats.requests == 2
    assert outcome.run_log["records"] == 0


def test_endless_and_looping_lists_stop_at_their_bound(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "endless_list", caplog)
    accounts = len(sim_objects(sandbox)["accounts"])
    bound = -(-accounts // 200) * 11 // 10 + 5 + (1 if (-(-accounts // 200)) % 10 else 0)
    # the list's own pages + 10 % (rounded up) + 5 at most, then the error (plus the HEAD)
    assert outcome.client.stats.requests == 1 + bound
    assert f"({bound} pages)" in str(outcome.error)
    loop = run_scenario(sandbox, warehouse_url, "cursor_loop", caplog, run_id="loop")
    assert loop.client.stats.requests == 1 + 2


def test_a_reset_a_day_ahead_waits_at_most_the_cap_and_says_so(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "reset_a_day_ahead", caplog)
    assert outcome.error is None and outcome.result["records"] == len(sim_objects(sandbox)["accounts"])
    assert outcome.sleeps, "no wait at all: X-RateLimit-Remaining 0 was not honoured"
    assert "waiting the cap of 300s" in outcome.log
    assert max(outcome.sleeps) <= RetryPolicy().max_wait_seconds
    assert_no_key(outcome)


def test_rate_limited_for_a_day_gives_up_after_the_patience_with_capped_waits(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "rate_limited_for_a_day", caplog)
    assert isinstance(outcome.error, RecurlyUnavailableError), repr(outcome.error)
    assert outcome.sleeps, "gave up without waiting: the 429s were not waited out at the cap"
    policy = RetryPolicy()
    assert max(outcome.sleeps) <= policy.max_wait_seconds + policy.jitter_seconds
    assert sum(outcome.sleeps) <= policy.max_rate_limited_seconds + policy.max_wait_seconds + 1
    assert re.search(r"the API asked for 8640\ds|8639\ds; capped", outcome.log)
    assert "the rate budget says wait" not in outcome.log  # a 429's wait is not waited twice


def test_unreadable_rate_headers_are_ignored_and_the_read_completes(sandbox, warehouse_url, caplog):
    outcome = run_scenario(sandbox, warehouse_url, "garbage_rate_headers", caplog)
    assert outcome.error is None and outcome.result["records"] == len(sim_objects(sandbox)["accounts"])
    assert outcome.result["status_429"] == 1 and max(outcome.sleeps) <= 1.2


@pytest.mark.parametrize("link", ["https://evil.example/accounts?cursor=x",
                                  "//evil.example/accounts?cursor=x",
                                  "/transactions?cursor=x"])
def test_a_poisoned_checkpoint_link_is_refused_not_followed(sandbox, warehouse_url, caplog, link):
    engine = create_engine_from_url(warehouse_url)
    ensure_staging_tables(engine)
    with write_transaction(engine) as conn:
        state.save_checkpoint(conn, "acme", "accounts", None, None,
                              state.Checkpoint(None, link, None, None, pages=1, records=200), "poisoned")
    client = client_for(sandbox)
    with pytest.raises(RecurlyUntrustedResponse, match="saved checkpoint link") as info:
        extract_resource(client, engine, "accounts", Window(), run_id="poisoned", progress_every=3600)
    assert "'acme'" in str(info.value)
    assert client.stats.requests <= 1  # at most the HEAD count: the link itself is never requested


@pytest.mark.parametrize("key", SENDABLE, ids=["latin-1", "unreserved"])
def test_a_latin_1_key_is_accepted(key):
    assert sites_from_connection("recurly_acme", host=None, password=key, extra={"subdomain": "acme"})[0].api_key == key


@pytest.mark.parametrize("key", UNSENDABLE, ids=["cyrillic", "space", "nul", "emoji"])
def test_a_key_http_basic_cannot_send_is_a_clear_error_without_the_key(key):
    with pytest.raises(SiteConfigError) as info:
        sites_from_connection("recurly_acme", host=None, password=json.dumps({"acme": key}))
    message = f"{info.value!r} {info.value}"
    assert "'recurly_acme'" in message and "'acme'" in message and "position" in message
    assert key not in message and key.rsplit("-", 1)[1] not in message  # not even its tail
