"""kill -9 between an answer and its ledger write, then the retry, for ActiveCampaign, Bloomreach and
CustomerSuccessBox (SQLite and PostgreSQL): idempotent kinds are resent and nothing is lost;
Bloomreach events (never deduplicated) follow the at-most-once policy: uncertain, reported, not resent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from recurly_elt.destinations.engine import IN_FLIGHT, deliver

from .fakes_running import destination, running, state, transport
from .warehouse_data import IMPORT_DAY, end_of

ROOT = Path(__file__).resolve().parents[2]
CONNECT = {"bloomreach": ("test-key-id", {"project_token": "test-project"})}

CHILD = """
import os, signal, sys
from datetime import datetime
sys.path[:0] = [{plugins!r}, {root!r}]
from recurly_elt.destinations.engine import deliver
from recurly_elt.warehouse.engine import create_engine_from_url
from tests.destinations.fakes_running import destination, transport
name, kind, nth, connect = {name!r}, {kind!r}, {nth!r}, {connect!r}
mapping, adapter = destination(name)
if connect:
    adapter.connect(*connect)
class Server:
    url = {url!r}
settled = []
def before_settle(batch_id):
    if batch_id.startswith(kind):
        settled.append(batch_id)
        if len(settled) == nth:
            os.kill(os.getpid(), signal.SIGKILL)
deliver(create_engine_from_url({db!r}), mapping, adapter, transport(Server, adapter), run_id="killed", backfill=True,
        now=datetime.fromisoformat({now!r}), before_settle=before_settle)
"""


@pytest.mark.parametrize("name,kind,resent", [
    ("customersuccessbox", "subscriptions", True),
    ("activecampaign", "recurring_payments", True),
    ("bloomreach", "customers", True),
    ("bloomreach", "events", False),
])
def test_kill_9_mid_delivery_then_retry(warehouse, name, kind, resent):
    with running(name) as server:
        code = CHILD.format(plugins=str(ROOT / "plugins"), root=str(ROOT), name=name, kind=kind, nth=2,
                            connect=CONNECT.get(name), url=server.url,
                            db=warehouse.url.render_as_string(hide_password=False), now=end_of(IMPORT_DAY).isoformat())
        child = subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
                               timeout=300)
        assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
        with warehouse.connect() as c:
            pending = c.execute(sa.text("SELECT batch_id, object_keys FROM load_requests "
                                        "WHERE status = 'pending' ORDER BY batch_id")).all()
        # idempotent kinds keep up to IN_FLIGHT requests in flight: that many may be pending;
        # a kind sent at most once keeps one, so one batch at most is uncertain
        assert 1 <= len(pending) <= (IN_FLIGHT if resent else 1), pending
        batch_ids = [b for b, _ in pending]
        keys = [k for _, ks in pending for k in json.loads(ks)]
        mapping, adapter = destination(name)
        if name in CONNECT:
            adapter.connect(*CONNECT[name])
        retry = deliver(warehouse, mapping, adapter, transport(server, adapter), run_id="killed", backfill=True,
                        now=end_of(IMPORT_DAY))
        fake = state(server)
    assert retry.status == "success"
    with warehouse.connect() as c:
        statuses = {c.execute(sa.text("SELECT status FROM load_requests WHERE batch_id = :b"), {"b": b}).scalar()
                    for b in batch_ids}
        delivered = c.execute(sa.text("SELECT COUNT(*) FROM load_delivered WHERE destination = :d AND kind = :k"),
                              {"d": name, "k": kind}).scalar()
    # nothing left to send, and every record of the kind recorded delivered: nothing lost
    dry = deliver(warehouse, mapping, adapter, None, run_id="check", dry_run=True, backfill=True,
                  now=end_of(IMPORT_DAY), kinds=[kind])
    assert dry.total("creates") + dry.total("events") + dry.total("updates") == 0
    if kind == "events":  # the fake applied the interrupted batch: it holds each event once
        assert delivered == len(fake["events"])
    else:
        assert delivered == dry.kinds[kind].considered - dry.kinds[kind].skipped
    if resent:
        assert statuses == {"failed"} and not retry.uncertain_batches and retry.kinds[kind].sent >= len(keys)
    else:
        assert statuses == {"uncertain"} and retry.uncertain_batches == batch_ids
        assert fake["duplicate_events"] == 0
