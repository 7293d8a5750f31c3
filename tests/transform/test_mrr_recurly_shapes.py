"""MRR from Recurly's real line-item shapes, one case per test, to the cent (SQLite; the sandbox-wide
tests run on both dialects): decimal quantities and unit amounts, tax-inclusive prices, ramps,
pending changes, and prorated discounted plan changes whose charge and credit cancel exactly."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from recurly_elt.transform import pipeline
from recurly_elt.warehouse.engine import create_engine_from_url

from .agreement import assert_agrees_to_the_cent
from .builders import Book
from .staging_data import load_objects

PERCENT_15 = [{"id": "cr1", "object": "coupon_redemption", "state": "active",
               "coupon": {"code": "partner15", "discount": {"type": "percent", "percent": 15}}}]


@pytest.fixture
def book():
    return Book()


@pytest.fixture
def run(sqlite_url):
    def _run(book: Book, start: str = "2025-01-01", end: str = "2025-07-01"):
        engine = create_engine_from_url(sqlite_url)
        load_objects(engine, "s1", book.objects)
        pipeline.run(engine, start, end, health_days=1)
        last = (pd.Timestamp(end) - pd.Timedelta(days=1)).date()
        assert_agrees_to_the_cent(engine, "s1", pd.Timestamp(start).date(), last)  # every case, both ways
        return engine
    return _run


def sub_mrr(engine, sub: dict, day: str) -> float | None:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT mrr FROM v_mrr_subscription_daily WHERE subscription_id = :s AND day = :d"),
                         {"s": sub["id"], "d": day}).scalar()


def daily(engine, sub: dict) -> pd.Series:
    with engine.connect() as c:
        frame = pd.read_sql_query(sa.text("SELECT day, mrr FROM v_mrr_subscription_daily WHERE subscription_id = :s"),
                                  c, params={"s": sub["id"]})
    return frame.set_index(pd.to_datetime(frame["day"]).dt.strftime("%Y-%m-%d"))["mrr"]


def test_a_decimal_quantity_counts_one_and_a_half_seats(book, run):
    plan = book.plan("seats")
    s = book.subscription(book.account(), plan, "2025-01-10")
    # quantity is the rounded integer (2), quantity_decimal the real one
    book.charge(s, plan, "2025-01-10", "2025-02-10", 10.0, quantity=2, quantity_decimal="1.5", subtotal=15.0,
                amount=15.0)
    assert sub_mrr(run(book), s, "2025-01-20") == 15.0


def test_a_sub_cent_unit_amount_is_exact_and_the_day_rounds_half_up(book, run):
    plan = book.plan("api")
    s = book.subscription(book.account(), plan, "2025-01-10")
    book.charge(s, plan, "2025-01-10", "2025-02-10", 10.0)
    # 3 x 0.0125 = 0.0375: with the plan's 10.00, the day is 10.0375 -> 10.04 (a float sum would say 10.04
    # or 10.03 depending on the order; the rule says half up once, on the exact sum)
    book.charge(s, plan, "2025-01-10", "2025-02-10", 0.01, quantity=3, origin="add_on", unit_amount_decimal="0.0125",
                subtotal=0.04, amount=0.04)
    book.charge(s, plan, "2025-02-10", "2025-03-10", 10.0)
    book.charge(s, plan, "2025-02-10", "2025-03-10", 0.01, quantity=2, origin="add_on", unit_amount_decimal="0.0125",
                subtotal=0.03, amount=0.03)  # 10.025 -> 10.03
    engine = run(book)
    assert (sub_mrr(engine, s, "2025-01-20"), sub_mrr(engine, s, "2025-02-20")) == (10.04, 10.03)


def test_half_cents_round_up_in_every_case(book, run):
    plan = book.plan("annual", length=12)
    subs = []
    for yearly in (1241.10, 217.50, 240.30):  # /12: 103.425, 18.125, 20.025
        s = book.subscription(book.account(), plan, "2025-01-10")
        book.charge(s, plan, "2025-01-10", "2026-01-10", yearly)
        subs.append(s)
    engine = run(book)
    assert [sub_mrr(engine, s, "2025-03-01") for s in subs] == [103.43, 18.13, 20.03]


def test_a_tax_inclusive_price_counts_without_its_tax(book, run):
    plan = book.plan("vat")
    by_rate, by_share = (book.subscription(book.account(), plan, "2025-01-10", currency="EUR") for _ in range(2))
    book.charge(by_rate, plan, "2025-01-10", "2025-02-10", 120.0, tax=20.0, amount=120.0, tax_inclusive=True,
                tax_info={"type": "vat", "region": "DE", "rate": 0.2})
    book.charge(by_share, plan, "2025-01-10", "2025-02-10", 119.0, tax=19.0, amount=119.0, tax_inclusive=True)
    engine = run(book)
    assert (sub_mrr(engine, by_rate, "2025-01-20"), sub_mrr(engine, by_share, "2025-01-20")) == (100.0, 100.0)


def test_a_usage_add_on_never_counts(book, run):
    plan = book.plan("metered")
    by_type = book.usage_add_on(plan, "api_calls")
    by_usage_type = book.usage_add_on(plan, "storage")
    by_usage_type.pop("add_on_type")
    s = book.subscription(book.account(), plan, "2025-01-10")
    book.charge(s, plan, "2025-01-10", "2025-02-10", 30.0)
    for add_on in (by_type, by_usage_type):
        book.charge(s, plan, "2025-01-10", "2025-02-10", 0.002, quantity=10_000, origin="add_on", add_on=add_on)
    assert sub_mrr(run(book), s, "2025-01-20") == 30.0


def test_a_ramp_plan_counts_the_price_of_the_ramp_billing_the_day(book, run):
    plan = book.plan("ramp", length=3)
    plan["pricing_model"] = "ramp"
    plan["ramp_intervals"] = [{"starting_billing_cycle": 1, "currencies": [{"currency": "USD", "unit_amount": 30.0}]},
                              {"starting_billing_cycle": 2, "currencies": [{"currency": "USD", "unit_amount": 90.0}]}]
    s = book.subscription(book.account(), plan, "2025-01-10", ramp_intervals=[
        {"starting_billing_cycle": 1, "remaining_billing_cycles": 0, "unit_amount": 30.0},
        {"starting_billing_cycle": 2, "unit_amount": 90.0}])
    book.charge(s, plan, "2025-01-10", "2025-04-10", 30.0)
    book.charge(s, plan, "2025-04-10", "2025-07-10", 90.0)
    engine = run(book)
    assert (sub_mrr(engine, s, "2025-02-01"), sub_mrr(engine, s, "2025-05-01")) == (10.0, 30.0)


def test_a_pending_change_applies_at_the_renewal_that_bills_it(book, run):
    basic, pro = book.plan("basic"), book.plan("pro")
    s = book.subscription(book.account(), basic, "2025-01-10", pending_change={
        "id": "pc1", "object": "subscription_change", "activate_at": "2025-02-10T10:00:00Z", "activated": False,
        "plan": {"id": pro["id"], "code": pro["code"]}, "unit_amount": 80.0, "quantity": 1})
    book.charge(s, basic, "2025-01-10", "2025-02-10", 50.0)
    book.charge(s, pro, "2025-02-10", "2025-03-10", 80.0)
    engine = run(book)
    assert (sub_mrr(engine, s, "2025-02-09"), sub_mrr(engine, s, "2025-02-10")) == (50.0, 80.0)


@pytest.mark.parametrize("old_price, new_price", [(33.33, 99.99), (99.99, 33.33)], ids=["upgrade", "downgrade"])
def test_a_prorated_discounted_change_cancels_exactly(book, run, old_price, new_price):
    old, new = book.plan("old"), book.plan("new")
    s = book.subscription(book.account(), new, "2025-01-01", coupon_redemptions=PERCENT_15)
    rate = 0.366667  # 11 of 30 days left
    book.charge(s, old, "2025-01-01", "2025-01-31", old_price, discount=round(old_price * 0.15, 2))
    credit_sub = round(old_price * rate, 2)
    book.charge(s, old, "2025-01-20", "2025-01-31", old_price, proration=rate, credit=True,
                discount=round(credit_sub * 0.15, 2))
    charge_sub = round(new_price * rate, 2)
    book.charge(s, new, "2025-01-20", "2025-01-31", new_price, proration=rate, discount=round(charge_sub * 0.15, 2))
    book.charge(s, new, "2025-01-31", "2025-03-02", new_price, discount=round(new_price * 0.15, 2))
    engine = run(book, end="2025-03-01")
    days = daily(engine, s)
    before, after = round(old_price * 0.85 + 1e-9, 2), round(new_price * 0.85 + 1e-9, 2)
    assert set(days[:"2025-01-19"]) == {before}  # 28.3305 -> 28.33, 84.9915 -> 84.99
    assert set(days["2025-01-20":]) == {after}  # the credit cancels the old charge exactly


def test_a_prorated_unit_amount_reading_cancels_exactly_too(book, run):
    """The spec's reading: subtotal = quantity x unit_amount, the unit amount itself prorated."""
    old, new = book.plan("old"), book.plan("new")
    s = book.subscription(book.account(), new, "2025-01-01", coupon_redemptions=PERCENT_15)
    book.charge(s, old, "2025-01-01", "2025-01-31", 33.33, discount=5.0)
    book.charge(s, old, "2025-01-16", "2025-01-31", 16.67, credit=True, discount=2.5, proration_rate=0.5)
    book.charge(s, new, "2025-01-16", "2025-01-31", 50.0, discount=7.5, proration_rate=0.5)
    engine = run(book, end="2025-02-01")
    days = daily(engine, s)
    assert set(days[:"2025-01-15"]) == {28.33} and set(days["2025-01-16":]) == {85.0}


