"""Subscription objects: their side state, price, billing periods and the charges of a period.

A subscription's periods are computed from its anchor (activation, trial end or resume time):
period n covers [edge(n), edge(n + 1)), so consecutive renewals never leave a gap or overlap.
"""

from __future__ import annotations

from recurly_elt.sandbox.billing import Charge
from recurly_elt.sandbox.catalog import ADD_ONS, Catalog, PlanSpec
from recurly_elt.sandbox.coupons import CouponSpec
from recurly_elt.sandbox.customers import Customer
from recurly_elt.sandbox.timestamps import DAY, add_months, iso
from recurly_elt.sandbox.store import compact

class Subscription:
    """Side state of one subscription; `obj` is the API object the server serves."""

    __slots__ = ("obj", "customer", "plan", "quantity", "add_ons", "coupon", "anchor", "period_no",
                 "period_start", "period_end", "in_trial", "pause_cycles", "pauses", "epoch", "cycles", "usage",
                 "last_period", "pending")

    def __init__(self, obj: dict, customer: Customer, plan: PlanSpec, quantity: int,
                 add_ons: dict[str, int], coupon: CouponSpec | None):
        self.obj = obj
        self.customer = customer
        self.plan = plan
        self.quantity = quantity
        self.add_ons = add_ons            # add-on code -> quantity
        self.coupon = coupon              # its own (subscription) coupon, None = none
        self.anchor = 0
        self.period_no = 0
        self.period_start = 0
        self.period_end = 0
        self.in_trial = False
        self.pause_cycles = 0             # > 0: paused (or pausing at period end) for this many cycles
        self.pauses = 0                   # how many times it was paused (renewals then have a gap)
        self.cycles = 0                   # paid billing cycles so far (a ramp plan's price depends on it)
        self.usage = False                # billed a usage add-on in arrears at each renewal
        self.last_period: tuple[int, int] | None = None  # the last paid period (usage is billed for it)
        self.pending: tuple | None = None  # (plan, quantity, add-ons) applying at the next renewal
        self.epoch = 0                    # bumped when scheduled events of the old course become void

    @property
    def id(self) -> str:
        return self.obj["id"]

    @property
    def state(self) -> str:
        return self.obj["state"]

    def edge(self, n: int) -> int:
        plan = self.plan
        if plan.interval_unit == "months":
            return add_months(self.anchor, n * plan.interval_length)
        return self.anchor + n * plan.interval_length * DAY

    def start_period(self, anchor: int | None = None) -> None:
        """Move to the next period (or to period 0 of a new anchor) and show it on the object."""
        if anchor is not None:
            self.anchor, self.period_no = anchor, 0
        else:
            self.period_no += 1
        self.period_start = self.edge(self.period_no)
        self.period_end = self.edge(self.period_no + 1)
        self.show_period(self.period_start, self.period_end)

    def show_period(self, start: int, end: int) -> None:
        obj = self.obj
        obj["current_period_started_at"] = obj["current_term_started_at"] = iso(start)
        obj["current_period_ends_at"] = obj["current_term_ends_at"] = iso(end)

    def charges(self, catalog: Catalog, start: int, end: int, trial: bool = False,
                proration: float | None = None, credit: bool = False,
                coupon: CouponSpec | None = None) -> list[Charge]:
        """The plan and add-on line items of the current configuration for [start, end), with the
        coupon that discounts them (coupons.py: a percent, or a fixed amount spread over them)."""
        plan = self.plan
        currency = self.customer.currency
        sign = -1.0 if credit else 1.0
        coupon = None if trial else coupon
        pct = coupon.percent / 100.0 if coupon is not None and not coupon.fixed else 0.0
        mini = catalog.plan_minis[plan.code]
        verb = "Unused time on " if credit else ""
        price = 0.0 if trial else sign * round(plan.prices[currency] * plan.price_factor(max(1, self.cycles)), 2)
        out = [Charge("plan_trial" if trial else "plan", price,
                      self.quantity, f"{verb}{plan.name}", self.id, mini, start=start, end=end,
                      proration_rate=proration, discount_pct=pct, product_code=plan.code)]
        for code, qty in self.add_ons.items():
            spec = ADD_ONS[code]
            out.append(Charge("add_on_trial" if trial else "add_on", 0.0 if trial else sign * spec.prices[currency],
                              round_half_up(qty), f"{verb}{spec.name}", self.id, mini,
                              catalog.add_on_minis[plan.code, code], start=start, end=end,
                              proration_rate=proration, discount_pct=pct, product_code=code,
                              unit_amount_decimal=f"{spec.prices[currency]}" if spec.decimal_price and not trial else None,
                              quantity_decimal=f"{qty}" if spec.decimal_quantity else None))
        if coupon is not None and coupon.fixed:
            prices = [abs(float(c.unit_amount_decimal) if c.unit_amount_decimal else c.unit_amount)
                      * (float(c.quantity_decimal) if c.quantity_decimal else c.quantity) for c in out]
            total = sum(prices)
            for c, price in zip(out, prices):
                c.discount_amount = coupon.amount(currency) * price / total if total else 0.0
        return out

    def usage_charge(self, catalog: Catalog, used: int) -> Charge | None:
        """The usage add-on billed in arrears for the last paid period (never MRR)."""
        if not self.usage or self.last_period is None or "api-overage" not in self.plan.add_on_codes:
            return None
        spec = ADD_ONS["api-overage"]
        start, end = self.last_period
        return Charge("add_on", spec.prices[self.customer.currency], used, spec.name, self.id,
                      catalog.plan_minis[self.plan.code], catalog.add_on_minis[self.plan.code, "api-overage"],
                      start=start, end=end, product_code=spec.code)

    def reprice(self, catalog: Catalog, stamp: str, mint) -> None:
        """Write plan, quantity, add-ons and amounts onto the object (after a change)."""
        obj, plan, customer = self.obj, self.plan, self.customer
        currency = customer.currency
        obj["plan"] = catalog.plan_minis[plan.code]
        unit = round(float(plan.prices[currency]) * plan.price_factor(max(1, self.cycles)), 2)
        obj["unit_amount"] = unit
        obj["quantity"] = self.quantity
        if plan.ramp:
            obj["ramp_intervals"] = [
                {"starting_billing_cycle": starting, "unit_amount": round(plan.prices[currency] * share, 2),
                 "remaining_billing_cycles": max(0, nxt - max(1, self.cycles)) if nxt else None}
                for (starting, share), nxt in zip(plan.ramp, [r[0] for r in plan.ramp[1:]] + [None])]
            obj["ramp_intervals"] = [compact(r) for r in obj["ramp_intervals"]]
        else:
            obj["ramp_intervals"] = []
        existing = {a["add_on"]["code"]: a for a in obj.get("add_ons", ())}
        add_ons = []
        for code, qty in self.add_ons.items():
            item = existing.get(code)
            if item is None or item["add_on"]["id"] != catalog.add_on_minis[plan.code, code]["id"]:
                item = {"id": mint.next_id(), "object": "subscription_add_on", "subscription_id": self.id,
                        "add_on": catalog.add_on_minis[plan.code, code], "add_on_source": "plan_add_on",
                        "quantity": round_half_up(qty), "unit_amount": float(ADD_ONS[code].prices[currency]),
                        "revenue_schedule_type": "evenly", "tier_type": "flat",
                        "created_at": stamp, "updated_at": stamp}
            elif item["quantity"] != round_half_up(qty):
                item = {**item, "quantity": round_half_up(qty), "updated_at": stamp}
            add_ons.append(item)
        obj["add_ons"] = add_ons
        add_ons_total = round(sum(ADD_ONS[code].prices[currency] * qty for code, qty in self.add_ons.items()), 2)
        subtotal = round(unit * self.quantity + add_ons_total, 2)
        coupon = self.coupon
        discount = (0.0 if coupon is None else min(subtotal, coupon.amount(currency)) if coupon.fixed
                    else round(subtotal * coupon.percent / 100.0, 2))
        tax = round((subtotal - discount) * customer.tax_rate, 2)
        obj["add_ons_total"] = add_ons_total
        obj["subtotal"] = subtotal
        obj["tax"] = tax
        obj["total"] = round(subtotal - discount + tax, 2)


