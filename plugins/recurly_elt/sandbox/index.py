"""Read-only indexes over a simulation's objects, rebuilt once per simulation version.

The server never serialises JSON per request: each object's bytes are cached, keyed by
(id, updated_at), so after a clock advance only changed objects are serialised again, and a
page is a join of cached bytes. Per resource the index keeps views sorted by (created_at, id)
and (updated_at, id), built on first use; a page is a bisect to the cursor position plus a
walk. Per-parent views (an account's invoices, an invoice's line items, a plan's add-ons, an account's
coupon redemptions) are built on first use too; an invoice's coupon redemptions are looked up by id
from the simulation's map of the redemptions applied to each invoice.

Reusing bytes by (id, updated_at) relies on the generator's contract that `updated_at` moves
whenever an object changes; that is also what makes an incremental read by updated_at correct.

A SiteIndex is immutable once built: requests hold a reference to one, an advance builds the
next and swaps it in, so a page is always served from one consistent version.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from recurly_elt.sandbox.filters import FACET_FIELDS
from recurly_elt.sandbox.timestamps import to_micros

# resource -> (path prefixes of its alternative ids, e.g. /accounts/code-bob) -> field
ALIASES: dict[str, dict[str, str]] = {
    "accounts": {"code-": "code"},
    "plans": {"code-": "code"},
    "subscriptions": {"uuid-": "uuid"},
    "invoices": {"number-": "number"},
    "line_items": {"uuid-": "uuid"},
    "transactions": {"uuid-": "uuid"},
    "add_ons": {},  # add-on codes are unique within a plan only: resolved in the plan's scope
    "coupon_redemptions": {},  # served per account and per invoice only
}
RESOURCES = tuple(ALIASES)
# Invoices embed at most this many line items unless configured (has_more_line_items says the rest).
DEFAULT_EMBEDDED_LINE_ITEMS = 10
# A timestamp key above every real id, for inclusive end bounds: (end, MAX_ID) sorts after (end, any id).
MAX_ID = "\U0010ffff"


def dumps(value) -> bytes:
    """Compact JSON bytes; the generator's objects hold JSON types only (timestamps are strings)."""
    return json.dumps(value, separators=(",", ":")).encode()


def _micros_or_none(value) -> int | None:
    return None if value is None else to_micros(value)


class Entry:
    """One object version: its id, sort keys, serialised bytes and filter facets."""

    __slots__ = ("id", "created", "updated", "body", "facets")

    def __init__(self, id: str, created: int, updated: int, body: bytes, facets: dict):
        self.id, self.created, self.updated, self.body, self.facets = id, created, updated, body, facets


def make_entry(resource: str, obj: dict, embedded_line_items: int) -> Entry:
    if resource == "invoices" and isinstance(obj.get("line_items"), list):
        items = obj["line_items"]
        obj = {**obj, "line_items": items[:embedded_line_items],
               "has_more_line_items": len(items) > embedded_line_items}
    facets = {}
    for name in FACET_FIELDS.get(resource, ()):
        value = obj.get(name)
        facets[name] = _micros_or_none(value) if name.endswith("_at") else value
    account = obj.get("account")
    if isinstance(account, dict):
        facets["account_id"] = account.get("id")
    created = to_micros(obj["created_at"])
    updated = to_micros(obj.get("updated_at") or obj["created_at"])
    return Entry(obj["id"], created, updated, dumps(obj), facets)


