"""Concurrent first runs on a fresh warehouse: every resource of two sites at once, no retry.

Mapped extract tasks of a first run all start together, each creating the staging tables it finds
missing. Five trials on a fresh SQLite file and a fresh PostgreSQL database each: every read must
succeed at its first try (no "database is locked", no duplicate pg_type row).
"""

from __future__ import annotations

import threading
import traceback

import pytest
import sqlalchemy as sa

from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.staging.runlog import RUN_LOG
from recurly_elt.warehouse.engine import create_engine_from_url

from extract_helpers import KEYS, client_for

TRIALS = 5


@pytest.mark.parametrize("trial", range(1, TRIALS + 1))
def test_all_resources_of_two_sites_at_once_on_a_fresh_warehouse(sandbox, empty_warehouse_url, trial):
    url = empty_warehouse_url
    start = threading.Barrier(len(KEYS) * len(RESOURCES))
    errors: list[str] = []  # whole tracebacks: the failing statement matters, not only the message

    def read(subdomain: str, resource: str) -> None:
        engine = create_engine_from_url(url)  # one engine per reader, as separate task processes have
        try:
            client = client_for(sandbox, subdomain)
            start.wait()
            extract_resource(client, engine, resource, Window(), run_id="first", progress_every=3600)
        except BaseException as exc:  # noqa: BLE001 - collected and reported below
            errors.append(f"{subdomain}/{resource}: {''.join(traceback.format_exception(exc))}")
        finally:
            engine.dispose()

    readers = [threading.Thread(target=read, args=(s, r)) for s in KEYS for r in RESOURCES]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert not errors, "\n".join(errors)
    engine = create_engine_from_url(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RUN_LOG.c.status, RUN_LOG.c.attempts)).all()
    engine.dispose()
    assert len(rows) == len(KEYS) * len(RESOURCES) and set(rows) == {("success", 1)}
