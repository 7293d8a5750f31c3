"""The sandbox's data generator: determinism, schema conformance, billing invariants, daily churn."""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from recurly_elt.sandbox.simulation import RESOURCES, SiteSimulation

ROOT = Path(__file__).resolve().parents[2]
START = date(2025, 11, 22)
UNTIL = date(2026, 11, 22)
SCHEMAS = {"accounts": "Account", "subscriptions": "Subscription", "invoices": "Invoice",
           "line_items": "LineItem", "transactions": "Transaction", "plans": "Plan", "add_ons": "AddOn",
           "coupon_redemptions": "CouponRedemption"}
ID = re.compile(r"^[0-9a-z]{12}$")


def _drop_nulls(value):
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def dump(sim: SiteSimulation) -> str:
    return json.dumps(sim.objects, sort_keys=True)


@pytest.fixture(scope="module")
def sim() -> SiteSimulation:
    return SiteSimulation(subdomain="acme", seed=42, accounts=600, start_date=START, until=UNTIL)


def test_same_arguments_give_identical_objects():
    a = SiteSimulation(subdomain="acme", seed=7, accounts=150, start_date=START, until=START + timedelta(days=200))
    b = SiteSimulation(subdomain="acme", seed=7, accounts=150, start_date=START, until=START + timedelta(days=200))
    assert dump(a) == dump(b)
    other_site = SiteSimulation(subdomain="globex", seed=7, accounts=150, start_date=START,
                                until=START + timedelta(days=200))
    assert dump(other_site) != dump(a)


def test_advancing_equals_building_to_the_later_date():
    end = START + timedelta(days=240)
    direct = SiteSimulation(subdomain="acme", seed=3, accounts=150, start_date=START, until=end)
    stepped = SiteSimulation(subdomain="acme", seed=3, accounts=150, start_date=START, until=end - timedelta(days=40))
    versions = [stepped.version]
    for days in (1, 1, 3, 0, 35):
        stepped.advance(days)
        versions.append(stepped.version)
    assert stepped.now == direct.now
    assert dump(stepped) == dump(direct)
    assert versions == sorted(set(versions))


def test_clock_and_timestamps(sim):
    assert sim.now.isoformat() == "2026-11-22T00:00:00+00:00"
    now = sim.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    start = START.isoformat()
    for resource in RESOURCES:
        for obj in sim.iter_objects(resource):
            assert start <= obj["created_at"] <= obj["updated_at"] < now, (resource, obj["id"])


def test_ids_are_recurly_like_and_unique(sim):
    seen = set()
    for resource in RESOURCES:
        for obj_id, obj in sim.objects[resource].items():
            assert obj["id"] == obj_id and ID.match(obj_id), (resource, obj_id)
            assert obj_id not in seen
            seen.add(obj_id)
            assert obj["object"] == resource[:-1]
    codes = [a["code"] for a in sim.iter_objects("accounts")]
    assert len(set(codes)) == len(codes) and all(re.match(r"^acct-\d{6}$", c) for c in codes)


def _openapi_components():
    spec_path = Path(os.environ.get("RECURLY_OPENAPI_SPEC")
                     or ROOT.parent / "shared" / "reference" / "recurly-v3-openapi.yaml")
    if not spec_path.exists():
        pytest.skip(f"the Recurly OpenAPI spec is not at {spec_path.name} (set RECURLY_OPENAPI_SPEC)")
    import yaml

    with spec_path.open() as f:
        return _without_js_patterns(yaml.safe_load(f)["components"])


def _without_js_patterns(node):
    """The spec writes some regexes JavaScript-style ("/^[a-z0-9_-]+$/i"), which no Python regex
    engine can match; they are dropped (every other constraint, enums included, is checked)."""
    if isinstance(node, dict):
        return {k: _without_js_patterns(v) for k, v in node.items()
                if not (k == "pattern" and isinstance(v, str) and v.startswith("/"))}
    if isinstance(node, list):
        return [_without_js_patterns(v) for v in node]
    return node


