"""kill -9 in the middle of a read, then a retry: resumes at the next page, nothing read twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import sqlalchemy as sa

from recurly_elt.extract.verify import compare_with_source
from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.sandbox.faults import FaultSpec
from recurly_elt.staging.load import ensure_staging_tables
from recurly_elt.staging.state import CHECKPOINTS
from recurly_elt.warehouse.engine import create_engine_from_url

from extract_helpers import KEYS, client_for, sim_objects

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

READER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from recurly_elt.extract.extractor import extract_resource
    from recurly_elt.extract.window import Window
    from recurly_elt.recurly.client import RecurlyClient
    from recurly_elt.recurly.sites import Site
    from recurly_elt.warehouse.engine import create_engine_from_url
    client = RecurlyClient(Site("acme", sys.argv[2], "recurly_test", sys.argv[3]))
    extract_resource(client, create_engine_from_url(sys.argv[4]), "line_items", Window(), run_id="run-1")
""")


def _committed_pages(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.coalesce(sa.func.max(CHECKPOINTS.c.pages), 0))).scalar_one()


def test_kill_mid_read_then_retry_resumes(sandbox, warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    ensure_staging_tables(engine)
    sandbox.sites_by_name["acme"].set_faults(FaultSpec.parse("slow=1.0:0.25"))  # every page takes 0.25 s
    reader = subprocess.Popen([sys.executable, "-c", READER, str(PLUGINS), sandbox.url, KEYS["acme"], warehouse_url])
    try:
        deadline = time.monotonic() + 60
        while _committed_pages(engine) < 2:
            assert reader.poll() is None, "the reader ended before it could be killed"
            assert time.monotonic() < deadline, "no page committed in time"
            time.sleep(0.05)
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()
    time.sleep(0.3)  # let a request in flight at the kill reach the log
    committed = _committed_pages(engine)
    # GETs only: each try also asks HEAD of the list once (its count bounds the read's pages).
    before = [e["path"] for e in sandbox.request_log.entries("acme") if e["method"] == "GET"]
    total_pages = -(-len(sim_objects(sandbox)["line_items"]) // 200)
    assert 2 <= committed < total_pages, "the kill did not land mid-read"
    with engine.connect() as conn:
        next_url = conn.execute(sa.select(CHECKPOINTS.c.next_url)).scalar_one()

    sandbox.sites_by_name["acme"].set_faults(FaultSpec())
    sandbox.request_log.clear()
    result = extract_resource(client_for(sandbox), engine, "line_items", Window(), run_id="run-1")
    after = [e["path"] for e in sandbox.request_log.entries("acme") if e["method"] == "GET"]

    assert result.resumed_from_page == committed
    assert after[0] == next_url
    assert not set(before[:committed]) & set(after), "a committed page was read again"
    diff = compare_with_source(engine, "acme", sim_objects(sandbox), ["line_items"])["line_items"]
    assert diff.equal, diff.summary()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(CHECKPOINTS)).scalar_one() == 0
        row = conn.execute(sa.text("SELECT attempts, status, records FROM extract_run_log")).one()
    assert row.attempts == 2 and row.status == "success" and row.records == diff.source
