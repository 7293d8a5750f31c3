"""Concurrent first runs on a fresh warehouse: every resource of two sites at once, no retry.

Mapped extract tasks of a first run all start together, each creating the staging tables it finds
missing. Five trials on a fresh SQLite file and a fresh PostgreSQL database each: every read must
succeed at its first try (no "database is locked", no duplicate pg_type row).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.staging.runlog import RUN_LOG
from recurly_elt.warehouse.engine import create_engine_from_url

from at_once import failures_at_once
from extract_helpers import KEYS, client_for

TRIALS = 5


@pytest.mark.parametrize("trial", range(1, TRIALS + 1))
def test_all_resources_of_two_sites_at_once_on_a_fresh_warehouse(sandbox, empty_warehouse_url, trial):
    url = empty_warehouse_url

    def reader(subdomain: str, resource: str):  # a client per reader, as each task has its own
        client = client_for(sandbox, subdomain)
        return lambda engine: extract_resource(client, engine, resource, Window(), run_id="first", progress_every=3600)

    failures = failures_at_once(url, {f"{s}/{r}": reader(s, r) for s in KEYS for r in RESOURCES})
    assert not failures, "\n".join(failures)
    engine = create_engine_from_url(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RUN_LOG.c.status, RUN_LOG.c.attempts)).all()
    engine.dispose()
    assert len(rows) == len(KEYS) * len(RESOURCES) and set(rows) == {("success", 1)}