def test_without_coupon_terms_a_prorated_charge_takes_the_net_of_its_full_price_line(book, run):
    """A fixed-amount (or unstaged) coupon: the prorated charge's discount share of two rounded
    amounts (1.83 / 12.22 = 14.98 %) would be off; its renewal says what the new price nets."""
    old, new = book.plan("old"), book.plan("new")
    s = book.subscription(book.account(), new, "2025-01-01")  # no coupon_redemptions staged
    rate = 0.366667
    book.charge(s, old, "2025-01-01", "2025-01-31", 33.33, discount=5.0)
    book.charge(s, old, "2025-01-20", "2025-01-31", 33.33, proration=rate, credit=True, discount=1.83)
    book.charge(s, new, "2025-01-20", "2025-01-31", 99.99, proration=rate, discount=5.5)
    book.charge(s, new, "2025-01-31", "2025-03-02", 99.99, discount=15.0)
    days = daily(run(book, end="2025-03-01"), s)
    assert set(days[:"2025-01-19"]) == {28.33} and set(days["2025-01-20":]) == {84.99}


FIXED_15 = [{"id": "cr2", "object": "coupon_redemption", "state": "active", "currency": "USD",
             "coupon": {"code": "save15", "discount": {"type": "fixed",
                                                       "currencies": [{"currency": "USD", "amount": 15.0}]}}}]