def test_objects_conform_to_the_openapi_schemas(sim):
    from openapi_schema_validator import OAS30Validator

    components = _openapi_components()
    for resource, schema_name in SCHEMAS.items():
        validator = OAS30Validator({"$ref": f"#/components/schemas/{schema_name}", "components": components})
        objects = list(sim.iter_objects(resource))
        sample = objects[:: max(1, len(objects) // 400)]
        for obj in sample:
            # The spec marks no property nullable while Recurly sends null for unset fields (as the
            # sandbox does): a null reads as absent, as in test_openapi_contract.py.
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_drop_nulls(obj))]
            assert not errors, (resource, obj["id"], errors[:5])


def test_invoices_own_their_line_items_and_add_up(sim):
    line_items, invoices = sim.objects["line_items"], sim.objects["invoices"]
    listed = set()
    for invoice in invoices.values():
        assert invoice["line_items"], invoice["id"]
        for line in invoice["line_items"]:
            assert line_items[line["id"]] is line
            assert line["invoice_id"] == invoice["id"] and line["invoice_number"] == invoice["number"]
            assert line["updated_at"] <= invoice["updated_at"]
            listed.add(line["id"])
        for field in ("subtotal", "discount", "tax"):
            assert invoice[field] == pytest.approx(sum(li[field] for li in invoice["line_items"]), abs=0.011)
        assert invoice["total"] == pytest.approx(sum(li["amount"] for li in invoice["line_items"]), abs=0.011)
        for li in invoice["line_items"]:  # tax-inclusive prices carry their tax inside the amount
            inside = li["tax"] if li["tax_inclusive"] else 0.0
            assert li["amount"] == pytest.approx(li["subtotal"] - li["discount"] + li["tax"] - inside, abs=0.011)
        assert invoice["type"] == ("credit" if invoice["total"] < 0 else "charge")
        if invoice["state"] == "paid":
            assert invoice["paid"] == invoice["total"] and invoice["balance"] == 0
    assert listed == set(line_items)


def test_references_resolve(sim):
    o = sim.objects
    plan_codes = {p["code"] for p in o["plans"].values()}
    for add_on in o["add_ons"].values():
        assert add_on["plan_id"] in o["plans"]
    for sub in o["subscriptions"].values():
        assert sub["plan"]["id"] in o["plans"] and sub["plan"]["code"] in plan_codes
        assert sub["account"]["id"] in o["accounts"]
        for item in sub["add_ons"]:
            assert o["add_ons"][item["add_on"]["id"]]["plan_id"] == sub["plan"]["id"]
    for txn in o["transactions"].values():
        assert txn["invoice"]["id"] in o["invoices"] and txn["account"]["id"] in o["accounts"]
        if txn["type"] == "refund":
            original = o["transactions"][txn["original_transaction_id"]]
            assert original["type"] == "purchase" and original["success"] and original["refunded"]
    for invoice in o["invoices"].values():
        assert all(s in o["subscriptions"] for s in invoice["subscription_ids"])


def test_subscription_states_are_consistent(sim):
    for sub in sim.iter_objects("subscriptions"):
        state = sub["state"]
        assert (state == "expired") == ("expiration_reason" in sub), sub["id"]
        if state == "expired":
            assert sub["expires_at"] <= sub["updated_at"]
            assert sub["expiration_reason"] in ("canceled", "nonpayment", "nonpayment_trial")
        if state == "canceled":
            assert sub["canceled_at"] < sub["expires_at"] == sub["current_period_ends_at"]
        if state == "paused":
            assert "paused_at" in sub and sub["remaining_pause_cycles"] >= 1
        assert sub["subtotal"] == pytest.approx(sub["unit_amount"] * sub["quantity"] + sub["add_ons_total"])


