"""MRR and movements computed again, independently of the transform: plain Python over the raw
JSON kept in staging, with exact decimals and fractions, one object at a time (no pandas, no shared
code). It follows the definitions of docs/transform.md ("MRR: definitions", "Money and rounding")
word for word, so any disagreement, even of a cent, is a bug on one side."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import sqlalchemy as sa
import yaml

from recurly_elt.transform.config import mappings_dir

ZERO_DECIMAL_CURRENCIES = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                           "VND", "VUV", "XAF", "XOF", "XPF"}
MICRO, HUNDREDTH_MICRO = Decimal("0.000001"), Decimal("0.00000001")


def _raw(engine: sa.Engine, table: str, site: str) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(sa.text(f"SELECT raw_json FROM {table} WHERE site = :s"), {"s": site})
        return [json.loads(r[0], parse_float=Decimal) for r in rows]


def _day(value: str | None) -> date | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).date() if value else None


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _dec(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _text_or(value, fallback):
    """A decimal string field: blank and null mean "not set"."""
    return Decimal(value) if isinstance(value, str) and value.strip() else fallback


def round_fraction(value: Fraction, currency: str) -> Decimal:
    """Exact half-up rounding of a fraction to the currency's minor unit."""
    unit = Fraction(1) if currency.upper() in ZERO_DECIMAL_CURRENCIES else Fraction(1, 100)
    steps = abs(value) / unit
    whole = int(steps + Fraction(1, 2))  # floor(x + 1/2) for x >= 0: half rounds up
    out = Fraction(whole) * unit * (-1 if value < 0 else 1)
    return Decimal(out.numerator) / Decimal(out.denominator)


def month_ends(first: date, last: date) -> list[date]:
    out, d = [], date(first.year, first.month, 1)
    while d <= last:
        nxt = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        out.append(min(nxt - timedelta(days=1), last))
        d = nxt
    return out


def _exact_number(value, low: Decimal, high: Decimal) -> bool:
    return type(value) in (int, Decimal) and low <= value < high and value == round(Decimal(value), 6)


def _fits(redemptions) -> bool:
    """The redemptions are shaped as the API's schemas say at every level the terms read (a list
    of objects; text state, subscription_id, duration, type, currency; an object coupon, discount;
    a whole percent 0..100; exact amounts 0 <= x < 2**62 micro-units with at most 6 decimals)."""
    if redemptions is None:
        return True
    if not isinstance(redemptions, list):
        return False
    for r in redemptions:
        if not isinstance(r, dict) or any(r.get(k) is not None and not isinstance(r[k], str)
                                          for k in ("state", "subscription_id")):
            return False
        coupon = r.get("coupon")
        if coupon is None:
            continue
        if not isinstance(coupon, dict) or (coupon.get("duration") is not None and not isinstance(coupon["duration"], str)):
            return False
        discount = coupon.get("discount")
        if discount is None:
            continue
        if not isinstance(discount, dict) or discount.get("type") not in ("percent", "fixed", "free_trial"):
            return False
        if discount.get("trial") is not None and not isinstance(discount["trial"], dict):
            return False
        pct = discount.get("percent")
        if (pct is None and discount["type"] == "percent") or (pct is not None and not (
                type(pct) in (int, Decimal) and 0 <= pct <= 100 and pct == int(pct))):
            return False
        currencies = discount.get("currencies")
        if (currencies is None and discount["type"] == "fixed") or (currencies is not None and not isinstance(currencies, list)):
            return False
        for c in currencies or []:
            if not isinstance(c, dict) or not isinstance(c.get("currency"), str) or \
                    not _exact_number(c.get("amount"), Decimal(0), Decimal(2**62) / 10**6):
                return False
    return True


def _counted(holder: dict, on_invoice: bool, subscription: str | None = None) -> list[dict]:
    """The redemptions whose terms count: a subscription's active ones; an invoice's (applied to
    it, whatever their state now) of the account (no subscription_id) or of `subscription`. None
    of a holder whose list does not fit the API's shapes (_fits)."""
    out = []
    if not _fits(holder.get("coupon_redemptions")):
        return out
    for r in holder.get("coupon_redemptions") or []:
        if on_invoice and r.get("subscription_id") in (None, "", subscription):
            out.append(r)
        elif not on_invoice and r.get("state") in (None, "active"):
            out.append(r)
    return out


