"""Subscription and account MRR per day, reconstructed from invoiced line items, in exact money.

Staging keeps only the latest version of a subscription, but Recurly keeps its billing history:
every recurring charge is a line item with a service period [start_date, end_date), the plan or
add-on it bills, its proration and its discount. That is where MRR history comes from (as in
Recurly's own MRR report). docs/transform.md ("MRR: definitions", "Money and rounding") is the
reference; in short:

- a recurring line item (origin plan or add_on, with a service period, on an invoice that is not
  voided, not a refund, not a usage add-on) contributes, on every day of its service period, its
  full-period net price normalised to a month: / interval_length for plans in months,
  x days_per_month / interval_length for plans in days;
- full-period price = unit amount x quantity (the `_decimal` fields when set), read as the full
  period's price, or, when the line's subtotal shows a prorated unit amount, divided by the
  proration rate; net of the discount (the coupon's terms: the subscription's redemptions, else
  the account's redemptions its invoice lists; else the line's own discount) and, for a
  tax-inclusive price, of its tax;
- a proration credit counts with a minus sign, as exactly the amount of the charge it credits, so a
  plan change leaves exactly the new price from the change on;
- the subscription's own dates cut it: nothing from expires_at on, nothing from paused_at on while
  it is paused.

All arithmetic is in integers (transform/money.py): each item's monthly contribution is exact (a
common denominator for the site's plan intervals), a subscription-day's sum is rounded half up
once, to the minor unit of its currency, and again after conversion to the reporting currency.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pandas as pd

from recurly_elt.staging import coupon_terms as coupons
from recurly_elt.staging.coupon_terms import usable_terms
from recurly_elt.transform import fx, money, runs
from recurly_elt.transform.config import TransformConfig
from recurly_elt.transform.frames import SiteFrames, isin, lookup, lookup_int, positions

QUARANTINE_COLUMNS = ["stage", "object_id", "reason"]
NANO = 10**9
PERCENT = 100          # a net amount is carried in hundredths of a micro-unit (percent coupons)
BOUND = 2**60          # every exact intermediate stays below this (int64 headroom for sums)


def _quarantine(stage: str, ids: pd.Series, reasons: pd.Series | str) -> pd.DataFrame:
    return pd.DataFrame({"stage": stage, "object_id": ids.astype(str).to_numpy(),
                         "reason": reasons if isinstance(reasons, str) else reasons.to_numpy()})


def _misfits(kind: str, why: dict[str, str]) -> pd.DataFrame:
    """Quarantine rows (stage coupon_terms) for the holders whose staged redemptions do not fit."""
    ids = pd.Series(list(why), dtype="str")
    return _quarantine("coupon_terms", ids, pd.Series([f"{kind} {i}: {w}; no coupon terms taken from its redemptions"
                                                       for i, w in why.items()], dtype="str"))


def coupon_terms(subscriptions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per subscription id (the index): `percent` (its active percent coupon, float NaN when none)
    and `fixed` (its active fixed-amount coupon's amount in the subscription's currency, int64
    micro-units, 0 when none), from the coupon redemptions staged with it (staging/coupon_terms.py,
    the definition the extraction's coupon-redemptions rule uses too). Also the quarantine rows of
    the subscriptions whose redemptions do not fit the API's shape (they get no terms)."""
    staged = subscriptions["coupon_redemptions"]
    # Only the rows with redemptions (a few percent of the subscriptions).
    subs = subscriptions[staged.notna() & ~staged.isin(("", "[]"))].drop_duplicates("id").set_index("id")
    terms, why = {}, {}
    for sid, raw in subs["coupon_redemptions"].items():
        terms[sid], misfit = coupons.checked_terms(raw, subs.at[sid, "currency"])
        if misfit is not None:
            why[sid] = misfit
    return _terms_frame(terms), _misfits("subscription", why)


def _invoice_key(invoice_ids: object, subscription_ids: object) -> pd.Series:
    """The key of an invoice's terms for one subscription's line items ("" for the account's)."""
    return pd.Series(invoice_ids, dtype="str").str.cat(pd.Series(subscription_ids, dtype="str").fillna(""), sep="\x1f")