def test_renewals_cover_the_service_periods_without_gap_or_overlap(sim):
    periods = defaultdict(list)
    for invoice in sim.iter_objects("invoices"):
        if invoice["origin"] in ("purchase", "renewal"):
            for line in invoice["line_items"]:
                if line["origin"] in ("plan", "plan_trial") and line["type"] == "charge":
                    periods[line["subscription_id"]].append((line["start_date"], line["end_date"]))
    checked = 0
    for sub_id, spans in periods.items():
        if sim.subscription_state(sub_id).pauses:
            continue  # a pause leaves a gap on purpose
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end == start, (sub_id, spans)
        checked += 1
    assert checked > 100


def test_dunning_leaves_declined_transactions(sim):
    declined = Counter(t["invoice"]["id"] for t in sim.iter_objects("transactions") if t["status"] == "declined")
    states = Counter()
    for invoice in sim.iter_objects("invoices"):
        states[invoice["state"]] += 1
        if invoice["state"] in ("past_due", "failed") and invoice["collection_method"] == "automatic":
            # the failed renewal, then one declined retry per dunning notice
            assert declined[invoice["id"]] == 1 + invoice["dunning_events_sent"], invoice["id"]
        if invoice["state"] == "failed":  # manual invoices fail with one final notice, unpaid 30 days past due
            assert invoice["dunning_events_sent"] >= (2 if invoice["collection_method"] == "automatic" else 1)
            assert invoice["final_dunning_event"]
    assert states["failed"] and states["paid"] and states["closed"]


def test_account_flags_are_true_to_the_data(sim):
    subs_by_account = defaultdict(list)
    for sub in sim.iter_objects("subscriptions"):
        subs_by_account[sub["account"]["id"]].append(sub["state"])
    past_due = {i["account"]["id"] for i in sim.iter_objects("invoices") if i["state"] == "past_due"}
    for account in sim.iter_objects("accounts"):
        states = set(subs_by_account[account["id"]])
        assert account["has_active_subscription"] == ("active" in states)
        assert account["has_canceled_subscription"] == ("canceled" in states)
        assert account["has_paused_subscription"] == ("paused" in states)
        assert account["has_live_subscription"] == bool(states & {"active", "canceled", "paused", "future"})
        assert account["has_past_due_invoice"] == (account["id"] in past_due)


def test_the_business_shows_every_behaviour(sim):
    subs = list(sim.iter_objects("subscriptions"))
    invoices = list(sim.iter_objects("invoices"))
    lines = list(sim.iter_objects("line_items"))
    assert {s["state"] for s in subs} >= {"active", "canceled", "expired", "paused"}
    assert {s.get("expiration_reason") for s in subs} >= {"canceled", "nonpayment", "nonpayment_trial"}
    assert any("converted_at" in s for s in subs) and any("trial_started_at" in s for s in subs)
    assert {i["origin"] for i in invoices} >= {"purchase", "renewal", "immediate_change", "refund"}
    assert {li["origin"] for li in lines} >= {"plan", "plan_trial", "add_on", "one_time"}
    assert any(li.get("proration_rate") and li["type"] == "credit" for li in lines)
    assert any(li["refund"] for li in lines) and any(li.get("refunded_quantity") for li in lines)
    assert any(li["tax"] > 0 for li in lines) and any(li["tax"] == 0 and li["amount"] > 0 for li in lines)
    assert any(li["discount"] > 0 for li in lines)
    assert any(s["coupon_redemptions"] for s in subs)
    assert {s["currency"] for s in subs} == {"USD", "EUR", "GBP"}
    assert {p["interval_unit"] for p in sim.iter_objects("plans")} == {"days", "months"}
    assert {p["interval_length"] for p in sim.iter_objects("plans")} >= {1, 3, 12}
    per_account = Counter(s["account"]["id"] for s in subs)
    assert max(per_account.values()) >= 2
    accounts = list(sim.iter_objects("accounts"))
    assert any("billing_info" not in a for a in accounts)
    assert any(a["billing_info"]["updated_at"] > a["billing_info"]["created_at"] for a in accounts if "billing_info" in a)
    assert all(a["custom_fields"] for a in accounts) and any(s["custom_fields"] for s in subs)
    # every day has new business
    signup_days = {a["created_at"][:10] for a in accounts}
    assert len(signup_days) >= 360


