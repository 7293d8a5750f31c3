"""Coupons and their redemptions, and what a coupon takes off an invoice's recurring items.

Subscription coupons are redeemed on one subscription (listed in its `coupon_redemptions`, the
redemption's `subscription_id` set): a percent off, or a fixed amount off (`discount.type: fixed`,
an amount per currency in `discount.currencies`), both for ever. Account coupons are redeemed on
the account (no `subscription_id`): a percent or a fixed amount, for ever, temporal (some months
from the redemption) or single use (the first invoice only); they discount the account's
subscription invoices of subscriptions without a coupon of their own.

A coupon discounts the recurring items of one invoice (a subscription's plan and add-ons for one
service period): percent: each item's subtotal x percent, rounded to the cent; fixed: the amount,
prorated as the items are (x proration rate), spread over them in proportion to their full-period
prices (unit amount x quantity), each share rounded to the cent and never more than the item's
subtotal (a charge never goes below zero). Billing.issue applies it (billing.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from recurly_elt.sandbox.catalog import local_prices


@dataclass(frozen=True)
class CouponSpec:
    code: str
    name: str
    percent: int | None = None        # percent off
    amount_usd: float | None = None   # fixed amount off (local amounts: local_prices)
    duration: str = "forever"         # forever, temporal, single_use
    months: int | None = None         # a temporal coupon's length (temporal_unit month)
    scope: str = "subscription"       # redemption_resource: subscription or account

    @property
    def fixed(self) -> bool:
        return self.amount_usd is not None

    def amount(self, currency: str) -> float:
        return float(local_prices(self.amount_usd)[currency]) if self.fixed else 0.0

    def discount(self) -> dict:
        if self.fixed:
            return {"type": "fixed", "currencies": [{"currency": c, "amount": float(a)}
                                                    for c, a in local_prices(self.amount_usd).items()]}
        return {"type": "percent", "percent": self.percent}

    def coupon_object(self, coupon_id: str, stamp: str) -> dict:
        obj = {"id": coupon_id, "object": "coupon", "code": self.code, "name": self.name, "state": "redeemable",
               "discount": self.discount(), "coupon_type": "single_code", "duration": self.duration,
               "redemption_resource": self.scope, "applies_to_all_plans": True,
               "applies_to_non_plan_charges": False, "created_at": stamp, "updated_at": stamp}
        if self.duration == "temporal":
            obj["temporal_amount"], obj["temporal_unit"] = self.months, "month"
        return obj


# Subscription coupons, percent: chosen for `rates.coupon` of new subscriptions.
COUPONS = (CouponSpec("launch10", "Launch offer 10%", percent=10),
           CouponSpec("startup20", "Startup programme 20%", percent=20),
           CouponSpec("partner25", "Partner discount 25%", percent=25))
# Subscription coupons, a fixed amount: replace the percent one for `rates.fixed_coupon` of them.
FIXED_COUPONS = (CouponSpec("save5", "5 off every month", amount_usd=5.0),
                 CouponSpec("save15", "15 off every month", amount_usd=15.0))
# Account coupons: redeemed at sign-up by `rates.account_coupon` of new accounts.
ACCOUNT_COUPONS = (CouponSpec("welcome15", "Welcome 15% for 3 months", percent=15, duration="temporal", months=3,
                              scope="account"),
                   CouponSpec("loyal5", "Loyalty 5% for ever", percent=5, scope="account"),
                   CouponSpec("credit10", "10 off for 6 months", amount_usd=10.0, duration="temporal", months=6,
                              scope="account"),
                   CouponSpec("firstmonth20", "20 off the first invoice", amount_usd=20.0, duration="single_use",
                              scope="account"),
                   CouponSpec("ngo8", "8 off for ever", amount_usd=8.0, scope="account"))
ALL_COUPONS = COUPONS + FIXED_COUPONS + ACCOUNT_COUPONS


def redemption_object(redemption_id: str, spec: CouponSpec, coupon: dict, account: dict, currency: str,
                      subscription_id: str | None, stamp: str, discounted: float) -> dict:
    """A CouponRedemption as the API sends it (account redemptions without `subscription_id`)."""
    obj = {"id": redemption_id, "object": "coupon_redemption", "account": account, "coupon": coupon,
           "state": "active", "currency": currency, "discounted": discounted, "created_at": stamp,
           "updated_at": stamp}
    if subscription_id is not None:
        obj["subscription_id"] = subscription_id
    return obj
