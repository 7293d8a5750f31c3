"""A warehouse as the DAGs leave it, for the UI tests: two sandbox sites extracted by the real
extractor (so `extract_run_log` and the watermarks are filled), transformed, and checked."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from recurly_elt.extract.extractor import extract_resource
from recurly_elt.extract.window import Window
from recurly_elt.recurly.client import RecurlyClient
from recurly_elt.recurly.ratebudget import RateBudget
from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.http_retry import RetryPolicy
from recurly_elt.recurly.sites import Site
from recurly_elt.transform import pipeline
from recurly_elt.transform.check_log import run_and_record
from recurly_elt.transform.checks import CHECKS
from recurly_elt.warehouse.engine import create_engine_from_url

from known_keys import UI as KEYS  # noqa: E402 (the one registry of the suite's keys)
START, UNTIL = date(2025, 3, 1), date(2025, 9, 1)
IMPORT_RUN, DAILY_RUN = "manual__ui-import", "scheduled__2025-08-31T00:00:00+00:00"
log = logging.getLogger(__name__)


def build_warehouse(url: str, accounts: int = 120) -> sa.Engine:
    from recurly_elt.sandbox.server import SandboxServer
    from recurly_elt.sandbox.sites import build_sites

    engine = create_engine_from_url(url)
    server = SandboxServer(build_sites(KEYS, seed=11, accounts=accounts, start_date=START, until=UNTIL)).start()
    try:
        last_day = datetime.combine(UNTIL - timedelta(days=1), datetime.min.time())
        for run_id, window in ((IMPORT_RUN, Window(end=last_day)), (DAILY_RUN, Window(start=last_day))):
            for site in KEYS:
                client = RecurlyClient(site=Site(site, server.url, "recurly_test", KEYS[site]),
                                       budget=RateBudget(readers=1),
                                       retry=RetryPolicy(base_seconds=0.01, max_backoff_seconds=0.05))
                for name in RESOURCES:
                    extract_resource(client, engine, name, window, run_id=run_id, mode="test", progress_every=3600)
    finally:
        server.stop()
    pipeline.run(engine, START, UNTIL, health_days=30, run_id=IMPORT_RUN)
    for name in CHECKS:
        run_and_record(engine, name, DAILY_RUN, log)
    return engine