class SortedView:
    """Entries in (sort value, id) order for each sort field, built on first use."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries

    @cached_property
    def created_at(self) -> tuple[list[tuple[int, str]], list[Entry]]:
        ordered = sorted(self.entries, key=lambda e: (e.created, e.id))
        return [(e.created, e.id) for e in ordered], ordered

    @cached_property
    def updated_at(self) -> tuple[list[tuple[int, str]], list[Entry]]:
        ordered = sorted(self.entries, key=lambda e: (e.updated, e.id))
        return [(e.updated, e.id) for e in ordered], ordered

    def sorted_by(self, sort: str) -> tuple[list[tuple[int, str]], list[Entry]]:
        return self.updated_at if sort == "updated_at" else self.created_at

    def span(self, sort: str, begin: int | None, end: int | None) -> tuple[int, int]:
        """Positions [lo, hi) of the entries whose sort value is in [begin, end]."""
        keys, _ = self.sorted_by(sort)
        lo = 0 if begin is None else bisect_left(keys, (begin, ""))
        hi = len(keys) if end is None else bisect_right(keys, (end, MAX_ID))
        return lo, hi


class ResourceIndex:
    def __init__(self, name: str, entries: dict[str, Entry], aliases: dict[str, str]):
        self.name = name
        self.by_id = entries
        self.aliases = aliases  # "code-bob" -> id
        self.view = SortedView(list(entries.values()))
        self._scopes: dict[tuple[str, str], SortedView] = {}
        self._groups: dict[str, dict[str, list[Entry]]] = {}
        self._lock = threading.Lock()

    def resolve(self, ident: str) -> Entry | None:
        entry = self.by_id.get(ident)
        if entry is None and ident in self.aliases:
            entry = self.by_id.get(self.aliases[ident])
        return entry

    def scoped(self, field: str, parent_id: str) -> SortedView:
        """The entries whose facet `field` (account_id, invoice_id, plan_id) is parent_id."""
        key = (field, parent_id)
        view = self._scopes.get(key)
        if view is None:
            with self._lock:
                groups = self._groups.get(field)
                if groups is None:
                    groups = {}
                    for entry in self.by_id.values():
                        groups.setdefault(entry.facets.get(field), []).append(entry)
                    self._groups[field] = groups
                view = self._scopes[key] = SortedView(groups.get(parent_id, []))
        return view


@dataclass
class SiteIndex:
    version: int
    now: int  # the sandbox clock, microseconds since the epoch
    resources: dict[str, ResourceIndex]
    subscriber_accounts: frozenset[str]
    past_due_accounts: frozenset[str]
    # invoice id -> ids of the coupon redemptions applied to it: the simulation's own map, shared,
    # not copied (an invoice's entry is written once, when it is issued, before any index has it)
    invoice_redemptions: dict[str, tuple[str, ...]]

    def applied_redemptions(self, invoice_id: str) -> SortedView:
        """The coupon redemptions applied to an invoice (its entries of this version)."""
        by_id = self.resources["coupon_redemptions"].by_id
        return SortedView([by_id[r] for r in self.invoice_redemptions.get(invoice_id, ()) if r in by_id])

    def counts(self) -> dict[str, int]:
        return {name: len(r.by_id) for name, r in self.resources.items()}


class EntryCache:
    """Serialised object versions kept across rebuilds, keyed by (resource, id, updated_at)."""

    def __init__(self, embedded_line_items: int = DEFAULT_EMBEDDED_LINE_ITEMS):
        self.embedded_line_items = embedded_line_items
        self._entries: dict[str, dict[tuple[str, str], Entry]] = {}

    def build(self, version: int, now: datetime, objects: dict[str, dict[str, dict]],
              invoice_redemptions: dict[str, tuple[str, ...]] | None = None) -> SiteIndex:
        resources = {}
        for name in RESOURCES:
            old = self._entries.get(name, {})
            new: dict[tuple[str, str], Entry] = {}
            by_id: dict[str, Entry] = {}
            aliases: dict[str, str] = {}
            alias_fields = ALIASES[name].items()
            for obj_id, obj in objects.get(name, {}).items():
                key = (obj_id, obj.get("updated_at") or obj.get("created_at"))
                entry = old.get(key)
                if entry is None:
                    entry = make_entry(name, obj, self.embedded_line_items)
                new[key] = by_id[obj_id] = entry
                for prefix, field in alias_fields:
                    if obj.get(field) is not None:
                        aliases[f"{prefix}{obj[field]}"] = obj_id
            self._entries[name] = new
            resources[name] = ResourceIndex(name, by_id, aliases)
        subscribers = frozenset(
            e.facets.get("account_id") for e in resources["subscriptions"].by_id.values()
            if e.facets.get("state") in ("active", "canceled", "future"))
        past_due = frozenset(
            e.facets.get("account_id") for e in resources["invoices"].by_id.values()
            if e.facets.get("state") == "past_due")
        return SiteIndex(version, to_micros(now), resources, subscribers, past_due, invoice_redemptions or {})
