"""Usable coupon terms of staged coupon redemptions: the one definition the extraction's
coupon-redemptions rule (extract/completion.py) and the MRR transform (transform/mrr.py) share.

A redemption gives terms when it is active (a subscription's own, as staged now) or was applied to
the invoice that lists it (whatever its state since), and its coupon is a whole percent from 0 to
100, or a fixed amount with a positive amount in the currency asked for (exact to the micro-unit).
Anything else (free_trial coupons, a fixed coupon without that currency, an inactive subscription
redemption) gives none, so a subscription with only such redemptions is one "without coupon terms".

The staged JSON is untrusted: every level read is checked against the API's types (CouponRedemption,
Coupon, CouponDiscount, CouponDiscountPricing in the v3 OpenAPI spec): a list of objects; `state`,
`subscription_id`, `coupon.duration`, `discount.type` (percent, fixed, free_trial) and a currency
code strings; `coupon`, `discount`, `trial` and each currency's entry objects; `currencies` an
array; `percent` a whole number from 0 to 100; `amount` an exact number from 0 with at most 6
decimals, below 2**62 micro-units (Decimal or int, never a float). A holder (a subscription's or an
invoice's list) with one redemption that does not fit gives no terms at all, and `checked_terms`
says why, naming the JSON path: neither the misfit nor the rest of its list is used.
"""

from __future__ import annotations

import json
from decimal import Decimal

MICRO = 10**6
MAX_MICRO = 2**62                      # a fixed amount in micro-units stays below this (int64)
KINDS = ("percent", "fixed", "free_trial")
_MAX_AMOUNT = Decimal(MAX_MICRO) / MICRO
_SIX_DECIMALS = Decimal("0.000001")

Terms = tuple[int | None, int | None]  # (percent, fixed amount in micro-units)
NO_TERMS: Terms = (None, None)


class RedemptionMisfit(ValueError):
    """A staged redemption list not shaped as the API says: `path` (coupon_redemptions[0].coupon)
    and what is wrong."""

    def __init__(self, path: str, what: str):
        super().__init__(f"{path}: {what}")
        self.path, self.what = path, what


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, Decimal)):
        return "a number"
    if isinstance(value, float):
        return "a binary float"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _typed(value: object, expected: type, path: str, required: bool = False) -> object:
    """`value` when it is of `expected` (or null and not required); else RedemptionMisfit."""
    if value is None and not required:
        return None
    if not isinstance(value, expected) or isinstance(value, bool):
        name = {dict: "an object", list: "an array", str: "a string"}[expected]
        raise RedemptionMisfit(path, f"expected {name}, got {_kind(value)}")
    return value