def test_a_fixed_amount_coupon_on_prorated_charges_without_renewal_is_exact_and_cancels(book, run):
    """A $15 fixed-amount coupon, an upgrade on the 20th and a downgrade back on the 30th, and no
    renewal (canceled at the end of the period). Each prorated charge nets its plan's price less
    the coupon's $15, from the coupon's terms: their shares of two rounded amounts would give
    18.32 for the old plan (33.33 x 0.61 / 1.11), not 18.33. The downgrade's credit takes the
    upgrade's charge back exactly."""
    old, new = book.plan("old"), book.plan("new")
    s = book.subscription(book.account(), old, "2025-01-01", coupon_redemptions=FIXED_15, state="canceled",
                          canceled_at="2025-01-30T12:00:00Z", expires_at="2025-01-31T00:00:00Z")
    change, last_day = 0.366667, 0.033333  # 11 and 1 of 30 days left
    book.charge(s, old, "2025-01-01", "2025-01-31", 33.33, discount=15.0)
    book.charge(s, old, "2025-01-20", "2025-01-31", 33.33, proration=change, credit=True, discount=5.5)
    book.charge(s, new, "2025-01-20", "2025-01-31", 99.99, proration=change, discount=5.5)
    book.charge(s, new, "2025-01-30", "2025-01-31", 99.99, proration=last_day, credit=True, discount=0.5)
    book.charge(s, old, "2025-01-30", "2025-01-31", 33.33, proration=last_day, discount=0.5)
    days = daily(run(book, end="2025-02-01"), s)
    assert set(days[:"2025-01-19"]) == {18.33}
    assert set(days["2025-01-20":"2025-01-29"]) == {84.99}
    assert days["2025-01-30"] == 18.33 and "2025-01-31" not in days.index  # expired: nothing after


