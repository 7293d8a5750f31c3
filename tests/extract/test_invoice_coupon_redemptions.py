"""Invoices' coupon redemptions: read only for the invoices MRR needs them of, on SQLite and PostgreSQL.

The rule (docs/extraction.md "Coupon redemptions of an invoice"): an invoice with a prorated
recurring line item that carries a discount, of a subscription without a coupon redemption staged.
The expected invoices are found here from the sandbox's own objects, and the requests counted in the
sandbox's request log. The site is the extraction tests' (400 accounts, two line items embedded)
over a year and with a seed whose data has such invoices (7 of 2,345; the default fixture's half
year has none).
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from recurly_elt.extract.window import Window
from recurly_elt.warehouse.engine import create_engine_from_url

from extract_helpers import KEYS, UNTIL, extract_all


@pytest.fixture
def sandbox():
    from recurly_elt.sandbox.server import SandboxServer
    from recurly_elt.sandbox.sites import build_sites

    sites = build_sites({"acme": KEYS["acme"]}, seed=8, accounts=400, start_date=date(2024, 4, 1), until=UNTIL,
                        embedded_line_items=2)
    server = SandboxServer(sites).start()
    yield server
    server.stop()


def _named_by_the_rule(objects: dict) -> set[str]:
    subs = objects["subscriptions"]
    return {i["id"] for i in objects["invoices"].values()
            if any(li["origin"] in ("plan", "add_on") and li.get("subscription_id")
                   and 0 < (li.get("proration_rate") or 0) < 1 and li["discount"] != 0
                   and not subs[li["subscription_id"]]["coupon_redemptions"] for li in i["line_items"])}


def _redemption_requests(server) -> list[str]:
    return [e["path"].split("?")[0].split("/")[2] for e in server.request_log.entries("acme")
            if e["method"] == "GET" and e["path"].split("?")[0].endswith("/coupon_redemptions")]


def test_invoice_redemptions_are_read_only_for_the_invoices_the_rule_names(sandbox, warehouse_url):
    site = sandbox.sites_by_name["acme"]
    objects = site.sim.objects
    expected = _named_by_the_rule(objects)
    assert expected, "the sandbox should have a prorated invoice discounted by an account coupon"
    # not every discounted invoice: subscription coupons and full-period items need no request
    assert len(expected) < sum(1 for i in objects["invoices"].values() if i["discount"]) / 10
    with_own_coupon = {i["id"] for i in objects["invoices"].values()
                       if any(0 < (li.get("proration_rate") or 0) < 1 and li["discount"] != 0
                              and objects["subscriptions"][li["subscription_id"]]["coupon_redemptions"]
                              for li in i["line_items"] if li.get("subscription_id"))}
    assert with_own_coupon and not with_own_coupon & expected  # prorated, discounted, yet not read
    engine = create_engine_from_url(warehouse_url)
    sandbox.request_log.clear()
    result = extract_all(sandbox, engine, run_id="import")
    requested = _redemption_requests(sandbox)
    assert sorted(requested) == sorted(expected)  # one request each (a page holds them all)
    assert result["invoices"].requests >= len(expected)
    with engine.connect() as conn:
        staged = dict(conn.execute(sa.text("SELECT id, coupon_redemptions FROM stg_invoices WHERE site = 'acme'")).all())
        raw = dict(conn.execute(sa.text("SELECT id, raw_json FROM stg_invoices WHERE site = 'acme'")).all())
    for invoice_id, text in staged.items():
        if invoice_id in expected:
            applied = [r["id"] for r in json.loads(text)]
            assert sorted(applied) == sorted(site.sim.invoice_redemptions[invoice_id]) and applied
            assert all("subscription_id" not in r for r in json.loads(text))  # the account's coupons
            assert json.loads(raw[invoice_id])["coupon_redemptions"] == json.loads(text)
        else:
            assert text is None, invoice_id

    # A daily sync reads the redemptions of the changed invoices the rule names, and no others.
    day_start = site.sim.now.replace(tzinfo=None)
    site.advance(3)
    sandbox.request_log.clear()
    extract_all(sandbox, engine, Window.of(day_start, day_start + timedelta(days=3)), run_id="daily")
    changed = {i for i in _named_by_the_rule(objects) if objects["invoices"][i]["updated_at"] >= day_start.isoformat()}
    assert sorted(_redemption_requests(sandbox)) == sorted(changed)
    engine.dispose()