def invoice_coupon_terms(invoices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The terms of the redemptions applied to an invoice (its staged `coupon_redemptions`, any
    state): per `_invoice_key` of the invoice and a subscription the list names, the account's
    redemptions and that subscription's (its terms back then); with "" for the account's alone.
    Also the quarantine rows of the invoices whose list does not fit (no terms from any of it)."""
    staged = invoices["coupon_redemptions"]
    # Only the invoices the extraction read redemptions of (far fewer than the invoices).
    rows = invoices[staged.notna() & ~staged.isin(("", "[]"))].drop_duplicates("id").set_index("id")
    terms, why = {}, {}
    for iid, raw in rows["coupon_redemptions"].items():
        currency = rows.at[iid, "currency"]
        account, misfit = coupons.checked_terms(raw, currency, applied=True)
        if misfit is not None:
            why[iid] = misfit
            continue
        redemptions = coupons.parse(raw) or []  # checked: a list of objects, subscription_id text or null
        terms[f"{iid}\x1f"] = account
        for sub in sorted({r.get("subscription_id") for r in redemptions} - {None, ""}):
            terms[f"{iid}\x1f{sub}"] = usable_terms(redemptions, currency, applied=True, subscription=sub)
    return _terms_frame(terms), _misfits("invoice", why)


def _terms_frame(terms: dict[str, tuple[int | None, int | None]]) -> pd.DataFrame:
    percent = {k: p for k, (p, _) in terms.items() if p is not None}
    fixed = {k: f for k, (_, f) in terms.items() if f is not None}  # below 2**62 (coupon_terms.MAX_MICRO)
    ids = pd.Index(sorted(set(percent) | set(fixed)), dtype="str")
    return pd.DataFrame({"percent": pd.Series(percent, index=ids, dtype="float64"),
                         "fixed": pd.Series([fixed.get(i, 0) for i in ids], index=ids, dtype=np.int64)},
                        index=ids)


def line_terms(li: pd.DataFrame, subscriptions: pd.DataFrame,
               invoices: pd.DataFrame) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], pd.DataFrame]:
    """Per line item, its coupon's terms: (percent, float NaN when none; fixed amount, int64
    micro-units, 0 when none; True where they are the account's, from its invoice). From its
    subscription's redemptions; for a subscription without coupon terms, from the redemptions its
    invoice lists (staged for the invoices that need them: docs/extraction.md "Coupon redemptions of
    an invoice"): that subscription's, else the account's. Also the quarantine rows of the
    subscriptions and invoices whose redemptions do not fit."""
    (by_sub, q_subs), (by_invoice, q_invoices) = coupon_terms(subscriptions), invoice_coupon_terms(invoices)
    pct = lookup(li["subscription_id"], by_sub["percent"]).to_numpy(dtype="float64", na_value=np.nan)
    fixed = lookup_int(li["subscription_id"], by_sub["fixed"])
    account = np.zeros(len(li), dtype=bool)
    if len(by_invoice):
        for subscription in (li["subscription_id"], None):  # the subscription's own, then the account's
            none = np.isnan(pct) & (fixed == 0)
            if not none.any():
                break
            keys = _invoice_key(li["invoice_id"].to_numpy(), subscription.to_numpy() if subscription is not None
                                else np.full(len(li), "", dtype=object))
            keys.index = li.index
            inv_pct = lookup(keys, by_invoice["percent"]).to_numpy(dtype="float64", na_value=np.nan)
            inv_fixed = lookup_int(keys, by_invoice["fixed"])
            pct = np.where(none, inv_pct, pct)
            fixed = np.where(none, inv_fixed, fixed)
            if subscription is None:
                account = none & (~np.isnan(inv_pct) | (inv_fixed != 0))
    return (pct, fixed, account), pd.concat([q_subs, q_invoices], ignore_index=True)


def _exact(rows: np.ndarray, fn, *columns: np.ndarray) -> np.ndarray:
    """fn applied with Python integers (no overflow) to the rows selected; the result as int64."""
    idx = np.flatnonzero(rows)
    values = [fn(*(int(c[i]) for c in columns)) for i in idx]
    if any(abs(v) >= BOUND for v in values):
        raise money.MoneyError("a line item's amount is too large to be carried exactly")
    return np.array(values, dtype=np.int64)


def _div_half_up(n: int, d: int) -> int:
    q = (2 * abs(n) + d) // (2 * d)
    return -q if n < 0 else q


def full_period_gross(li: pd.DataFrame) -> np.ndarray:
    """|unit amount x quantity| in micro-units, the `_decimal` fields taking precedence; a product
    with more than 6 decimals is rounded half up to the micro-unit."""
    unit_dec, has_unit_dec = money.parse_decimal(li["unit_amount_decimal"], NANO)
    qty_dec, has_qty_dec = money.parse_decimal(li["quantity_decimal"], NANO)
    unit = money.micros(li["unit_amount"], li["id"], "unit_amount")
    qty = li["quantity"].fillna(1).to_numpy(dtype="float64")
    if np.abs(qty).max(initial=0) >= 2**31:
        raise money.MoneyError("a line item's quantity is too large")
    qty = qty.astype(np.int64)
    gross = np.abs(unit * qty)
    decimal = has_unit_dec | has_qty_dec
    if decimal.any():
        unit_n = np.where(has_unit_dec, unit_dec, unit * 1000)
        qty_n = np.where(has_qty_dec, qty_dec, qty * NANO)
        gross[decimal] = np.abs(_exact(decimal, lambda u, q: _div_half_up(u * q, NANO * 1000), unit_n, qty_n))
    return gross


def net_amounts(li: pd.DataFrame, terms: tuple[np.ndarray, np.ndarray, np.ndarray], gross: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per line item: (full-period net amount in hundredths of a micro-unit, prorated reading).
    `terms`: each item's coupon terms (line_terms).

    Reading of a prorated item (proration_rate in (0, 1)): the unit amount is the full period's
    price when the subtotal is closer to unit x quantity x rate; it is the prorated price (the spec's
    subtotal = quantity x unit_amount) when the subtotal is closer to unit x quantity, and the full
    price is then that / proration_rate, rounded half up to the micro-unit.
    """
    gross = gross.copy()  # |unit x quantity| (full_period_gross); a prorated unit amount is scaled up here
    rate = li["proration_rate"].to_numpy(dtype="float64", na_value=np.nan)
    prorated = (rate > 0) & (rate < 1)
    rate_micro = np.where(prorated, np.rint(np.nan_to_num(rate) * money.MICRO), money.MICRO).astype(np.int64)
    subtotal = np.abs(money.micros(li["subtotal"], li["id"], "subtotal"))
    as_prorated_unit = prorated & (np.abs(gross - subtotal) < np.abs(gross * np.nan_to_num(rate) - subtotal))
    if as_prorated_unit.any():
        gross[as_prorated_unit] = money.mul_div_half_up(gross[as_prorated_unit], money.MICRO,
                                                        rate_micro[as_prorated_unit])
    discount = np.abs(money.micros(li["discount"], li["id"], "discount"))
    pct, fixed, account = terms
    # The coupon's terms apply where the line carries a discount, or where it is prorated so small
    # that the coupon's share of it rounds to nothing.
    has_terms = ~np.isnan(pct) & ((discount > 0) | (prorated & (subtotal * np.nan_to_num(pct) < PERCENT * money.MICRO // 200)))
    net = np.where(has_terms, gross * (PERCENT - np.nan_to_num(pct).astype(np.int64)),
                   np.where(prorated, gross * PERCENT, (gross - discount) * PERCENT))
    # A prorated, discounted item without percent terms: gross less its share of the fixed-amount
    # coupon's amount; without one, the net of its full-price line (the renewal of the same
    # configuration right after it), else its own discount share.
    own_share = prorated & (discount > 0) & ~has_terms & (subtotal > 0)
    if own_share.any():
        by_fixed = own_share & (fixed > 0)
        own_share &= ~by_fixed
        if by_fixed.any():
            net[by_fixed] = _fixed_coupon_net(li, by_fixed, gross, fixed, account)
    if own_share.any():
        full_price = _full_price_lines(li, own_share & (li["type"] != "credit").to_numpy(), prorated)
        net[own_share] = _exact(own_share, lambda g, s, d: _div_half_up(g * (s - d) * PERCENT, s),
                                gross, subtotal, discount)
        found = full_price >= 0
        net[found] = net[full_price[found]]
    # Tax-inclusive prices: the tax comes out, by the line's tax rate, else by its own tax share.
    inclusive = li["tax_inclusive"].fillna(False).astype(bool).to_numpy()
    if inclusive.any():
        tax_rate = li["tax_rate"].to_numpy(dtype="float64", na_value=np.nan)
        tax_micro = np.rint(np.nan_to_num(tax_rate) * money.MICRO).astype(np.int64)
        tax = np.abs(money.micros(li["tax"], li["id"], "tax"))
        charged = subtotal - discount
        by_rate = inclusive & ~np.isnan(tax_rate)
        by_share = inclusive & np.isnan(tax_rate) & (charged > 0)
        if by_rate.any():
            net[by_rate] = money.mul_div_half_up(net[by_rate], money.MICRO, money.MICRO + tax_micro[by_rate])
        if by_share.any():
            net[by_share] = _exact(by_share, lambda n, a, t: _div_half_up(n * (a - t), a), net, charged, tax)
    return net, as_prorated_unit


def _fixed_coupon_net(li: pd.DataFrame, rows: np.ndarray, gross: np.ndarray, fixed: np.ndarray,
                      account: np.ndarray) -> np.ndarray:
    """Net (hundredths of a micro-unit) of the selected items under a fixed-amount coupon: full-period
    gross less the item's share of the coupon's amount. The amount is spread over a group of
    recurring items of one invoice in proportion to their full-period gross (one item: all of it):
    a subscription's own coupon over that subscription's items of one type and service period; an
    account coupon (`account`: terms from the invoice's account redemptions) once over all the
    invoice's items of one type taking the account's terms, whatever their subscription (a
    consolidated invoice). Shares are exact in total: in line item id order, each is the cumulative
    share through it rounded half up to the hundredth of a micro-unit less the cumulative share
    before it, so they add up to the amount; an item's discount is never more than its gross."""
    near = np.flatnonzero(isin(li["invoice_id"], li.loc[rows, "invoice_id"].unique()))
    part = li.iloc[near]
    own = ~account[near]
    period = part["start_date"].astype("int64").astype(str) + "|" + part["end_date"].astype("int64").astype(str)
    group = (part["invoice_id"].astype(str) + "|" + part["subscription_id"].astype(str).where(own, "")
             + "|" + part["type"].astype(str) + "|" + period.where(own, "")).to_numpy()
    share = np.zeros(len(li), dtype=object)
    order = np.lexsort((part["id"].astype(str).to_numpy(), group))
    for _, ks in itertools.groupby(order, key=lambda k: group[k]):
        members = near[list(ks)]
        total = sum(int(gross[at]) for at in members)
        amount = max(int(fixed[at]) for at in members) * PERCENT
        done = before = 0
        for at in members:
            done += int(gross[at])
            through = _div_half_up(amount * done, total) if total else 0
            share[at], before = through - before, through
    return _exact(rows, lambda g, a: g * PERCENT - min(g * PERCENT, a), gross, share)


def _configurations(part: pd.DataFrame) -> pd.Series:
    """Per line item, its configuration as text: subscription, plan, add-on and quantity."""
    qty = part["quantity_decimal"].fillna(part["quantity"].abs().astype(str)).astype(str)
    return (part["subscription_id"].astype(str) + "|" + part["plan_code"].fillna("").astype(str) + "|"
            + part["add_on_code"].fillna("").astype(str) + "|" + qty)


def _full_price_lines(li: pd.DataFrame, wanted: np.ndarray, prorated: np.ndarray) -> np.ndarray:
    """For each wanted (prorated) charge, the position of its full-price line: the full-period
    charge of the same configuration starting where it ends (its renewal); -1 when none."""
    out = np.full(len(li), -1, dtype=np.int64)
    if not wanted.any():
        return out
    near = np.flatnonzero(isin(li["subscription_id"], li.loc[wanted, "subscription_id"].unique()))
    part = li.iloc[near]
    config = _configurations(part) + "|"
    full = (~prorated[near]) & (part["type"] != "credit").to_numpy()
    starts = pd.DataFrame({"key": (config + part["start_date"].astype("int64").astype(str))[full].to_numpy(),
                           "pos": near[full], "created_at": part["created_at"][full].to_numpy()})
    starts = starts.sort_values("created_at", kind="stable").drop_duplicates("key", keep="last")
    ask = wanted[near]
    at = positions(pd.Series((config + part["end_date"].astype("int64").astype(str))[ask].to_numpy()),
                   pd.Index(starts["key"]))
    out[near[ask]] = np.where(at >= 0, starts["pos"].to_numpy()[np.maximum(at, 0)] if len(starts) else -1, -1)
    return out


def _credited_originals(li: pd.DataFrame) -> np.ndarray:
    """For each credit, the position (in li) of the charge it credits, -1 when none: the latest
    charge created before it for the same subscription, plan, add-on, quantity and period end, whose
    service period contains the credit's start."""
    out = np.full(len(li), -1, dtype=np.int64)
    is_credit = (li["type"] == "credit").to_numpy()
    if not is_credit.any():
        return out
    # Only the subscriptions with a credit (a plan change): a few percent of the items.
    near = np.flatnonzero(isin(li["subscription_id"], li.loc[is_credit, "subscription_id"].unique()))
    part = li.iloc[near]
    key = _configurations(part) + "|" + part["end_date"].astype("int64").astype(str)
    frame = pd.DataFrame({"pos": near, "credit": is_credit[near], "key": pd.factorize(key)[0],
                          "created_at": part["created_at"].to_numpy(), "start": part["start_date"].to_numpy()})
    credits = frame[frame["credit"]].sort_values("created_at", kind="stable")
    charges = frame[~frame["credit"]].sort_values("created_at", kind="stable")
    if charges.empty:
        return out
    m = pd.merge_asof(credits, charges[["key", "created_at", "pos", "start"]], on="created_at", by="key",
                      suffixes=("", "_original"), allow_exact_matches=False)
    ok = m["pos_original"].notna() & (m["start_original"] <= m["start"])
    out[m.loc[ok, "pos"].to_numpy()] = m.loc[ok, "pos_original"].to_numpy(dtype=np.int64)
    return out


def recurring_segments(f: SiteFrames, config: TransformConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recurring line items as exact monthly contributions over day ranges.

    Returns (segments, quarantine). Segments: line_item_id, subscription_id, account_id, currency,
    origin, type, plan_code, quantity, monthly (int64, in units of 1 / segments.attrs["denominator"]
    micro-units), gross_monthly (micro-units, before discount, rounded half up to the minor unit),
    day_from, day_to, end_date (the service period's end, a timestamp), created_at.
    """
    li = f.line_items
    keep = (li["origin"].isin(config.recurring_origins) & li["start_date"].notna()
            & li["end_date"].notna() & ~li["refund"].fillna(False).astype(bool)
            & li["subscription_id"].notna() & (li["state"].fillna("invoiced") != "pending"))
    bad_invoices = f.invoices.loc[f.invoices["state"].isin(config.excluded_invoice_states), "id"]
    keep &= ~isin(li["invoice_id"], bad_invoices)
    usage = f.plan_add_ons.loc[(f.plan_add_ons["add_on_type"] == "usage") | f.plan_add_ons["usage_type"].notna(), "id"]
    keep &= ~isin(li["add_on_id"], usage)
    li = li[keep]

    # The plan's billing interval: by plan id, else by plan code (an add-on item names its plan).
    plans = f.plans.drop_duplicates("id")
    by_id = lookup(li["plan_id"], plans.set_index("id")["interval_unit"])
    length_by_id = lookup(li["plan_id"], plans.set_index("id")["interval_length"])
    by_code = plans.drop_duplicates("code").set_index("code")
    unit = by_id.fillna(lookup(li["plan_code"], by_code["interval_unit"]))
    length = length_by_id.fillna(lookup(li["plan_code"], by_code["interval_length"]))
    known = (pd.notna(unit) & (unit.isin(["days", "months"])) & (length > 0)).to_numpy()
    quarantine = _quarantine("mrr", li.loc[~known, "id"],
                             "line item " + li.loc[~known, "id"].astype(str) + ": plan "
                             + li.loc[~known, "plan_code"].fillna("<none>").astype(str)
                             + " not staged or without a billing interval")
    li, unit, length = li[known], unit[known], length[known].to_numpy(dtype="float64").astype(np.int64)

    # Monthly = net x factor / denominator: months plans / length; days plans x days_per_month / length.
    per_month = Fraction(config.days_per_month).limit_denominator(10_000)
    days = (unit == "days").to_numpy()
    den = np.where(days, per_month.denominator * length, length).astype(np.int64)
    factor = np.where(days, per_month.numerator, 1).astype(np.int64)
    common = int(np.lcm.reduce(np.unique(den))) if len(den) else 1

    gross = full_period_gross(li)
    terms, q_coupons = line_terms(li, f.subscriptions, f.invoices)
    net, _ = net_amounts(li, terms, gross)
    multiplier = factor * (common // den)
    if len(net) and (np.abs(net).max() >= BOUND // max(1, int(multiplier.max()))):
        raise money.MoneyError(f"line item amounts too large for plan intervals with a common denominator of {common}")
    sign = np.where((li["type"] == "credit").to_numpy(), -1, 1)
    monthly = sign * net * multiplier
    # A credit offsets exactly the charge it credits (either reading of a prorated unit amount).
    original = _credited_originals(li)
    matched = original >= 0
    monthly[matched] = -monthly[original[matched]]

    step = money.minor_units(li["currency"])
    gross_monthly = money.round_half_up(money.divide_half_up(gross * factor, den), step)
    seg = pd.DataFrame({
        "line_item_id": li["id"], "subscription_id": li["subscription_id"], "account_id": li["account_id"],
        "currency": li["currency"], "origin": li["origin"], "type": li["type"], "plan_code": li["plan_code"],
        "quantity": li["quantity"],
        "gross_monthly": sign * gross_monthly,
        "monthly": monthly,
        "day_from": li["start_date"].dt.normalize(), "day_to": li["end_date"].dt.normalize(),
        "end_date": li["end_date"], "created_at": li["created_at"],
    })

    # The subscription's own end: expiry, or the start of a pause still in force.
    subs = f.subscriptions.set_index("id")
    paused_from = subs["paused_at"].where(subs["state"] == "paused")
    cut = pd.concat([subs["expires_at"], paused_from], axis=1).min(axis=1).dt.normalize()
    seg_cut = lookup(seg["subscription_id"], cut)
    seg["day_to"] = seg["day_to"].where(~(seg_cut < seg["day_to"]), seg_cut)
    seg = seg[seg["day_to"] > seg["day_from"]].reset_index(drop=True)
    seg.attrs["denominator"] = common * PERCENT
    return seg, pd.concat([quarantine, q_coupons], ignore_index=True)


def subscription_runs(segments: pd.DataFrame, f: SiteFrames, config: TransformConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MRR per subscription per day as runs: subscription_id, day_from, day_to, account_id,
    currency, mrr (native, micro-units), mrr_reporting (micro-units, NA when the currency has no FX
    rate). Each day's exact sum is rounded half up once to the currency's minor unit, the reporting
    amount again after conversion. Also returns the quarantine rows for missing rates."""
    exact = runs.from_deltas(segments[["subscription_id"]], segments["day_from"], segments["day_to"],
                             segments["monthly"])
    subs = f.subscriptions.drop_duplicates("id").set_index("id")
    first = segments.drop_duplicates("subscription_id").set_index("subscription_id")
    exact["account_id"] = lookup(exact["subscription_id"], subs["account_id"]).fillna(
        lookup(exact["subscription_id"], first["account_id"]))
    exact["currency"] = lookup(exact["subscription_id"], subs["currency"]).fillna(
        lookup(exact["subscription_id"], first["currency"]))
    step = money.minor_units(exact["currency"])
    denominator = segments.attrs.get("denominator", PERCENT)
    exact["value"] = money.divide_half_up(exact["value"].to_numpy(dtype=np.int64), denominator * step) * step
    r = runs.coalesce(exact, ["subscription_id"], ("value", "account_id", "currency")).rename(columns={"value": "mrr"})
    r["mrr_reporting"] = fx.to_reporting(r["mrr"], r["currency"], config)
    reasons = fx.missing_rate_reasons(r["currency"], config)
    bad = r[reasons.notna()].drop_duplicates("subscription_id")
    quarantine = _quarantine("fx", bad["subscription_id"],
                             "subscription " + bad["subscription_id"].astype(str) + ": "
                             + reasons[bad.index].astype(str))
    return r[["subscription_id", "day_from", "day_to", "account_id", "currency", "mrr", "mrr_reporting"]], quarantine


def account_runs(sub_runs: pd.DataFrame) -> pd.DataFrame:
    """MRR per account per day (reporting currency, micro-units) as runs: account_id, day_from,
    day_to, mrr: the exact sum of its subscriptions' rounded reporting amounts. Subscriptions without
    an FX rate are left out (they are in the quarantine)."""
    ok = sub_runs[sub_runs["mrr_reporting"].notna()]
    r = runs.from_deltas(ok[["account_id"]], ok["day_from"], ok["day_to"],
                         pd.Series(ok["mrr_reporting"].to_numpy(dtype=np.int64), index=ok.index))
    return r.rename(columns={"value": "mrr"})[["account_id", "day_from", "day_to", "mrr"]]
