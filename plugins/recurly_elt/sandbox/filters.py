"""The `state` / `type` / ... filters of each list endpoint, as the Recurly OpenAPI spec lists them.

One table: resource -> {query parameter: Filter}. A filter names the values the spec allows
(None = any text) and a predicate over an index entry's facets (the few fields filters read,
extracted once per object version, see index.py). Filters that depend on other resources
(an account is a `subscriber`, has a `past_due` invoice) read sets the index derives per version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

TRUE_ONLY = ("true",)
ACTIVE_STATES = ("active", "inactive")


@dataclass(frozen=True)
class Filter:
    choices: tuple[str, ...] | None
    match: Callable  # (entry, value, site_index) -> bool


def _equals(field: str) -> Filter:
    return Filter(None, lambda e, v, site: e.facets.get(field) == v)


def _choice(field: str, choices: tuple[str, ...]) -> Filter:
    return Filter(choices, lambda e, v, site: e.facets.get(field) == v)


def _email(entry, value, site) -> bool:
    email = entry.facets.get("email")
    return email in (None, "") if value == "" else email == value


def _subscriber(entry, value, site) -> bool:
    return (entry.id in site.subscriber_accounts) == (value == "true")


def _in_trial(entry, site) -> bool:
    started, ends = entry.facets.get("trial_started_at"), entry.facets.get("trial_ends_at")
    return started is not None and ends is not None and started < site.now < ends


def _subscription_state(entry, value, site) -> bool:
    # in_trial and live are computed, as the spec describes them, against the sandbox clock.
    if value == "in_trial":
        return _in_trial(entry, site)
    if value == "live":
        return entry.facets.get("state") in ("active", "canceled", "future") or _in_trial(entry, site)
    return entry.facets.get("state") == value


def _invoice_type(entry, value, site) -> bool:
    kind = entry.facets.get("type")
    return kind in ("charge", "credit") if value == "non-legacy" else kind == value


def _transaction_type(entry, value, site) -> bool:
    kind = entry.facets.get("type")
    return kind in ("purchase", "capture") if value == "payment" else kind == value


# A line item is "original" unless it is a refund (a credit pointing back at an original line item).
_original = Filter(TRUE_ONLY, lambda e, v, site: not e.facets.get("refund"))

FILTERS: dict[str, dict[str, Filter]] = {
    "accounts": {
        "email": Filter(None, _email),
        "subscriber": Filter(("true", "false"), _subscriber),
        "past_due": Filter(TRUE_ONLY, lambda e, v, site: e.id in site.past_due_accounts),
    },
    "subscriptions": {
        "state": Filter(("active", "canceled", "expired", "future", "in_trial", "live"), _subscription_state),
    },
    "invoices": {
        "state": _choice("state", ("pending", "past_due", "paid", "failed")),
        "type": Filter(("charge", "credit", "legacy", "non-legacy"), _invoice_type),
    },
    "line_items": {
        "original": _original,
        "state": _choice("state", ("invoiced", "pending")),
        "type": _choice("type", ("charge", "credit")),
    },
    "transactions": {
        "type": Filter(("authorization", "capture", "payment", "purchase", "refund", "verify"),
                       _transaction_type),
        "success": Filter(TRUE_ONLY, lambda e, v, site: e.facets.get("success") is True),
    },
    "plans": {"state": _choice("state", ACTIVE_STATES)},
    "add_ons": {"state": _choice("state", ACTIVE_STATES)},
    "coupon_redemptions": {"state": _choice("state", ACTIVE_STATES)},
}

# Fields copied into an entry's facets for the filters above (and the parent links of scoped lists).
FACET_FIELDS: dict[str, tuple[str, ...]] = {
    "accounts": ("email",),
    "subscriptions": ("state", "trial_started_at", "trial_ends_at"),
    "invoices": ("state", "type"),
    "line_items": ("state", "type", "refund", "invoice_id"),
    "transactions": ("type", "success"),
    "plans": ("state",),
    "add_ons": ("state", "plan_id", "code"),
    "coupon_redemptions": ("state",),
}