def _number(value: object, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or \
            (isinstance(value, Decimal) and not value.is_finite()):
        raise RedemptionMisfit(path, f"expected an exact number, got {_kind(value)}")
    return Decimal(value)


def _percent(value: object, path: str) -> int:
    pct = _number(value, path)
    if not 0 <= pct <= 100 or pct != pct.to_integral_value():  # range first: never int() of 1e999999
        raise RedemptionMisfit(path, f"{value} is not a whole percent from 0 to 100")
    return int(pct)


def _micro(value: object, path: str) -> int:
    amount = _number(value, path)
    if not 0 <= amount < _MAX_AMOUNT:
        raise RedemptionMisfit(path, f"{value} is not an amount from 0 below {_MAX_AMOUNT:.0f}")
    if amount.quantize(_SIX_DECIMALS) != amount:
        raise RedemptionMisfit(path, f"{value} has more than 6 decimals")
    return int(amount.quantize(_SIX_DECIMALS).scaleb(6))


def _discount(r: dict, path: str, currency: object) -> tuple[str | None, int | None, int | None]:
    """(type, percent, fixed micro-units in `currency`) of a redemption's coupon, every level checked."""
    coupon = _typed(r.get("coupon"), dict, f"{path}.coupon")
    if coupon is None:
        return None, None, None
    _typed(coupon.get("duration"), str, f"{path}.coupon.duration")
    discount = _typed(coupon.get("discount"), dict, f"{path}.coupon.discount")
    if discount is None:
        return None, None, None
    at = f"{path}.coupon.discount"
    kind = _typed(discount.get("type"), str, f"{at}.type", required=True)
    if kind not in KINDS:
        raise RedemptionMisfit(f"{at}.type", f"{kind!r} is none of {', '.join(KINDS)}")
    _typed(discount.get("trial"), dict, f"{at}.trial")
    pct = _percent(discount["percent"], f"{at}.percent") if discount.get("percent") is not None else None
    if kind == "percent" and pct is None:
        raise RedemptionMisfit(f"{at}.percent", "a percent coupon without its percent")
    currencies = _typed(discount.get("currencies"), list, f"{at}.currencies", required=kind == "fixed")
    fixed = None
    for n, c in enumerate(currencies or []):
        _typed(c, dict, f"{at}.currencies[{n}]", required=True)
        code = _typed(c.get("currency"), str, f"{at}.currencies[{n}].currency", required=True)
        amount = _micro(c.get("amount"), f"{at}.currencies[{n}].amount")
        if fixed is None and code == currency:
            fixed = amount
    return kind, pct, fixed


def _terms(redemptions: object, currency: object, applied: bool, subscription: object) -> tuple[Terms, bool]:
    """(terms, lasting): the terms as `usable_terms` defines them, and whether every redemption that
    gives them is of a coupon for ever (`coupon.duration: forever`): terms that cannot expire."""
    _typed(redemptions, list, "coupon_redemptions")
    percent = fixed = None
    lasting = True
    for n, r in enumerate(redemptions or []):
        path = f"coupon_redemptions[{n}]"
        _typed(r, dict, path, required=True)
        state = _typed(r.get("state"), str, f"{path}.state")
        sub = _typed(r.get("subscription_id"), str, f"{path}.subscription_id")
        kind, pct, amount = _discount(r, path, currency)
        if not applied and state not in (None, "active"):
            continue
        if applied and sub not in (None, "", subscription):
            continue
        gives = False
        if percent is None and kind == "percent":
            percent, gives = pct, True
        if fixed is None and kind == "fixed" and amount:
            fixed, gives = amount, True
        if gives and r["coupon"].get("duration") != "forever":
            lasting = False
    return (percent, fixed), lasting


def usable_terms(redemptions: object, currency: object, applied: bool = False,
                 subscription: object = None) -> Terms:
    """(percent, fixed amount in micro-units of `currency`) of the first percent coupon and the
    first fixed-amount coupon with an amount in that currency, from redemption objects (amounts as
    int or Decimal). Without `applied`: a subscription's redemptions, the active ones only. With
    `applied`: the redemptions an invoice lists (applied to it, any state), of which the account's
    own (no `subscription_id`) and, given `subscription`, that subscription's count.
    Raises RedemptionMisfit for a list not shaped as the API says (module docstring)."""
    return _terms(redemptions, currency, applied, subscription)[0]


def parse(text: object) -> object:
    """A staged `coupon_redemptions` JSON text as objects, numbers with a fraction as Decimal (a
    NaN or Infinity literal stays a float, refused by the checks); None for no text. Raises
    RedemptionMisfit for text that is not JSON or nests deeper than Python's recursion limit."""
    if text is None or (isinstance(text, str) and text in ("", "[]", "null")):
        return None
    if not isinstance(text, str):
        raise RedemptionMisfit("coupon_redemptions", f"expected JSON text, got {type(text).__name__}")
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as e:
        raise RedemptionMisfit("coupon_redemptions", f"not JSON ({e})") from None
    except RecursionError:
        raise RedemptionMisfit("coupon_redemptions", "nested too deep to read") from None


def checked_terms(redemptions: object, currency: object, applied: bool = False,
                  subscription: object = None) -> tuple[Terms, str | None]:
    """(terms, None), or (NO_TERMS, why) when the redemptions (objects, or the staged JSON text)
    do not fit: the holder then has no coupon terms, and the caller reports it by name."""
    try:
        if isinstance(redemptions, str):
            redemptions = parse(redemptions)
        return usable_terms(redemptions, currency, applied, subscription), None
    except RedemptionMisfit as e:
        return NO_TERMS, str(e)


def lasting_terms(redemptions: object, currency: object) -> tuple[bool, str | None]:
    """(True, None) when a subscription's redemptions (objects, or the staged JSON text) give it
    coupon terms that cannot expire (every redemption giving them is of a `forever` coupon); with
    the reason in place of None when they do not fit (then False)."""
    try:
        if isinstance(redemptions, str):
            redemptions = parse(redemptions)
        terms, lasting = _terms(redemptions, currency, False, None)
    except RedemptionMisfit as e:
        return False, str(e)
    return terms != NO_TERMS and lasting, None


def has_terms(redemptions: object, currency: object) -> bool:
    """True when a subscription's redemptions (objects, or the staged JSON text) give it coupon
    terms (False for redemptions that do not fit)."""
    return checked_terms(redemptions, currency)[0] != NO_TERMS
