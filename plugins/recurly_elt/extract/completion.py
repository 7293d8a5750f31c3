"""Completing what a list page leaves out, per resource.

Invoices embed at most a few line items; when `has_more_line_items` is true the rest must be read
from `/invoices/{id}/line_items`. The staged invoice then carries its complete `line_items` list in
its raw JSON: the embedded items as the API sent them, then the missing ones in created_at order,
and `has_more_line_items` false, since the staged object is no longer truncated.
Only truncated invoices cost a request, so a day's incremental read stays near its minimum.

Invoices also get the coupon redemptions applied to them (`/invoices/{id}/coupon_redemptions`,
kept in the staged invoice's `coupon_redemptions`), but only where MRR needs a coupon's terms and
staging has none (docs/extraction.md "Coupon redemptions of an invoice"): an invoice with a prorated
recurring line item (origin plan or add_on, a subscription, `proration_rate` strictly between 0 and
1) that carries a discount, of a subscription without lasting coupon terms staged (staging/coupon_terms.py,
the definition the transform reads terms by: terms of `forever` coupons only, since a temporal or
single-use coupon's terms leave staging when it expires, and the invoice is not read again). Which
subscriptions have them is read from staging once, when the read starts, with the recurring
origins of the transform's mrr.yaml.

A completion is declared per resource: the records that need it are found with a decoder that reads
only the fields that say so, just they are decoded into objects and completed (in the extractor's
fetching thread), and every other record stays raw bytes. A resource's completions run in order,
each on the objects the ones before it completed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import msgspec
import sqlalchemy as sa
from urllib.parse import quote

from recurly_elt.recurly.client import PAGE_SIZE, RecurlyClient
from recurly_elt.staging.coupon_terms import lasting_terms
from recurly_elt.staging.rows import decode_object
from recurly_elt.staging.tables import staging_table
from recurly_elt.transform.config import TransformConfig


log = logging.getLogger(__name__)

# Subscriptions named one by one in the rule's warnings about redemptions that do not fit, per read.
MAX_MISFIT_WARNINGS = 20
# Pages one invoice's line item list may take (40,000 line items): a list that goes on is refused.
COMPLETION_MAX_PAGES = 200
# Pages one invoice's coupon redemption list may take (400 redemptions; an invoice has a few):
# a list that goes on is refused (RecurlyUntrustedResponse naming the invoice's path).
REDEMPTION_MAX_PAGES = 2
# The sandbox's resource names -> staging resource names (as_extracted; the transform tests' loader)
SANDBOX_TO_STAGING = {"accounts": "accounts", "subscriptions": "subscriptions", "invoices": "invoices",
                      "line_items": "line_items", "transactions": "transactions", "plans": "plans",
                      "add_ons": "plan_add_ons"}
# What the coupon-redemptions rule reads of an invoice's raw bytes: its line items' four fields
# (an envelope of them, should an API version embed one, is read whole).
_LineFields = msgspec.defstruct("LineFields", [("origin", Any, None), ("subscription_id", Any, None),
                                               ("proration_rate", Any, None), ("discount", Any, None)])
COUPON_FIELDS = msgspec.defstruct("CouponFields", [("line_items", list[_LineFields] | dict | None, None)])


def _path(invoice: dict, child: str) -> str:
    return f"/invoices/{quote(str(invoice.get('id') or ''), safe='')}/{child}"  # an id is not a path


def complete_invoice_line_items(client: RecurlyClient, invoices: list[dict], context: object = None) -> int:
    """Replace truncated embedded line items with the full list; returns the requests spent."""
    requests = 0
    for invoice in invoices:
        if not invoice.get("has_more_line_items"):
            continue
        embedded = invoice.get("line_items")
        envelope = isinstance(embedded, dict)  # a list envelope, should an API version embed one
        items: list[dict] = list((embedded.get("data") if envelope else embedded) or [])
        seen = {item.get("id") for item in items}
        params = {"limit": PAGE_SIZE, "sort": "created_at", "order": "asc"}
        for page in client.pages(_path(invoice, "line_items"), params, max_pages=COMPLETION_MAX_PAGES,
                                 bound="the most one invoice's line items may take"):
            items.extend(item for item in map(decode_object, page.records) if item.get("id") not in seen)
            requests += 1
        invoice["line_items"] = {**embedded, "data": items, "has_more": False, "next": None} if envelope else items
        invoice["has_more_line_items"] = False
    return requests


def _get(record: Any, key: str) -> Any:
    """A field of an object (a dict) or of the decoder's struct (COUPON_FIELDS)."""
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def _line_items(invoice: Any) -> list:
    embedded = _get(invoice, "line_items")
    embedded = embedded.get("data") if isinstance(embedded, dict) else embedded
    return embedded if isinstance(embedded, list) else []