def test_an_account_level_coupon_is_in_mrr_through_the_line_items_discounts(book, run):
    """A 10 % coupon redeemed on the account (GET /accounts/{id}/coupon_redemptions; the
    subscription's own coupon_redemptions stay empty) for two billing periods. Recurly applies it
    as each charge's `discount`: full-period charges net of it, the prorated upgrade takes the net
    of its renewal (72.00, where its own share of two rounded amounts, 2.32 / 2.58, gives 71.94),
    the credit cancels the old charge exactly, and MRR goes back to the list price when the coupon
    stops discounting."""
    old, new = book.plan("old"), book.plan("new")
    s = book.subscription(book.account(), new, "2025-01-01")  # no subscription-level redemption
    rate = 0.032258  # 1 of 31 days left
    book.charge(s, old, "2025-01-01", "2025-02-01", 50.0, discount=5.0)
    book.charge(s, old, "2025-01-31", "2025-02-01", 50.0, proration=rate, credit=True, discount=0.16)
    book.charge(s, new, "2025-01-31", "2025-02-01", 80.0, proration=rate, discount=0.26)
    book.charge(s, new, "2025-02-01", "2025-03-01", 80.0, discount=8.0)
    book.charge(s, new, "2025-03-01", "2025-04-01", 80.0)  # the coupon's two periods are over
    days = daily(run(book, end="2025-04-01"), s)
    assert set(days[:"2025-01-30"]) == {45.0}
    assert set(days["2025-01-31":"2025-02-28"]) == {72.0}
    assert set(days["2025-03-01":]) == {80.0}


def test_a_fixed_amount_subscription_coupon_on_a_prorated_upgrade_and_downgrade_cancels_exactly(book, run):
    """The sandbox's shapes: $15 off a plan and its add-on, spread over them in proportion to their
    prices (7.50 + 7.50 of 50 + 2 x 25), each line's discount the share x the proration rate rounded
    to the cent; an upgrade (credit and charge on one invoice) on the 11th, a downgrade back on the
    21st, then a renewal. 100 - 15 = 85.00, 80 + 50 - 15 = 115.00, and the downgrade's credit takes
    the upgrade's charge back exactly: 85.00 again, to the cent."""
    old, new = book.plan("pro"), book.plan("pro-plus")
    seats = {"id": "a-seats", "code": "seats"}
    account = book.account()
    s = book.subscription(account, old, "2025-01-01", coupon_redemptions=FIXED_15)

    def config(plan, price, start, end, rate=None, credit=False, invoice=None):
        shares = (15.0 * price / (price + 50.0), 15.0 * 50.0 / (price + 50.0))
        kind = {"proration": rate, "credit": credit}
        inv = invoice or book.invoice(account, start, origin="immediate_change" if rate else "renewal", subscription=s)
        book.charge(s, plan, start, end, price, discount=round(shares[0] * (rate or 1.0), 2), invoice=inv, **kind)
        book.charge(s, plan, start, end, 25.0, quantity=2, add_on=seats, origin="add_on",
                    discount=round(shares[1] * (rate or 1.0), 2), invoice=inv, **kind)
        return inv

    config(old, 50.0, "2025-01-01", "2025-02-01")
    up = config(old, 50.0, "2025-01-11", "2025-02-01", rate=0.645161, credit=True)
    config(new, 80.0, "2025-01-11", "2025-02-01", rate=0.645161, invoice=up)
    down = config(new, 80.0, "2025-01-21", "2025-02-01", rate=0.322581, credit=True)
    config(old, 50.0, "2025-01-21", "2025-02-01", rate=0.322581, invoice=down)
    config(old, 50.0, "2025-02-01", "2025-03-01")
    days = daily(run(book, end="2025-03-01"), s)
    assert set(days[:"2025-01-10"]) == {85.0}
    assert set(days["2025-01-11":"2025-01-20"]) == {115.0}
    assert set(days["2025-01-21":]) == {85.0}