def test_advancing_one_day_changes_a_realistic_share():
    sim = SiteSimulation(subdomain="acme", seed=42, accounts=1000, start_date=START, until=UNTIL)
    before = {r: len(sim.objects[r]) for r in RESOURCES}
    stamp = sim.now.strftime("%Y-%m-%dT%H:%M:%SZ")
    changed = sim.advance(1)
    assert sim.now.date() == UNTIL + timedelta(days=1)
    for resource in RESOURCES:  # the counts are exactly the objects stamped during that day
        in_window = sum(1 for o in sim.iter_objects(resource) if o["updated_at"] >= stamp)
        assert changed[resource] == in_window, resource
    assert changed["plans"] == changed["add_ons"] == 0
    assert 0.005 <= changed["subscriptions"] / before["subscriptions"] <= 0.15
    assert 0 < changed["invoices"] / before["invoices"] <= 0.05
    assert changed["accounts"] >= 1000 // 365


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'acme'.*before start_date"):
        SiteSimulation(subdomain="acme", seed=1, accounts=10, start_date=START, until=START - timedelta(days=1))
    sim = SiteSimulation(subdomain="acme", seed=1, accounts=10, start_date=START, until=START)
    assert sim.objects["accounts"] == {} and len(sim.objects["plans"]) == 9
    with pytest.raises(ValueError, match="'acme'"):
        sim.advance(-1)
    with pytest.raises(KeyError, match="unknown sandbox resource"):
        sim.iter_objects("coupons")


def test_the_business_shows_recurlys_real_shapes_and_cases(sim):
    o = sim.objects
    accounts, subs = list(o["accounts"].values()), list(o["subscriptions"].values())
    invoices, lines = list(o["invoices"].values()), list(o["line_items"].values())
    # explicit nulls and blank strings, as Recurly sends them
    assert all("deleted_at" in a and a["deleted_at"] is None for a in accounts)
    assert any(a["company"] == "" for a in accounts) and any(a["company"] for a in accounts)
    assert any(li["previous_line_item_id"] is None for li in lines)
    # decimal quantities, sub-cent unit amounts, tax-inclusive prices, usage add-ons
    decimal_qty = [li for li in lines if li.get("quantity_decimal")]
    assert any(float(li["quantity_decimal"]) % 1 for li in decimal_qty)
    assert all(li["quantity"] == int(float(li["quantity_decimal"]) + 0.5) for li in decimal_qty)
    sub_cent = [li for li in lines if li.get("unit_amount_decimal")]
    assert sub_cent and all(len(li["unit_amount_decimal"].split(".")[1]) > 2 for li in sub_cent)
    assert any(li["tax_inclusive"] and li["tax"] > 0 for li in lines) and any(not li["tax_inclusive"] for li in lines)
    usage_ids = {a["id"] for a in o["add_ons"].values() if a["add_on_type"] == "usage"}
    assert usage_ids and any(li.get("add_on_id") in usage_ids and li["amount"] > 0 for li in lines)
    # a ramp plan, pending changes, future subscriptions
    ramp = [p for p in o["plans"].values() if p["pricing_model"] == "ramp"]
    assert ramp and len(ramp[0]["ramp_intervals"]) == 2
    assert any(s["ramp_intervals"] for s in subs)
    pending = [s for s in subs if s.get("pending_change")]
    assert pending and all(p["pending_change"]["activate_at"] == p["current_period_ends_at"] for p in pending)
    assert any(s["state"] == "future" and "activated_at" not in s for s in subs)
    # invoices with more line items than the server embeds (it then sends has_more_line_items)
    from recurly_elt.sandbox.index import DEFAULT_EMBEDDED_LINE_ITEMS
    assert any(len(i["line_items"]) > DEFAULT_EMBEDDED_LINE_ITEMS for i in invoices)
    # voided invoices, invalid billing info, closed accounts, manual collection with net terms
    assert any(i["state"] == "voided" for i in invoices)
    assert any(a.get("billing_info") and not a["billing_info"]["valid"] for a in accounts)
    assert any(a["state"] == "inactive" for a in accounts)
    manual = [i for i in invoices if i["collection_method"] == "manual"]
    assert manual and all(i["net_terms"] == 30 and i["due_at"] > i["created_at"] for i in manual)
    assert "paid" in {i["state"] for i in manual}
    # dunning at a realistic rate: several percent of renewals fail their first attempt, most recover
    renewals = [i for i in invoices if i["origin"] == "renewal" and i["collection_method"] == "automatic"]
    declined = {t["invoice"]["id"] for t in o["transactions"].values() if t["status"] == "declined"}
    failed_first = [i for i in renewals if i["id"] in declined]
    assert 0.03 <= len(failed_first) / len(renewals) <= 0.15
    recovered = sum(1 for i in failed_first if i["state"] == "paid")
    assert recovered > len(failed_first) / 2 and any(i["state"] == "failed" for i in failed_first)