def _percent_coupon(holder: dict, on_invoice: bool = False, subscription: str | None = None) -> int | None:
    for r in _counted(holder, on_invoice, subscription):
        discount = (r.get("coupon") or {}).get("discount") or {}
        pct = discount.get("percent")
        if discount.get("type") == "percent" and pct is not None and _dec(pct) == int(pct) and 0 <= pct <= 100:
            return int(pct)
    return None


def _fixed_coupon(holder: dict, on_invoice: bool = False, subscription: str | None = None) -> Decimal | None:
    """The amount, in the holder's currency, of its first fixed-amount coupon that counts."""
    for r in _counted(holder, on_invoice, subscription):
        discount = (r.get("coupon") or {}).get("discount") or {}
        if discount.get("type") == "fixed":
            amounts = [c.get("amount") for c in discount.get("currencies") or [] if c.get("currency") == holder["currency"]]
            if amounts and amounts[0] is not None and _dec(amounts[0]) > 0:
                return _dec(amounts[0])
    return None


def _coupon(sub: dict, invoice: dict | None) -> tuple[int | None, Decimal | None]:
    """(percent, fixed amount) of a line's coupon: its subscription's, else the redemptions its
    invoice lists (staged for the invoices that need them) of the account or that subscription."""
    pct, fixed = _percent_coupon(sub), _fixed_coupon(sub)
    if pct is None and fixed is None and invoice is not None:
        pct = _percent_coupon(invoice, on_invoice=True, subscription=sub["id"])
        fixed = _fixed_coupon(invoice, on_invoice=True, subscription=sub["id"])
    return pct, fixed


def _full_period_gross(li: dict) -> Decimal:
    """unit x quantity (decimal fields first), scaled up to the full period for a prorated unit amount."""
    unit = _text_or(li.get("unit_amount_decimal"), _dec(li.get("unit_amount") or 0))
    qty = _text_or(li.get("quantity_decimal"), _dec(li["quantity"] if li.get("quantity") is not None else 1))
    gross = abs(unit * qty).quantize(MICRO, rounding=ROUND_HALF_UP)
    rate = li.get("proration_rate")
    subtotal = abs(_dec(li.get("subtotal") or 0))
    if rate is not None and 0 < rate < 1 and abs(gross - subtotal) < abs(gross * _dec(rate) - subtotal):
        gross = (gross / _dec(rate)).quantize(MICRO, rounding=ROUND_HALF_UP)  # a prorated unit amount
    return gross


def _net_full_period(li: dict, pct: int | None, full_price: Decimal | None = None,
                     fixed_share: Decimal | None = None) -> Decimal:
    """The line's full-period price net of discount and included tax (docs/transform.md);
    `full_price`: the net (before tax) of its full-price line, for a prorated charge without terms;
    `fixed_share`: its part of a fixed-amount coupon's amount."""
    gross = _full_period_gross(li)
    rate = li.get("proration_rate")
    prorated = rate is not None and 0 < rate < 1
    subtotal, discount = abs(_dec(li.get("subtotal") or 0)), abs(_dec(li.get("discount") or 0))
    if pct is not None and (discount > 0 or (prorated and subtotal * pct / 100 < Decimal("0.005"))):
        net = gross * (100 - pct) / 100
    elif not prorated:
        net = gross - discount
    elif discount == 0 or subtotal == 0:
        net = gross
    elif fixed_share is not None:
        net = gross - min(gross, fixed_share)
    elif full_price is not None:
        net = full_price
    else:
        net = (gross * (subtotal - discount) / subtotal).quantize(HUNDREDTH_MICRO, rounding=ROUND_HALF_UP)
    if li.get("tax_inclusive"):
        tax_rate = (li.get("tax_info") or {}).get("rate")
        if tax_rate is not None:
            net = (net / (1 + _dec(tax_rate))).quantize(HUNDREDTH_MICRO, rounding=ROUND_HALF_UP)
        elif subtotal - discount > 0:
            charged = subtotal - discount
            net = (net * (charged - abs(_dec(li.get("tax") or 0))) / charged).quantize(
                HUNDREDTH_MICRO, rounding=ROUND_HALF_UP)
    return net


@dataclass
class Run:
    day_from: date
    day_to: date
    mrr: Decimal
    mrr_reporting: Decimal | None