def _number(value: Any) -> float | None:
    """A JSON number (or its text) as a float, for a test against zero or one only; else None."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class CouponRule:
    """What the coupon-redemptions rule needs besides an invoice: the subscriptions with lasting
    coupon terms staged (coupon_terms.lasting_terms), and the line item origins that bill a plan or add-on (mrr.yaml recurring_origins)."""
    with_terms: frozenset[str]
    origins: tuple[str, ...]


def needs_coupon_redemptions(invoice: Any, rule: CouponRule) -> bool:
    """True when the invoice (an object, or its COUPON_FIELDS) has a prorated recurring line item
    carrying a discount whose subscription has no lasting coupon terms staged."""
    for item in _line_items(invoice):
        if not isinstance(item, (dict, _LineFields)) or _get(item, "proration_rate") is None:
            continue
        rate, sub = _number(_get(item, "proration_rate")), _get(item, "subscription_id")
        if rate is not None and 0 < rate < 1 and _get(item, "origin") in rule.origins \
                and isinstance(sub, str) and sub and sub not in rule.with_terms and _number(_get(item, "discount")):
            return True
    return False


def coupon_rule(engine: sa.Engine, site: str) -> CouponRule:
    """The rule's context for a read of the site: its staged subscriptions whose redemptions give
    coupon terms that cannot expire (staging/coupon_terms.py `lasting_terms`), read once. A
    subscription whose redemptions do not fit the API's shape counts as without terms (its
    invoices' redemptions are read) and is named in a warning with what is wrong."""
    table = staging_table("subscriptions")
    text = table.c.coupon_redemptions
    with_terms, misfits = set(), []
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.id, text, table.c.currency).where(
            table.c.site == site, text.is_not(None), text.not_in(("", "[]", "null"))))
        for sid, raw, currency in rows:
            lasting, misfit = lasting_terms(raw, currency)
            if lasting:
                with_terms.add(sid)
            elif misfit is not None:
                misfits.append((sid, misfit))
    for sid, misfit in misfits[:MAX_MISFIT_WARNINGS]:
        log.warning("%s/subscriptions: record %r: %s; counted as without coupon terms", site, sid, misfit)
    if len(misfits) > MAX_MISFIT_WARNINGS:
        log.warning("%s/subscriptions: %d more subscriptions whose coupon_redemptions do not fit (first ids: %s)",
                    site, len(misfits) - MAX_MISFIT_WARNINGS, [s for s, _ in misfits[MAX_MISFIT_WARNINGS:][:20]])
    return CouponRule(frozenset(with_terms), TransformConfig.load().recurring_origins)