def test_fixed_amount_and_account_coupons_discount_the_invoices_as_recurly_does(sim):
    o = sim.objects
    redemptions = list(o["coupon_redemptions"].values())
    on_accounts = [r for r in redemptions if "subscription_id" not in r]
    fixed_subs = [r for r in redemptions if "subscription_id" in r and r["coupon"]["discount"]["type"] == "fixed"]
    assert fixed_subs and on_accounts
    assert {r["coupon"]["duration"] for r in on_accounts} == {"forever", "temporal", "single_use"}
    assert {r["coupon"]["discount"]["type"] for r in on_accounts} == {"percent", "fixed"}
    accounts = {r["account"]["id"] for r in on_accounts}
    assert 0.01 <= len(accounts) / len(o["accounts"]) <= 0.08  # a few percent of accounts
    # a single-use coupon discounted one invoice and is used up; a temporal one ends after its months
    applied = defaultdict(list)
    for invoice_id, ids in sim.invoice_redemptions.items():
        for r in ids:
            applied[r].append(o["invoices"][invoice_id])
    for r in on_accounts:
        if r["coupon"]["duration"] == "single_use" and applied[r["id"]]:
            assert len(applied[r["id"]]) == 1 and r["state"] == "inactive"
        if r["coupon"]["duration"] == "temporal":
            ends = (date.fromisoformat(r["created_at"][:10]) + timedelta(days=31 * r["coupon"]["temporal_amount"]))
            assert all(date.fromisoformat(i["created_at"][:10]) <= ends for i in applied[r["id"]])
            if ends < UNTIL - timedelta(days=3):
                assert r["state"] == "inactive"
    # a fixed amount: off the subscription's recurring items, prorated with them, never below zero
    for r in fixed_subs:
        amount = next(c["amount"] for c in r["coupon"]["discount"]["currencies"] if c["currency"] == r["currency"])
        for invoice in applied[r["id"]]:
            items = [li for li in invoice["line_items"] if li["origin"] in ("plan", "add_on") and li["type"] == "charge"]
            rate = items[0].get("proration_rate") or 1.0
            assert sum(li["discount"] for li in items) == pytest.approx(min(amount * rate, sum(li["subtotal"] for li in items)),
                                                                        abs=0.011 * len(items))
            assert all(0 <= li["discount"] <= li["subtotal"] for li in items)
    # an account coupon discounts subscriptions without a coupon of their own, listed on the invoice
    for r in on_accounts:
        for invoice in applied[r["id"]]:
            assert invoice["account"]["id"] == r["account"]["id"] and any(li["discount"] for li in invoice["line_items"])
            assert not o["subscriptions"][invoice["subscription_ids"][0]]["coupon_redemptions"]
