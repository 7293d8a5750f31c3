"""The simulated site's product catalog: plans, plan add-ons and their prices per currency.

Tiers order the plans for upgrades and downgrades: a plan change moves one tier up or down among
plans with the same billing interval, so a change never moves the end of the current period.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recurly_elt.sandbox.ids import IdMint
from recurly_elt.sandbox.timestamps import iso
from recurly_elt.sandbox.store import compact

CURRENCIES = ("USD", "EUR", "GBP")
# Local list prices are set per currency (not converted), as price books usually are.
_EUR, _GBP = 0.92, 0.79


def local_prices(usd: float) -> dict[str, float]:
    """A USD list price and its local EUR and GBP prices (whole units)."""
    return {"USD": usd, "EUR": round(usd * _EUR), "GBP": round(usd * _GBP)}


@dataclass(frozen=True)
class AddOnSpec:
    code: str
    name: str
    prices: dict[str, float]
    max_quantity: int = 1
    usage: bool = False            # billed in arrears for what was used (never MRR)
    decimal_price: bool = False    # a sub-cent unit price, sent as unit_amount_decimal too
    decimal_quantity: bool = False  # bought in halves (quantity_decimal "2.5")


@dataclass(frozen=True)
class PlanSpec:
    code: str
    name: str
    tier: int                      # 1 starter .. 3 business: the upgrade/downgrade ladder
    interval_unit: str             # "months" or "days", as the API says
    interval_length: int
    prices: dict[str, float]
    weight: float                  # share of new subscriptions choosing this plan
    trial_days: int = 0
    seat_based: bool = False       # quantity = seats (1..n); otherwise quantity is 1
    add_on_codes: tuple[str, ...] = field(default=())
    ramp: tuple[tuple[int, float], ...] = ()  # (starting billing cycle, share of the list price)

    def price_factor(self, cycle: int) -> float:
        """The share of the list price billed in billing cycle `cycle` (1 = the first paid one)."""
        factor = 1.0
        for starting, share in self.ramp:
            if cycle >= starting:
                factor = share
        return factor

    @property
    def months(self) -> float:
        """Length of one billing period in months (days plans: 30 days = 1 month, as MRR reports)."""
        if self.interval_unit == "months":
            return float(self.interval_length)
        return self.interval_length / 30.0

    @property
    def interval_key(self) -> tuple[str, int]:
        return self.interval_unit, self.interval_length


ADD_ONS: dict[str, AddOnSpec] = {
    a.code: a
    for a in (
        AddOnSpec("priority-support", "Priority support", local_prices(49.0)),
        AddOnSpec("analytics", "Advanced analytics", local_prices(29.0)),
        AddOnSpec("extra-storage", "Extra storage (100 GB)", local_prices(10.0), max_quantity=5,
                  decimal_quantity=True),
        AddOnSpec("api-calls", "API calls", {"USD": 0.0125, "EUR": 0.0115, "GBP": 0.0099}, decimal_price=True),
        AddOnSpec("api-overage", "API overage (per call)", {"USD": 0.002, "EUR": 0.0018, "GBP": 0.0016}, usage=True),
    )
}

PLANS: tuple[PlanSpec, ...] = (
    PlanSpec("lite-weekly", "Lite (weekly)", 1, "days", 7, local_prices(9.0), 0.04),
    PlanSpec("starter-monthly", "Starter", 1, "months", 1, local_prices(29.0), 0.26, trial_days=14,
             add_on_codes=("extra-storage", "api-calls")),
    PlanSpec("starter-annual", "Starter (annual)", 1, "months", 12, local_prices(290.0), 0.08,
             add_on_codes=("extra-storage",)),
    PlanSpec("pro-monthly", "Pro", 2, "months", 1, local_prices(25.0), 0.26, trial_days=14, seat_based=True,
             add_on_codes=("analytics", "extra-storage", "priority-support", "api-calls", "api-overage")),
    PlanSpec("pro-quarterly", "Pro (quarterly)", 2, "months", 3, local_prices(69.0), 0.08, seat_based=True,
             add_on_codes=("analytics", "extra-storage", "priority-support")),
    PlanSpec("pro-annual", "Pro (annual)", 2, "months", 12, local_prices(250.0), 0.12, seat_based=True,
             add_on_codes=("analytics", "extra-storage", "priority-support")),
    PlanSpec("business-monthly", "Business", 3, "months", 1, local_prices(45.0), 0.10, trial_days=30,
             seat_based=True, add_on_codes=("analytics", "priority-support")),
    PlanSpec("business-annual", "Business (annual)", 3, "months", 12, local_prices(450.0), 0.06,
             seat_based=True, add_on_codes=("analytics", "priority-support")),
    # A ramp plan: half price for the first three billing cycles, the list price from the fourth.
    PlanSpec("growth-ramp", "Growth (ramp)", 9, "months", 1, local_prices(80.0), 0.03, seat_based=True,
             ramp=((1, 0.5), (4, 1.0))),
)


def neighbour_plan(plan: PlanSpec, step: int) -> PlanSpec | None:
    """The plan one tier up (step=+1) or down (-1) with the same billing interval, if any."""
    candidates = [p for p in PLANS if p.interval_key == plan.interval_key and p.tier == plan.tier + step]
    return candidates[0] if candidates else None


class Catalog:
    """The catalog as API objects (Plan, AddOn) plus the minis embedded in other objects."""

    def __init__(self, mint: IdMint, created_ts: int):
        self.plans: dict[str, dict] = {}          # plan id -> Plan object
        self.add_ons: dict[str, dict] = {}        # add-on id -> AddOn object
        self.plan_minis: dict[str, dict] = {}     # plan code -> PlanMini
        self.add_on_minis: dict[tuple[str, str], dict] = {}  # (plan code, add-on code) -> AddOnMini
        stamp = iso(created_ts)
        for spec in PLANS:
            plan_id = mint.next_id()
            self.plans[plan_id] = _plan_object(plan_id, spec, stamp)
            self.plan_minis[spec.code] = {"id": plan_id, "object": "plan", "code": spec.code, "name": spec.name}
            for code in spec.add_on_codes:
                add_on = _add_on_object(mint.next_id(), plan_id, ADD_ONS[code], stamp)
                self.add_ons[add_on["id"]] = add_on
                self.add_on_minis[spec.code, code] = {
                    "id": add_on["id"], "object": "add_on", "code": code, "name": add_on["name"],
                    "add_on_type": add_on["add_on_type"], "accounting_code": code,
                }


def _plan_object(plan_id: str, spec: PlanSpec, stamp: str) -> dict:
    return compact({
        "id": plan_id,
        "object": "plan",
        "code": spec.code,
        "state": "active",
        "name": spec.name,
        "description": f"{spec.name}: billed every {spec.interval_length} {spec.interval_unit}",
        "interval_unit": spec.interval_unit,
        "interval_length": spec.interval_length,
        "trial_unit": "days",
        "trial_length": spec.trial_days,
        "trial_requires_billing_info": False,
        "total_billing_cycles": None,
        "auto_renew": True,
        "pricing_model": "ramp" if spec.ramp else "fixed",
        "ramp_intervals": [
            {"starting_billing_cycle": starting,
             "currencies": [{"currency": c, "unit_amount": round(spec.prices[c] * share, 2)} for c in CURRENCIES]}
            for starting, share in spec.ramp],
        "custom_fields": [],
        "revenue_schedule_type": "evenly",
        "setup_fee_revenue_schedule_type": "at_range_start",
        "accounting_code": spec.code,
        "setup_fee_accounting_code": None,
        "tax_code": "SW054000",
        "tax_exempt": False,
        "currencies": [
            {"currency": c, "setup_fee": 0.0, "unit_amount": float(spec.prices[c]), "tax_inclusive": False}
            for c in CURRENCIES
        ],
        "hosted_pages": {"bypass_confirmation": False, "display_quantity": spec.seat_based},
        "allow_any_item_on_subscriptions": False,
        "dunning_campaign_id": None,
        "created_at": stamp,
        "updated_at": stamp,
        "deleted_at": None,
    })


def _add_on_object(add_on_id: str, plan_id: str, spec: AddOnSpec, stamp: str) -> dict:
    return compact({
        "id": add_on_id,
        "object": "add_on",
        "plan_id": plan_id,
        "code": spec.code,
        "state": "active",
        "name": spec.name,
        "add_on_type": "usage" if spec.usage else "fixed",
        "usage_type": "price" if spec.usage else None,
        "usage_calculation_type": None,
        "usage_percentage": None,
        "measured_unit_id": None,
        "accounting_code": spec.code,
        "revenue_schedule_type": "evenly",
        "tax_code": "SW054000",
        "display_quantity": spec.max_quantity > 1,
        "default_quantity": 1,
        "optional": True,
        "currencies": [
            compact({"currency": c, "unit_amount": float(spec.prices[c]), "tax_inclusive": False,
                     "unit_amount_decimal": f"{spec.prices[c]}" if spec.decimal_price else None})
            for c in CURRENCIES
        ],
        "tier_type": "flat",
        "tiers": [],
        "percentage_tiers": [],
        "external_sku": None,
        "created_at": stamp,
        "updated_at": stamp,
        "deleted_at": None,
    })