def _account_coupon(percent: int, state: str = "active", **coupon) -> list[dict]:
    """An account coupon's redemption as /invoices/{id}/coupon_redemptions lists it (no subscription_id)."""
    return [{"id": "cr-acct", "object": "coupon_redemption", "state": state, "currency": "USD",
             "account": {"id": "any"}, "coupon": {"code": f"acct{percent}", "redemption_resource": "account",
                                                  "discount": {"type": "percent", "percent": percent}, **coupon}}]


def test_an_account_percent_coupon_on_a_prorated_charge_takes_its_terms_from_the_invoice(book, run):
    """A 10 % account coupon (the subscription has no redemption of its own), an upgrade on the last
    day of the period, and no renewal (canceled). Its invoice's staged redemptions give the terms:
    80 x 0.9 = 72.00, where the share of the two rounded amounts (0.26 off 2.58) gave 71.94."""
    old, new = book.plan("old"), book.plan("new")
    account = book.account()
    s = book.subscription(account, new, "2025-01-01", state="canceled", canceled_at="2025-01-31T12:00:00Z",
                          expires_at="2025-02-01T00:00:00Z")
    rate = 0.032258  # 1 of 31 days left
    book.charge(s, old, "2025-01-01", "2025-02-01", 50.0, discount=5.0)
    change = book.invoice(account, "2025-01-31", origin="immediate_change", subscription=s,
                          coupon_redemptions=_account_coupon(10))
    book.charge(s, old, "2025-01-31", "2025-02-01", 50.0, proration=rate, credit=True, discount=0.16, invoice=change)
    book.charge(s, new, "2025-01-31", "2025-02-01", 80.0, proration=rate, discount=0.26, invoice=change)
    days = daily(run(book, end="2025-02-15"), s)
    assert set(days[:"2025-01-30"]) == {45.0}
    assert days["2025-01-31"] == 72.0 and "2025-02-01" not in days.index


def test_a_temporal_account_coupon_ending_ends_its_discount(book, run):
    """15 % off for 3 months, redeemed on the account: January to March renewals are discounted,
    April's is not. An upgrade on March 20th (12 of 31 days left) to a 79.00 plan takes the
    coupon's terms from its invoice even though the redemption is `inactive` by the time it is
    staged (it was applied to that invoice): 79 x 0.85 = 67.15, where the share of the rounded
    amounts (4.59 off 30.58) gives 67.14 and the next renewal (undiscounted) 79.00."""
    old, new = book.plan("old"), book.plan("new")
    account = book.account()
    s = book.subscription(account, old, "2025-01-01")
    for start, end in (("2025-01-01", "2025-02-01"), ("2025-02-01", "2025-03-01"), ("2025-03-01", "2025-04-01")):
        book.charge(s, old, start, end, 50.0, discount=7.5)
    change = book.invoice(account, "2025-03-20", origin="immediate_change", subscription=s,
                          coupon_redemptions=_account_coupon(15, "inactive", duration="temporal",
                                                             temporal_amount=3, temporal_unit="month"))
    rate = 0.387097
    book.charge(s, old, "2025-03-20", "2025-04-01", 50.0, proration=rate, credit=True, discount=2.9, invoice=change)
    book.charge(s, new, "2025-03-20", "2025-04-01", 79.0, proration=rate, discount=4.59, invoice=change)
    book.charge(s, new, "2025-04-01", "2025-05-01", 79.0)  # the coupon's 3 months are over
    days = daily(run(book, end="2025-05-01"), s)
    assert set(days[:"2025-03-19"]) == {42.5}
    assert set(days["2025-03-20":"2025-03-31"]) == {67.15}
    assert set(days["2025-04-01":]) == {79.0}


