"""Usable coupon terms of staged coupon redemptions: the one definition the extraction's
coupon-redemptions rule (extract/completion.py) and the MRR transform (transform/mrr.py) share.

A redemption gives terms when it is active (a subscription's own, as staged now) or was applied to
the invoice that lists it (whatever its state since), and its coupon is a whole percent from 0 to
100, or a fixed amount with a positive amount in the currency asked for (exact to the micro-unit).
Anything else (free_trial coupons, a fixed coupon without that currency, an inactive subscription
redemption) gives none, so a subscription with only such redemptions is one "without coupon terms".
"""

from __future__ import annotations

import json
from decimal import Decimal

MICRO = 10**6


def usable_terms(redemptions: object, currency: object, applied: bool = False,
                 subscription: object = None) -> tuple[int | None, int | None]:
    """(percent, fixed amount in micro-units of `currency`) of the first percent coupon and the
    first fixed-amount coupon with an amount in that currency, from redemption objects (amounts as
    int or Decimal). Without `applied`: a subscription's redemptions, the active ones only. With
    `applied`: the redemptions an invoice lists (applied to it, any state), of which the account's
    own (no `subscription_id`) and, given `subscription`, that subscription's count."""
    percent = fixed = None
    for r in redemptions if isinstance(redemptions, list) else []:
        if not isinstance(r, dict) or (not applied and r.get("state") not in (None, "active")):
            continue
        if applied and r.get("subscription_id") not in (None, "", subscription):
            continue
        discount = (r.get("coupon") or {}).get("discount") or {}
        kind, pct = discount.get("type"), discount.get("percent")
        if percent is None and kind == "percent" and isinstance(pct, (int, Decimal)) and not isinstance(pct, bool) \
                and pct == int(pct) and 0 <= pct <= 100:
            percent = int(pct)
        if fixed is None and kind == "fixed":
            for c in discount.get("currencies") or []:
                amount = (c or {}).get("amount")
                if (c or {}).get("currency") == currency and isinstance(amount, (int, Decimal)) \
                        and not isinstance(amount, bool) and amount > 0:
                    micro = Decimal(amount) * MICRO
                    if micro == int(micro):
                        fixed = int(micro)
                    break
    return percent, fixed


def parse(text: object) -> object:
    """A staged `coupon_redemptions` JSON text as objects, numbers with a fraction as Decimal;
    None for no text or text that is not JSON."""
    if not isinstance(text, str) or text in ("", "[]", "null"):
        return None
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return None


def has_terms(redemptions: object, currency: object) -> bool:
    """True when a subscription's redemptions (objects, or the staged JSON text) give it coupon terms."""
    if isinstance(redemptions, str):
        redemptions = parse(redemptions)
    return usable_terms(redemptions, currency) != (None, None)
