"""Dropped connections, on SQLite and PostgreSQL: a request that never left (connection refused) is
retried for every kind; one written whose answer was lost may have been applied, so kinds the
destination does not deduplicate (Braze events) follow the mapping's non_idempotent_policy:
at_most_once marks the batch uncertain and reports it (nothing received twice), at_least_once
resends it; idempotent kinds (attributes) are resent and delivered."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections import Counter

import requests
import sqlalchemy as sa

from recurly_elt.destinations.engine import deliver
from recurly_elt.destinations.transport import Transport
from recurly_elt.fakes.http import FakeServer

from . import expected
from .fakes_running import FAST_RETRY, KEY, destination, make_app, running, state, transport
from .warehouse_data import IMPORT_DAY, end_of


def received_events(fake) -> Counter:
    return Counter((e["user"], e["name"], e["time"], e["properties"]["event_id"]) for e in fake["events"])


def run(engine, server_or_transport, *, run_id, dest=None, **kw):
    mapping, adapter = dest or destination("braze")
    sent = server_or_transport if isinstance(server_or_transport, Transport) else transport(server_or_transport, adapter)
    return deliver(engine, mapping, adapter, sent, run_id=run_id, now=end_of(IMPORT_DAY), backfill=True, **kw)


def test_lost_answers_to_event_batches_are_uncertain_and_nothing_is_received_twice(warehouse):
    # lost: Braze applied the request, then the connection closed with no answer.
    with running("braze", faults="lost=0.2") as server:
        result = run(warehouse, server, run_id="import", kinds=["events"])
        fake = state(server)
        assert fake["server"]["faults"]["lost"] > 0
        # Every event exactly once: the lost batches were applied and were not resent.
        assert received_events(fake) == expected.events(warehouse) and fake["duplicate_events"] == 0
        assert result.uncertain_batches and result.status == "success"
        with warehouse.connect() as c:
            statuses = dict(c.execute(sa.text("SELECT status, COUNT(*) FROM load_requests GROUP BY status")).all())
            errors = {e for e, in c.execute(sa.text("SELECT error FROM load_requests WHERE status = 'uncertain'"))}
            logged = c.execute(sa.text("SELECT uncertain_batches, uncertain_batch_ids FROM load_run_log "
                                       "WHERE run_id = 'import'")).one()
        assert statuses["uncertain"] == len(result.uncertain_batches) == logged[0]
        assert json.loads(logged[1]) == result.uncertain_batches
        assert all("no answer after the request was sent" in e for e in errors)
        uncertain = expected.uncertain(warehouse, "braze", "events")
        assert uncertain and uncertain <= {k[3] for k in received_events(fake)}
        # A later run does not resend them either.
        again = run(warehouse, server, run_id="again", kinds=["events"])
        assert again.kinds["events"].requests == 0 and state(server)["duplicate_events"] == 0


def test_drops_before_and_after_applying_lose_nothing_unreported(warehouse):
    mapping, adapter = destination("braze")
    small = tuple(dataclasses.replace(k, max_records=5) if k.name == "users" else k for k in mapping.kinds)
    mapping = dataclasses.replace(mapping, kinds=small)  # 12 attribute requests, so some meet a fault
    with running("braze", faults="drop=0.1,lost=0.1") as server:
        result = run(warehouse, server, run_id="import", dest=(mapping, adapter))
        fake = state(server)
    assert fake["server"]["faults"]["drop"] > 0 and fake["server"]["faults"]["lost"] > 0
    uncertain = expected.uncertain(warehouse, "braze", "events")
    assert len(result.uncertain_batches) > 0
    # Events: exactly once, or (uncertain) at most once; a drop before applying loses the
    # uncertain batch's events, a lost answer keeps them; none is received twice.
    expected.assert_once_or_uncertain(received_events(fake), expected.events(warehouse), uncertain)
    assert fake["duplicate_events"] == 0
    # Attributes are idempotent: resent after every drop, all delivered, none uncertain.
    assert not expected.uncertain(warehouse, "braze", "users")
    assert set(fake["users"]) >= set(expected.accounts(warehouse))
    for code, want in expected.accounts(warehouse).items():
        assert fake["users"][code].get("recurly_mrr") == want["mrr"], code
        assert fake["users"][code].get("recurly_health_band") == want["band"], code
    assert result.kinds["users"].sent == len(expected.accounts(warehouse)) and result.retries > 0


def test_at_least_once_resends_a_batch_whose_answer_was_lost(warehouse):
    mapping, adapter = destination("braze")
    mapping = dataclasses.replace(mapping, non_idempotent_policy="at_least_once")
    with running("braze", faults="lost=0.2") as server:
        result = run(warehouse, server, run_id="import", kinds=["events"], dest=(mapping, adapter))
        fake = state(server)
    assert not result.uncertain_batches and not expected.uncertain(warehouse, "braze", "events")
    received = received_events(fake)
    # Every event arrived; those of lost answers twice (the policy's documented cost).
    assert set(received) == set(expected.events(warehouse))
    assert fake["duplicate_events"] > 0 and result.retries > 0


def test_a_refused_connection_is_retried_even_for_events(warehouse):
    """The request never left (nothing listened yet): safe to resend, even at most once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mapping, adapter = destination("braze")
    servers: list[FakeServer] = []

    def sleep(seconds: float) -> None:  # the first backoff: the API comes up on that port
        if not servers:
            servers.append(FakeServer(make_app("braze", seed=7), port=port, seed=7).start())

    session = requests.Session()
    session.headers.update(adapter.auth_headers(KEY))
    sent = Transport(session=session, base_url=f"http://127.0.0.1:{port}", rate=adapter.rate_headers,
                     retry=FAST_RETRY, sleep=sleep)
    try:
        result = run(warehouse, sent, run_id="import", kinds=["events"], dest=(mapping, adapter))
        fake = state(servers[0])
    finally:
        for server in servers:
            server.stop()
    assert servers and result.retries >= 1 and not result.uncertain_batches
    assert received_events(fake) == expected.events(warehouse) and fake["duplicate_events"] == 0