def _upgrade(book, run, own: list[dict], listed) -> float:
    """A subscription staged with `own` redemptions, upgraded on the last day of its period (no
    renewal: canceled) on an invoice that lists `listed(subscription)`; its MRR that day."""
    old, new = book.plan("old"), book.plan("new")
    account = book.account()
    s = book.subscription(account, new, "2025-01-01", state="canceled", canceled_at="2025-01-31T12:00:00Z",
                          expires_at="2025-02-01T00:00:00Z", coupon_redemptions=own)
    rate = 0.032258  # 1 of 31 days left
    book.charge(s, old, "2025-01-01", "2025-02-01", 50.0, discount=5.0)
    change = book.invoice(account, "2025-01-31", origin="immediate_change", subscription=s,
                          coupon_redemptions=listed(s))
    book.charge(s, old, "2025-01-31", "2025-02-01", 50.0, proration=rate, credit=True, discount=0.16, invoice=change)
    book.charge(s, new, "2025-01-31", "2025-02-01", 80.0, proration=rate, discount=0.26, invoice=change)
    engine = run(book, end="2025-02-15")
    book.engine = engine  # for the tests that read the quarantine too
    return daily(engine, s)["2025-01-31"]


@pytest.mark.parametrize("own", [
    [{**PERCENT_15[0], "state": "inactive"}],
    [{"id": "cr-trial", "object": "coupon_redemption", "state": "active",
      "coupon": {"code": "trial", "discount": {"type": "free_trial", "trial": {"length": 7, "unit": "day"}}}}],
    [{**FIXED_15[0], "coupon": {"code": "eur5", "discount": {"type": "fixed", "currencies": [
        {"currency": "EUR", "amount": 5.0}]}}}],
], ids=["inactive", "free_trial", "fixed-in-another-currency"])
def test_a_subscription_whose_own_redemptions_give_no_terms_takes_the_invoices(book, run, own):
    """Staged redemptions without usable terms (staging/coupon_terms.py) are no coupon: the
    invoice's account coupon (10 %) gives 80 x 0.9 = 72.00, not the share's 71.94."""
    assert _upgrade(book, run, own, lambda s: _account_coupon(10)) == 72.0


def test_a_subscription_coupon_an_invoice_lists_gives_the_terms_that_applied_then(book, run):
    """The subscription's 10 % coupon is inactive now; the upgrade's invoice lists it (with the
    subscription_id) as applied: 72.00, its terms back then, not the share's 71.94."""
    coupon = {**_account_coupon(10, "inactive")[0], "id": "cr-sub"}
    assert _upgrade(book, run, [coupon], lambda s: [{**coupon, "subscription_id": s["id"]}]) == 72.0


def _coupon_quarantine(engine) -> list[tuple[str, str]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(
            "SELECT object_id, reason FROM transform_quarantine WHERE stage = 'coupon_terms'"))]


def _redemption(**coupon) -> dict:
    return {"id": "cr-bad", "object": "coupon_redemption", "state": "active", "coupon": coupon}