class IndependentMrr:
    """Per subscription, its daily MRR as canonical runs; per account and month end, its MRR."""

    def __init__(self, engine: sa.Engine, site: str):
        folder = mappings_dir()
        fx = yaml.safe_load(open(folder / "fx.yaml"))
        opts = yaml.safe_load(open(folder / "mrr.yaml"))
        self.rates = {k.upper(): Decimal(str(v)) for k, v in fx["rates"].items()}
        self.reporting_currency = str(fx["reporting_currency"]).upper()
        days_per_month = Fraction(Decimal(str(opts["days_per_month"])))
        plans = {p["id"]: p for p in _raw(engine, "stg_plans", site)}
        plans_by_code = {p["code"]: p for p in plans.values()}
        usage = {a["id"] for a in _raw(engine, "stg_plan_add_ons", site)
                 if a.get("add_on_type") == "usage" or a.get("usage_type")}
        invoices = {i["id"]: i for i in _raw(engine, "stg_invoices", site)}
        bad_invoices = {i["id"] for i in invoices.values() if i.get("state") in opts["excluded_invoice_states"]}
        self.subs = {s["id"]: s for s in _raw(engine, "stg_subscriptions", site)}

        items = []
        recurring = [li for li in _raw(engine, "stg_line_items", site)
                     if not (li.get("origin") not in opts["recurring_origins"] or not li.get("start_date")
                             or not li.get("end_date") or li.get("refund") or not li.get("subscription_id")
                             or li.get("state") == "pending" or li.get("invoice_id") in bad_invoices
                             or li.get("add_on_id") in usage)]
        # Full-price lines: full-period charges by (configuration, start), the latest created wins.
        renewals: dict[tuple, dict] = {}
        for li in sorted(recurring, key=lambda x: _moment(x["created_at"])):
            rate = li.get("proration_rate")
            if li["type"] != "credit" and not (rate is not None and 0 < rate < 1):
                renewals[(*self._configuration(li), _moment(li["start_date"]))] = li
        # A fixed-amount coupon's amount is spread over the recurring items of one invoice in
        # proportion to their full-period gross: a subscription's own coupon over its items of one
        # type and service period; an account coupon over all the invoice's items of one type that
        # take the account's terms. Cumulative shares in line item id order, each rounded half up to
        # the hundredth of a micro-unit, so the shares add up to the amount exactly.
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for li in recurring:
            groups[self._invoice_group(li, invoices)].append(li)
        shares: dict[str, Decimal] = {}
        for members in groups.values():
            total = sum((_full_period_gross(li) for li in members), Decimal(0))
            fixed = _coupon(self.subs[members[0]["subscription_id"]], invoices.get(members[0].get("invoice_id")))[1]
            through_before, running = Decimal(0), Decimal(0)
            for li in sorted(members, key=lambda x: x["id"]):
                running += _full_period_gross(li)
                through = (fixed * running / total).quantize(HUNDREDTH_MICRO, rounding=ROUND_HALF_UP) \
                    if fixed is not None and total > 0 else Decimal(0)
                shares[li["id"]], through_before = through - through_before, through
        for li in recurring:
            plan = plans.get(li.get("plan_id")) or plans_by_code[li["plan_code"]]
            length = Fraction(plan["interval_length"])
            months = length if plan["interval_unit"] == "months" else length / days_per_month
            sub = self.subs[li["subscription_id"]]
            pct, fixed = _coupon(sub, invoices.get(li.get("invoice_id")))
            full = renewals.get((*self._configuration(li), _moment(li["end_date"]))) if li["type"] != "credit" else None
            full_pct = _coupon(sub, invoices.get(full.get("invoice_id")))[0] if full is not None else None
            full_net = _net_full_period({**full, "tax_inclusive": False}, full_pct) if full is not None else None
            share = shares[li["id"]] if fixed is not None else None
            monthly = Fraction(_net_full_period(li, pct, full_net, share)) / months
            items.append({**li, "_monthly": -monthly if li["type"] == "credit" else monthly})
        self._credit_originals(items)

        deltas: dict[str, dict[date, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
        for li in items:
            sub = self.subs[li["subscription_id"]]
            start, stop = _day(li["start_date"]), _day(li["end_date"])
            for cut in (_day(sub.get("expires_at")), _day(sub.get("paused_at")) if sub["state"] == "paused" else None):
                if cut and cut < stop:
                    stop = cut
            if stop > start:
                deltas[sub["id"]][start] += li["_monthly"]
                deltas[sub["id"]][stop] -= li["_monthly"]
        self.runs = {sid: self._sweep(self.subs[sid]["currency"], d) for sid, d in deltas.items()}
        self.runs = {sid: r for sid, r in self.runs.items() if r}

    def _invoice_group(self, li: dict, invoices: dict) -> tuple:
        """The items a fixed-amount coupon's amount is spread over (above)."""
        sub = self.subs[li["subscription_id"]]
        invoice = invoices.get(li.get("invoice_id"))
        # the account's terms: none of its own, and its invoice lists no redemption of it
        own = _percent_coupon(sub) is not None or _fixed_coupon(sub) is not None or invoice is None or any(
            r.get("subscription_id") == sub["id"] for r in _counted(invoice, True, sub["id"]))
        if not own and (_percent_coupon(invoice, True) is not None or _fixed_coupon(invoice, True) is not None):
            return li.get("invoice_id"), "account", li["type"]
        return li.get("invoice_id"), li["subscription_id"], li["type"], _moment(li["start_date"]), _moment(li["end_date"])

    @staticmethod
    def _configuration(li: dict) -> tuple:
        qty = li.get("quantity_decimal") if isinstance(li.get("quantity_decimal"), str) and li["quantity_decimal"].strip() \
            else float(abs(li["quantity"])) if li.get("quantity") is not None else None
        return li["subscription_id"], li.get("plan_code") or "", li.get("add_on_code") or "", str(qty)

    def _credit_originals(self, items: list[dict]) -> None:
        """A credit counts as exactly minus the charge it credits: the latest charge created before
        it for the same subscription, plan, add-on, quantity and period end, covering its start."""
        def key(li):
            return (*self._configuration(li), _moment(li["end_date"]))
        charges = defaultdict(list)
        for li in items:
            if li["type"] != "credit":
                charges[key(li)].append(li)
        for li in items:
            if li["type"] != "credit":
                continue
            before = [c for c in charges.get(key(li), []) if _moment(c["created_at"]) < _moment(li["created_at"])]
            if before:
                latest = max(before, key=lambda c: _moment(c["created_at"]))
                if _moment(latest["start_date"]) <= _moment(li["start_date"]):
                    li["_monthly"] = -latest["_monthly"]

    def _sweep(self, currency: str, deltas: dict[date, Fraction]) -> list[Run]:
        out: list[Run] = []
        value = Fraction(0)
        days = sorted(deltas)
        for day, nxt in zip(days, days[1:]):
            value += deltas[day]
            mrr = round_fraction(value, currency)
            if mrr == 0:
                continue
            rate = self.rates.get(currency.upper())
            reporting = round_fraction(Fraction(mrr) * Fraction(rate), self.reporting_currency) if rate is not None else None
            if out and out[-1].day_to == day and out[-1].mrr == mrr:
                out[-1].day_to = nxt
            else:
                out.append(Run(day, nxt, mrr, reporting))
        return out

    def subscription_mrr(self, sid: str, day: date) -> Decimal:
        return next((r.mrr for r in self.runs.get(sid, []) if r.day_from <= day < r.day_to), Decimal(0))

    def account_mrr_at(self, day: date) -> dict[str, Decimal]:
        accounts: dict[str, Decimal] = defaultdict(Decimal)
        for sid, runs in self.runs.items():
            for r in runs:
                if r.day_from <= day < r.day_to and r.mrr_reporting is not None:
                    accounts[self.subs[sid]["account"]["id"]] += r.mrr_reporting
        return {a: v for a, v in accounts.items() if v != 0}

    def account_mrr_at_month_ends(self, first: date, last: date) -> dict[date, dict[str, Decimal]]:
        return {e: self.account_mrr_at(e) for e in month_ends(first, last)}


def account_mrr_at_month_ends(engine: sa.Engine, site: str, first: date, last: date) -> dict[date, dict[str, Decimal]]:
    return IndependentMrr(engine, site).account_mrr_at_month_ends(first, last)


def movements(mrr_by_month_end: dict[date, dict[str, Decimal]]) -> dict[tuple[date, str], tuple[Decimal, Decimal, str]]:
    """(month start, account) -> (opening, closing, type), the dbt mrr-playbook way with ChartMogul's names."""
    out, previous, ever = {}, {}, set()
    for end in sorted(mrr_by_month_end):
        current = mrr_by_month_end[end]
        for account in set(previous) | set(current):
            o, c = previous.get(account, Decimal(0)), current.get(account, Decimal(0))
            if o > 0 and c > 0:
                kind = "expansion" if c > o else "contraction" if c < o else "unchanged"
            elif c > 0:
                kind = "reactivation" if account in ever else "new"
            else:
                kind = "churn"
            out[(end.replace(day=1), account)] = (o, c, kind)
        ever |= {a for a, v in current.items() if v > 0}
        previous = current
    return out