def as_extracted(objects: Mapping[str, Mapping[str, dict]], applied: Mapping[str, Sequence[str]]) -> dict[str, list[dict]]:
    """A source holding every object (the sandbox simulation's `objects`, with `applied`: its
    invoice_redemptions) as the extraction stages it, by staging resource: invoices carry the
    coupon redemptions applied to them where `needs_coupon_redemptions` names them (against the
    subscriptions staged with them); redemptions are no staging table of their own."""
    redemptions = objects.get("coupon_redemptions") or {}
    rule = CouponRule(frozenset(s["id"] for s in (objects.get("subscriptions") or {}).values()
                                if lasting_terms(json.dumps(s.get("coupon_redemptions")), s.get("currency"))[0]),
                      TransformConfig.load().recurring_origins)
    out = {}
    for name, objs in objects.items():
        if name == "coupon_redemptions":
            continue
        values = list(objs.values())
        if name == "invoices":
            values = [{**i, "coupon_redemptions": [redemptions[r] for r in applied.get(i["id"], ())]}
                      if needs_coupon_redemptions(i, rule) else i for i in values]
        out[SANDBOX_TO_STAGING.get(name, name)] = values
    return out


def complete_invoice_coupon_redemptions(client: RecurlyClient, invoices: list[dict], context: object = None) -> int:
    """Add the redemptions applied to each invoice as its `coupon_redemptions`; returns the requests spent."""
    requests = 0
    for invoice in invoices:
        redemptions: list[dict] = []
        params = {"limit": PAGE_SIZE, "sort": "created_at", "order": "asc"}
        for page in client.pages(_path(invoice, "coupon_redemptions"), params, max_pages=REDEMPTION_MAX_PAGES,
                                 bound="the most one invoice's coupon redemptions may take"):
            redemptions.extend(map(decode_object, page.records))  # amounts as Decimal
            requests += 1
        invoice["coupon_redemptions"] = redemptions
    return requests


@dataclass(frozen=True)
class Completion:
    """Records whose boolean `flag` field is true are completed by `complete`; or, with `needs`, the
    records `needs(record as a dict, context)` names, where `prepare(engine, site)` makes the context
    once per read and `fields` (a msgspec struct) is what `needs` reads of a record's bytes."""
    complete: Callable[[RecurlyClient, list[dict], object], int]  # completes objects in place, returns requests
    flag: str | None = None
    needs: Callable[[Any, object], bool] | None = None
    fields: type | None = None
    prepare: Callable[[sa.Engine, str], object] | None = None

    @cached_property
    def _decoder(self) -> msgspec.json.Decoder:
        if self.flag is not None:
            struct = msgspec.defstruct("CompletionFlag", [("flag", bool | None, None)], rename={"flag": self.flag})
        else:
            struct = self.fields
        return msgspec.json.Decoder(struct, strict=False)

    def context(self, engine: sa.Engine, site: str) -> object:
        return self.prepare(engine, site) if self.prepare is not None else None

    def _wanted(self, record: Any, context: object) -> bool:
        """`record`: an object (a dict) or the decoder's struct of the raw bytes."""
        if self.flag is None:
            return self.needs(record, context)
        return record.get(self.flag) is True if isinstance(record, dict) else bool(record.flag)

    def complete_page(self, client: RecurlyClient, records: Sequence[bytes], context: object = None,
                      completed: dict[int, dict] | None = None) -> dict[int, dict]:
        """Complete the records of a page that need it: {position in the page: completed object}.
        `completed`: the objects earlier completions made of some records (read instead of the bytes)."""
        completed = completed or {}
        flagged = {}
        for at, raw in enumerate(records):
            earlier = completed.get(at)
            try:
                if earlier is not None:
                    if self._wanted(earlier, context):
                        flagged[at] = earlier
                elif self._wanted(self._decoder.decode(raw), context):
                    flagged[at] = decode_object(raw)  # amounts as Decimal (staging/rows.py)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue  # a record the rules will refuse (quarantined by its conversion): nothing to complete
        flagged = {at: obj for at, obj in flagged.items() if isinstance(obj, dict) and obj.get("id")}
        if flagged:
            self.complete(client, list(flagged.values()), context)
        return flagged


COMPLETIONS: dict[str, tuple[Completion, ...]] = {
    "invoices": (
        Completion(complete_invoice_line_items, flag="has_more_line_items"),
        Completion(complete_invoice_coupon_redemptions, needs=needs_coupon_redemptions, fields=COUPON_FIELDS,
                   prepare=coupon_rule),
    ),
}