HOSTILE_OWN = {
    "coupon-a-string": ([{"id": "cr-bad", "state": "active", "coupon": "launch10"}],
                        "coupon_redemptions[0].coupon: expected an object, got a string"),
    "currencies-a-string": ([_redemption(discount={"type": "fixed", "currencies": "USD"})],
                            "coupon_redemptions[0].coupon.discount.currencies: expected an array, got a string"),
    "currency-a-number": ([_redemption(discount={"type": "fixed", "currencies": [5]})],
                          "coupon_redemptions[0].coupon.discount.currencies[0]: expected an object, got a number"),
    "amount-1e20": ([_redemption(discount={"type": "fixed", "currencies": [{"currency": "USD", "amount": 1e20}]})],
                    "coupon_redemptions[0].coupon.discount.currencies[0].amount: 1E+20 is not an amount"),
    "amount-7-decimals": ([_redemption(discount={"type": "fixed", "currencies": [{"currency": "USD",
                                                                                  "amount": 0.1234567}]})],
                          "0.1234567 has more than 6 decimals"),
    "percent-150": ([_redemption(discount={"type": "percent", "percent": 150})], "150 is not a whole percent"),
    "percent-a-string": ([_redemption(discount={"type": "percent", "percent": "10"})],
                         "percent: expected an exact number, got a string"),
    "unknown-type": ([_redemption(discount={"type": "bogo"})], "'bogo' is none of percent, fixed, free_trial"),
    "list-an-object": ({"coupon": {"discount": {"type": "percent", "percent": 10}}},
                       "coupon_redemptions: expected an array, got an object"),
    "redemption-a-string": (["cr1"], "coupon_redemptions[0]: expected an object, got a string"),
    # a well-shaped 20 % coupon after a misfit is not used either: the list is not trusted
    "misfit-then-good": ([{"id": "cr-bad", "state": "active", "coupon": "launch10"},
                          {**PERCENT_15[0], "coupon": {"code": "p20", "discount": {"type": "percent", "percent": 20}}}],
                         "coupon_redemptions[0].coupon: expected an object, got a string"),
}


@pytest.mark.parametrize("case", list(HOSTILE_OWN))
def test_a_subscription_whose_redemptions_do_not_fit_has_no_terms_and_is_quarantined_by_name(book, run, case):
    """Redemptions shaped unlike the API (staged as any JSON) give the subscription no coupon
    terms: the transform runs, the upgrade takes its invoice's account coupon (10 %: 72.00) as for
    a subscription without terms, and transform_quarantine names the subscription and the misfit."""
    own, reason = HOSTILE_OWN[case]
    assert _upgrade(book, run, own, lambda s: _account_coupon(10)) == 72.0
    (sub,) = [s for s in book.objects["subscriptions"]]
    rows = _coupon_quarantine(book.engine)
    assert [r[0] for r in rows] == [sub["id"]], rows
    assert rows[0][1].startswith(f"subscription {sub['id']}: ") and reason in rows[0][1], rows
    assert rows[0][1].endswith("no coupon terms taken from its redemptions")


def test_an_invoice_whose_redemptions_do_not_fit_gives_no_terms_and_is_quarantined_by_name(book, run):
    """An invoice listing a redemption with `subscription_id: ["s1"]` (not text): none of its list
    is used (the upgrade takes its own share, 71.94, as without terms) and the invoice is named."""
    listed = lambda s: [{**_account_coupon(10)[0], "subscription_id": [s["id"]]}]  # noqa: E731
    assert _upgrade(book, run, [], listed) == 71.94
    change = next(i for i in book.objects["invoices"] if i.get("coupon_redemptions"))
    assert _coupon_quarantine(book.engine) == [
        (change["id"], f"invoice {change['id']}: coupon_redemptions[0].subscription_id: expected a string, got an "
                       "array; no coupon terms taken from its redemptions")]


def _account_fixed(amount: float) -> list[dict]:
    return [{"id": "cr-acct", "object": "coupon_redemption", "state": "active", "currency": "USD",
             "account": {"id": "any"}, "coupon": {"code": "ngo", "redemption_resource": "account", "duration": "forever",
                                                  "discount": {"type": "fixed", "currencies": [{"currency": "USD",
                                                                                                "amount": amount}]}}}]


