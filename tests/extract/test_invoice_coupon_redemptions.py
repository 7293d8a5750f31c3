"""Invoices' coupon redemptions: read only for the invoices MRR needs them of, on SQLite and PostgreSQL.

The rule (docs/extraction.md "Coupon redemptions of an invoice"): an invoice with a prorated
recurring line item that carries a discount, of a subscription without a coupon redemption staged.
The expected invoices are found here from the sandbox's own objects, and the requests counted in the
sandbox's request log. The site is the extraction tests' (400 accounts, two line items embedded)
over a year and with a seed whose data has such invoices (7 of 2,345; the default fixture's half
year has none).
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from recurly_elt.extract.completion import (REDEMPTION_MAX_PAGES, as_extracted, complete_invoice_coupon_redemptions,
                                            complete_invoice_line_items, coupon_rule, needs_coupon_redemptions)
from recurly_elt.extract.window import Window
from recurly_elt.recurly.client import RecurlyClient
from recurly_elt.recurly.errors import RecurlyUntrustedResponse
from recurly_elt.recurly.sites import Site
from recurly_elt.staging.coupon_terms import has_terms
from recurly_elt.staging.load import upsert_records
from recurly_elt.transform.config import TransformConfig
from recurly_elt.transform.mrr import coupon_terms
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


def _with_terms(sub: dict) -> bool:
    return has_terms(json.dumps(sub["coupon_redemptions"]), sub["currency"])


def _named_by_the_rule(objects: dict) -> set[str]:
    subs = objects["subscriptions"]
    return {i["id"] for i in objects["invoices"].values()
            if any(li["origin"] in ("plan", "add_on") and li.get("subscription_id")
                   and 0 < (li.get("proration_rate") or 0) < 1 and li["discount"] != 0
                   and not _with_terms(subs[li["subscription_id"]]) for li in i["line_items"])}


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
                              and _with_terms(objects["subscriptions"][li["subscription_id"]])
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

    # A later sync reads the redemptions of the changed invoices the rule names, and no others. Over
    # the next 30 days this seed bills one such invoice (over 3 days, none: the check would hold
    # vacuously); every other invoice it changes costs no redemption request.
    day_start = site.sim.now.replace(tzinfo=None)
    site.advance(30)
    sandbox.request_log.clear()
    extract_all(sandbox, engine, Window.of(day_start, day_start + timedelta(days=30)), run_id="later")
    changed = {i for i in _named_by_the_rule(objects) if objects["invoices"][i]["updated_at"] >= day_start.isoformat()}
    assert changed and sorted(_redemption_requests(sandbox)) == sorted(changed)
    assert sum(1 for i in objects["invoices"].values() if i["updated_at"] >= day_start.isoformat()) > len(changed)
    engine.dispose()


class _Answers(requests.Session):
    """A session answering each GET with the next of `bodies` (JSON objects), recording the URLs."""

    def __init__(self, bodies: list[bytes]):
        super().__init__()
        self.bodies, self.urls = list(bodies), []

    def request(self, method, url, **kwargs):
        self.urls.append(url)
        resp = requests.Response()
        resp.status_code, resp.url = 200, url
        resp.raw = io.BytesIO(self.bodies.pop(0))
        return resp


def _client(bodies: list[bytes]) -> RecurlyClient:
    return RecurlyClient(site=Site("acme", "https://v3.recurly.test", "recurly_test", "k"),
                         session=_Answers(bodies), sleep=lambda s: None)


def _page(records: list[dict], more: bool, at: int = 0) -> bytes:
    nxt = f"/invoices/inv-1/coupon_redemptions?cursor={at + 1}" if more else None
    return json.dumps({"object": "list", "has_more": more, "next": nxt, "data": records}).encode()


def test_an_invoices_redemptions_are_read_with_exact_amounts():
    """A fixed coupon's 0.10 and a line item's 19.99 stay the decimals they are written as."""
    redemption = b'{"id": "cr1", "coupon": {"discount": {"type": "fixed", "currencies": [{"currency": "USD", "amount": 0.10}]}}}'
    body = b'{"object": "list", "has_more": false, "next": null, "data": [' + redemption + b']}'
    invoice = {"id": "inv-1"}
    assert complete_invoice_coupon_redemptions(_client([body]), [invoice]) == 1
    amount = invoice["coupon_redemptions"][0]["coupon"]["discount"]["currencies"][0]["amount"]
    assert type(amount) is Decimal and amount == Decimal("0.10")
    item = b'{"object": "list", "has_more": false, "next": null, "data": [{"id": "li2", "unit_amount": 19.99}]}'
    invoice = {"id": "inv-1", "has_more_line_items": True, "line_items": [{"id": "li1"}]}
    complete_invoice_line_items(_client([item]), [invoice])
    assert type(invoice["line_items"][1]["unit_amount"]) is Decimal and invoice["line_items"][1]["unit_amount"] == Decimal("19.99")


def test_an_invoices_redemption_list_longer_than_its_bound_is_refused_by_name():
    """An invoice has a few redemptions: a list still going after REDEMPTION_MAX_PAGES pages is an
    untrusted answer naming the invoice, not 200 pages read."""
    pages = [_page([{"id": f"cr{n}"}], more=True, at=n) for n in range(REDEMPTION_MAX_PAGES + 5)]
    client = _client(pages)
    with pytest.raises(RecurlyUntrustedResponse, match="/invoices/inv-1/coupon_redemptions") as refused:
        complete_invoice_coupon_redemptions(client, [{"id": "inv-1"}])
    assert len(client.session.urls) == REDEMPTION_MAX_PAGES
    # the bound is named for what it is: not a Recurly-Total-Records the list never sent
    assert "coupon redemptions may take" in str(refused.value) and "Total-Records" not in str(refused.value)


def _coupon(discount: dict, duration: str | None = "forever") -> dict:
    return {"code": "c", "discount": discount, **({"duration": duration} if duration else {})}


PERCENT_10 = {"type": "percent", "percent": 10}
# (own redemptions, the transform finds terms, the terms last: the rule reads no invoice redemptions)
RULE_CASES = {
    "percent": ([{"id": "a", "state": "active", "coupon": _coupon(PERCENT_10)}], True, True),
    "fixed": ([{"id": "b", "state": "active", "coupon": _coupon({"type": "fixed", "currencies": [
        {"currency": "USD", "amount": 5.25}]})}], True, True),
    "temporal": ([{"id": "t", "state": "active", "coupon": {**_coupon(PERCENT_10, "temporal"), "temporal_amount": 3,
                                                            "temporal_unit": "month"}}], True, False),
    "single_use": ([{"id": "u", "state": "active", "coupon": _coupon({"type": "fixed", "currencies": [
        {"currency": "USD", "amount": 20}]}, "single_use")}], True, False),
    "no-duration": ([{"id": "n", "state": "active", "coupon": _coupon(PERCENT_10, None)}], True, False),
    "forever-and-temporal": ([{"id": "a", "state": "active", "coupon": _coupon(PERCENT_10)},
                              {"id": "t", "state": "active", "coupon": _coupon({"type": "fixed", "currencies": [
                                  {"currency": "USD", "amount": 5}]}, "temporal")}], True, False),
    "inactive": ([{"id": "c", "state": "inactive", "coupon": _coupon(PERCENT_10)}], False, False),
    "free_trial": ([{"id": "d", "state": "active", "coupon": _coupon({"type": "free_trial",
                                                                      "trial": {"length": 7}})}], False, False),
    "fixed-in-another-currency": ([{"id": "e", "state": "active", "coupon": _coupon({"type": "fixed", "currencies": [
        {"currency": "EUR", "amount": 5}]})}], False, False),
}
# Redemptions not shaped as the API says: no terms, and the warning names the subscription and why.
MISFITS = {
    "coupon-a-string": ([{"id": "x", "state": "active", "coupon": "launch10"}],
                        "coupon_redemptions[0].coupon: expected an object, got a string"),
    "currencies-a-string": ([{"id": "x", "coupon": _coupon({"type": "fixed", "currencies": "USD"})}],
                            "coupon_redemptions[0].coupon.discount.currencies: expected an array, got a string"),
    "currency-a-number": ([{"id": "x", "coupon": _coupon({"type": "fixed", "currencies": [5]})}],
                          "coupon_redemptions[0].coupon.discount.currencies[0]: expected an object, got a number"),
    "amount-1e20": ([{"id": "x", "coupon": _coupon({"type": "fixed", "currencies": [{"currency": "USD",
                                                                                     "amount": 1e20}]})}],
                    "coupon_redemptions[0].coupon.discount.currencies[0].amount: 1E+20 is not an amount"),
    "subscription_id-a-list": ([{"id": "x", "subscription_id": ["sub-1"], "coupon": _coupon(PERCENT_10)}],
                               "coupon_redemptions[0].subscription_id: expected a string, got an array"),
}


def _stage_subscription(warehouse_url, own):
    engine = create_engine_from_url(warehouse_url)
    sub = {"id": "sub-1", "object": "subscription", "currency": "USD", "coupon_redemptions": own,
           "account": {"id": "acc-1"}, "plan": {"id": "p", "code": "p"}, "state": "active"}
    upsert_records(engine, "subscriptions", "acme", [sub])
    return engine, sub


def _transform_terms(sub: dict) -> bool:
    """The transform's reading (transform/mrr.py coupon_terms) of the subscription as staged."""
    frame = pd.DataFrame({"id": [sub["id"]], "currency": [sub["currency"]],
                          "coupon_redemptions": [json.dumps(sub["coupon_redemptions"])]})
    return sub["id"] in coupon_terms(frame)[0].index


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_the_rule_counts_a_subscription_as_with_a_coupon_only_where_the_transform_finds_lasting_terms(warehouse_url,
                                                                                                   case):
    """The rule and the transform share staging/coupon_terms.py: a subscription staged with only
    redemptions the transform reads no terms from has its prorated discounted invoices read; so has
    one whose terms come from a coupon that expires (temporal, single use, no duration said): once
    it has, staging holds no terms for it, and the invoice would not be read again."""
    own, terms, lasting = RULE_CASES[case]
    engine, sub = _stage_subscription(warehouse_url, own)
    rule = coupon_rule(engine, "acme")
    engine.dispose()
    assert _transform_terms(sub) is terms and has_terms(json.dumps(own), "USD") is terms
    assert ("sub-1" in rule.with_terms) is lasting
    assert rule.origins == TransformConfig.load().recurring_origins
    invoice = {"id": "inv-1", "line_items": [{"origin": "plan", "subscription_id": "sub-1", "proration_rate": 0.5,
                                              "discount": 1.25}]}
    assert needs_coupon_redemptions(invoice, rule) is not lasting
    objects = {"subscriptions": {"sub-1": sub}, "invoices": {"inv-1": invoice}, "coupon_redemptions": {}}
    assert ("coupon_redemptions" in as_extracted(objects, {})["invoices"][0]) is not lasting


