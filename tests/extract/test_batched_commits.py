"""Pages waiting for the writer commit together; a record listed twice keeps both versions."""

from __future__ import annotations

import time
from contextlib import contextmanager

import msgspec
import sqlalchemy as sa

from recurly_elt.extract import extractor
from recurly_elt.extract.verify import compare_with_source
from recurly_elt.extract.window import Window
from recurly_elt.recurly.client import Page, RecurlyClient
from recurly_elt.recurly.sites import Site
from recurly_elt.staging.load import ensure_staging_tables
from recurly_elt.warehouse.engine import create_engine_from_url, write_transaction

from extract_helpers import client_for, sim_objects
from known_keys import EXTRACT as KEYS


def test_pages_waiting_for_a_slow_writer_commit_together(sandbox, warehouse_url, monkeypatch):
    engine = create_engine_from_url(warehouse_url)
    transactions = []

    @contextmanager
    def slow_write_transaction(engine):
        time.sleep(0.2)  # the writer is the slower side: pages queue up meanwhile
        with write_transaction(engine) as conn:
            transactions.append(1)
            yield conn

    monkeypatch.setattr(extractor, "write_transaction", slow_write_transaction)
    result = extractor.extract_resource(client_for(sandbox), engine, "line_items", Window(), run_id="batched")
    pages = -(-len(sim_objects(sandbox)["line_items"]) // 200)
    assert result.pages == pages >= 3
    assert len(transactions) < pages  # start, batches, no transaction per page
    diff = compare_with_source(engine, "acme", sim_objects(sandbox), ["line_items"])["line_items"]
    assert diff.equal, diff.summary()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pages, records, status FROM extract_run_log")).one() == (
            pages, result.records, "success")


class _ListedTwice(RecurlyClient):
    """Two pages, served at once; the second lists the first page's record again, changed."""

    def count(self, path, params=None):
        return 2

    def pages(self, path, params=None, *, start_url=None, max_pages=None):
        def record(state: str, updated_at: str) -> msgspec.Raw:
            return msgspec.Raw(msgspec.json.encode({
                "id": "a1", "code": "a1", "state": state, "created_at": "2025-01-01T00:00:00Z",
                "updated_at": updated_at}))
        yield Page([record("active", "2025-01-02T00:00:00Z")], "/accounts?cursor=2", path)
        yield Page([record("closed", "2025-01-03T00:00:00Z")], None, "/accounts?cursor=2")


def test_a_record_listed_twice_in_one_read_keeps_both_snapshots(warehouse_url, monkeypatch):
    fetched_ahead = extractor._prefetched

    def all_waiting(pool, items, depth=extractor.PREFETCH_PAGES):
        """Every page is waiting when the writer looks: they would all go into one batch."""
        pages = [item for item, _ in fetched_ahead(pool, items, depth)]
        for at, item in enumerate(pages):
            yield item, at < len(pages) - 1

    monkeypatch.setattr(extractor, "_prefetched", all_waiting)
    engine = create_engine_from_url(warehouse_url)
    ensure_staging_tables(engine)
    client = _ListedTwice(Site("acme", "http://127.0.0.1:9", "recurly_test", KEYS["acme"]))
    result = extractor.extract_resource(client, engine, "accounts", Window(), run_id="twice")
    assert (result.pages, result.inserted, result.updated, result.snapshots) == (2, 1, 1, 2)
    with engine.connect() as conn:
        states = conn.execute(sa.text("SELECT state FROM snap_accounts ORDER BY observed_updated_at")).scalars().all()
    assert states == ["active", "closed"]