def test_an_account_fixed_coupon_on_a_consolidated_invoice_is_spread_once_over_its_subscriptions(book, run):
    """$10 off, redeemed on the account; two subscriptions (50 -> 80 and 20 -> 40) upgraded on the
    last day of the period on one invoice (consolidated), then canceled. The coupon's amount is the
    invoice's discount once, spread over its charges of both subscriptions by their full-period
    prices: 80 - 6.67 = 73.33 and 40 - 3.33 = 36.67 (together 120 - 10), not 10 off each (70.00
    and 30.00). Before it, each full-period charge is net of its own discount."""
    old_a, new_a, old_b, new_b = book.plan("a"), book.plan("a-plus"), book.plan("b"), book.plan("b-plus")
    account = book.account()
    ended = {"state": "canceled", "canceled_at": "2025-01-31T12:00:00Z", "expires_at": "2025-02-01T00:00:00Z"}
    a = book.subscription(account, new_a, "2025-01-01", **ended)
    b = book.subscription(account, new_b, "2025-01-01", **ended)
    renewal = book.invoice(account, "2025-01-01", subscription_ids=[a["id"], b["id"]])
    book.charge(a, old_a, "2025-01-01", "2025-02-01", 50.0, discount=7.14, invoice=renewal)
    book.charge(b, old_b, "2025-01-01", "2025-02-01", 20.0, discount=2.86, invoice=renewal)
    rate = 0.032258  # 1 of 31 days left
    change = book.invoice(account, "2025-01-31", origin="immediate_change", subscription_ids=[a["id"], b["id"]],
                          coupon_redemptions=_account_fixed(10.0))
    book.charge(a, old_a, "2025-01-31", "2025-02-01", 50.0, proration=rate, credit=True, discount=0.23, invoice=change)
    book.charge(a, new_a, "2025-01-31", "2025-02-01", 80.0, proration=rate, discount=0.22, invoice=change)
    book.charge(b, old_b, "2025-01-31", "2025-02-01", 20.0, proration=rate, credit=True, discount=0.09, invoice=change)
    book.charge(b, new_b, "2025-01-31", "2025-02-01", 40.0, proration=rate, discount=0.11, invoice=change)
    engine = run(book, end="2025-02-15")
    assert (daily(engine, a)["2025-01-30"], daily(engine, b)["2025-01-30"]) == (42.86, 17.14)
    assert (daily(engine, a)["2025-01-31"], daily(engine, b)["2025-01-31"]) == (73.33, 36.67)


def test_a_fixed_coupons_shares_add_up_to_its_amount_exactly():
    """$10 over three items of one invoice with equal prices: the cumulative half-up rule in line
    item id order gives 3.33333333, 3.33333334, 3.33333333 (hundredths of a micro-unit), exactly
    10.00 together, where rounding each share alone gives 3.33333333 three times (a unit lost)."""
    import numpy as np

    from recurly_elt.transform.mrr import PERCENT, _fixed_coupon_net

    start, end = pd.Timestamp("2025-01-31"), pd.Timestamp("2025-02-01")
    li = pd.DataFrame({"id": ["li-1", "li-2", "li-3"], "invoice_id": "inv-1", "subscription_id": ["s1", "s2", "s3"],
                       "type": "charge", "start_date": start, "end_date": end})
    gross = np.full(3, 50_000_000, dtype=np.int64)
    rows = np.ones(3, dtype=bool)
    net = _fixed_coupon_net(li, rows, gross, np.full(3, 10_000_000, dtype=np.int64), np.ones(3, dtype=bool))
    shares = gross * PERCENT - net
    assert shares.tolist() == [333_333_333, 333_333_334, 333_333_333] and shares.sum() == 10_000_000 * PERCENT
    # a subscription's own coupon: per subscription, all of it on its one item
    own = _fixed_coupon_net(li, rows, gross, np.full(3, 10_000_000, dtype=np.int64), np.zeros(3, dtype=bool))
    assert (gross * PERCENT - own).tolist() == [10_000_000 * PERCENT] * 3