@pytest.mark.parametrize("case", list(MISFITS))
def test_a_subscription_whose_redemptions_do_not_fit_is_named_and_its_invoices_read(warehouse_url, caplog, case):
    """coupon_rule runs at the start of every invoice read: a misfit (staged as any JSON) neither
    stops it nor counts as terms; the warning names the site, the subscription and what is wrong,
    and the transform, reading the same definition, finds no terms either."""
    own, reason = MISFITS[case]
    engine, sub = _stage_subscription(warehouse_url, own)
    with caplog.at_level(logging.WARNING, logger="recurly_elt.extract.completion"):
        rule = coupon_rule(engine, "acme")
    engine.dispose()
    assert "sub-1" not in rule.with_terms and not _transform_terms(sub)
    (message,) = [r.getMessage() for r in caplog.records if r.name == "recurly_elt.extract.completion"]
    assert message.startswith("acme/subscriptions: record 'sub-1': ") and reason in message, message
    invoice = {"id": "inv-1", "line_items": [{"origin": "plan", "subscription_id": "sub-1", "proration_rate": 0.5,
                                              "discount": 1.25}]}
    assert needs_coupon_redemptions(invoice, rule)


def test_redemption_text_nested_too_deep_or_not_json_is_a_misfit_not_a_crash():
    """What json.loads cannot read (past Python's recursion limit, or not JSON) gives no terms and says why."""
    from recurly_elt.staging.coupon_terms import NO_TERMS, checked_terms, lasting_terms

    assert checked_terms("[" * 5000 + "]" * 5000, "USD") == (NO_TERMS, "coupon_redemptions: nested too deep to read")
    assert lasting_terms("[" * 5000 + "]" * 5000, "USD") == (False, "coupon_redemptions: nested too deep to read")
    terms, why = checked_terms("[{", "USD")
    assert terms == NO_TERMS and why.startswith("coupon_redemptions: not JSON")