def round_half_up(quantity: float) -> int:
    """A decimal quantity's integer `quantity` (the API: "the rounded integer value")."""
    return int(quantity + 0.5)


def new_subscription_object(sub_id: str, sub_uuid: str, customer: Customer, catalog: Catalog,
                            plan: PlanSpec, stamp: str, custom_fields: list[dict]) -> dict:
    billing_info = customer.obj.get("billing_info")
    obj = compact({
        "id": sub_id,
        "object": "subscription",
        "uuid": sub_uuid,
        "account": customer.mini,
        "plan": catalog.plan_minis[plan.code],
        "state": "active",
        "coupon_redemptions": [],
        "current_period_started_at": None,
        "current_period_ends_at": None,
        "current_term_started_at": None,
        "current_term_ends_at": None,
        "trial_started_at": None,
        "trial_ends_at": None,
        "remaining_billing_cycles": None,
        "total_billing_cycles": None,
        "renewal_billing_cycles": None,
        "auto_renew": True,
        "ramp_intervals": [],
        "paused_at": None,
        "remaining_pause_cycles": None,
        "currency": customer.currency,
        "revenue_schedule_type": "evenly",
        "unit_amount": 0.0,
        "tax_inclusive": False,
        "quantity": 1,
        "add_ons": [],
        "add_ons_total": 0.0,
        "subtotal": 0.0,
        "tax": 0.0,
        "total": 0.0,
        "collection_method": "automatic",
        "po_number": None,
        "net_terms": 0,
        "net_terms_type": "net",
        "terms_and_conditions": None,
        "customer_notes": None,
        "expiration_reason": None,
        "custom_fields": custom_fields,
        "created_at": stamp,
        "updated_at": stamp,
        "activated_at": stamp,
        "canceled_at": None,
        "expires_at": None,
        "bank_account_authorized_at": None,
        "gateway_code": None,
        "billing_info_id": billing_info["id"] if billing_info else None,
        "active_invoice_id": None,
        "started_with_gift": False,
        "converted_at": None,
    })
    if customer.tax_info:
        obj["tax_info"] = customer.tax_info
    return obj
