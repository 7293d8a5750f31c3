"""The site's objects by resource, and the one place where objects are created or changed.

Every creation and update goes through `add`/`touch`, which keep `updated_at` true and record
which objects changed while the clock advances (the counts `SiteSimulation.advance` returns).
"""

from __future__ import annotations

from recurly_elt.sandbox.ids import IdMint

RESOURCES = ("accounts", "subscriptions", "invoices", "line_items", "transactions", "plans", "add_ons",
             "coupon_redemptions")


# Unset fields Recurly sends as an explicit null (its spec declares no field nullable, the API does
# send them): these stay in the objects as None, every other unset field is left out.
NULL_FIELDS = frozenset((
    "username", "preferred_time_zone", "cc_emails", "vat_number", "parent_account_id", "dunning_campaign_id",
    "street2", "geo_code", "po_number", "legacy_category", "previous_line_item_id",
    "original_line_item_invoice_id", "credit_reason_code", "usage_type", "usage_calculation_type",
    "usage_percentage", "measured_unit_id", "external_sku", "setup_fee_accounting_code", "total_billing_cycles",
    "remaining_billing_cycles", "original_transaction_id", "voided_at", "deleted_at", "terms_and_conditions",
    "customer_notes", "gateway_code", "bank_account_authorized_at", "active_invoice_id"))


def compact(obj: dict) -> dict:
    """`obj` as Recurly sends it: the fields of NULL_FIELDS kept as explicit nulls, any other None
    value left out (readers treat a missing field and a null alike)."""
    return {k: v for k, v in obj.items() if v is not None or k in NULL_FIELDS}


def set_field(obj: dict, key: str, value) -> None:
    """Set a field, or remove it when the new value is None (see `compact`)."""
    if value is None:
        obj.pop(key, None)
    else:
        obj[key] = value


class SiteStore:
    def __init__(self, salt: int):
        self.objects: dict[str, dict[str, dict]] = {r: {} for r in RESOURCES}
        self.mint = IdMint(salt)
        # resource -> ids created or updated since tracking started; None while building history
        # (tracking millions of ids nobody asks for would only cost memory).
        self.changed: dict[str, set[str]] | None = None
        # invoice id -> the ids of the coupon redemptions applied to it (set once, when it is issued)
        self.invoice_redemptions: dict[str, tuple[str, ...]] = {}

    def add(self, resource: str, obj: dict) -> dict:
        self.objects[resource][obj["id"]] = obj
        if self.changed is not None:
            self.changed[resource].add(obj["id"])
        return obj

    def applied(self, invoice_id: str, redemption_id: str) -> None:
        """Record that a coupon redemption discounted an invoice (GET /invoices/{id}/coupon_redemptions)."""
        self.invoice_redemptions[invoice_id] = (*self.invoice_redemptions.get(invoice_id, ()), redemption_id)

    def touch(self, resource: str, obj: dict, stamp: str) -> None:
        """Record that `obj` changed at `stamp` (call after changing its fields)."""
        obj["updated_at"] = stamp
        if self.changed is not None:
            self.changed[resource].add(obj["id"])

    def start_tracking(self) -> None:
        self.changed = {r: set() for r in RESOURCES}

    def stop_tracking(self) -> dict[str, int]:
        counts = {r: len(ids) for r, ids in (self.changed or {}).items()}
        self.changed = None
        return counts