def test_a_staged_subscription_whose_redemptions_do_not_fit_neither_stops_the_invoice_read_nor_hides_its_invoices(
        sandbox, warehouse_url, caplog):
    """Through the real extraction: a subscription with its own coupon whose prorated discounted
    invoice needs no redemption request is staged first with `coupon: "launch10"` (a later
    updated_at, so the sandbox's copy does not replace it). Every invoice is still read, the rule
    names the subscription in a warning, and its prorated discounted invoices' redemptions are now
    read too (it counts as without terms), one request each."""
    objects = sandbox.sites_by_name["acme"].sim.objects
    expected = _named_by_the_rule(objects)
    def prorated_discounted(li):
        return li["origin"] in ("plan", "add_on") and 0 < (li.get("proration_rate") or 0) < 1 and li["discount"] != 0

    sub_id = next(li["subscription_id"] for i in objects["invoices"].values() for li in i["line_items"]
                  if li.get("subscription_id") and prorated_discounted(li)
                  and _with_terms(objects["subscriptions"][li["subscription_id"]]))
    its_invoices = {i["id"] for i in objects["invoices"].values()
                    if any(li.get("subscription_id") == sub_id and prorated_discounted(li) for li in i["line_items"])}
    engine = create_engine_from_url(warehouse_url)
    hostile = {**objects["subscriptions"][sub_id], "updated_at": "2099-01-01T00:00:00Z",
               "coupon_redemptions": [{"id": "cr-bad", "state": "active", "coupon": "launch10"}]}
    upsert_records(engine, "subscriptions", "acme", [hostile])
    sandbox.request_log.clear()
    with caplog.at_level(logging.WARNING, logger="recurly_elt.extract.completion"):
        result = extract_all(sandbox, engine, run_id="import")
    with engine.connect() as conn:
        staged = conn.execute(sa.text("SELECT count(*) FROM stg_invoices WHERE site = 'acme'")).scalar()
    engine.dispose()
    assert staged == len(objects["invoices"]) and result["invoices"].records >= staged
    assert its_invoices and not its_invoices & expected
    assert sorted(_redemption_requests(sandbox)) == sorted(expected | its_invoices)
    assert any(r.getMessage().startswith(f"acme/subscriptions: record {sub_id!r}: coupon_redemptions[0].coupon: "
                                         "expected an object, got a string") for r in caplog.records)
