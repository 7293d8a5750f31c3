"""What to read from Recurly: one declaration per resource, read by the one generic extractor.

A declaration says where a resource lives (`path`), how its records are keyed (`primary_key`,
always together with the site), which field the incremental window filters on (`cursor`), and
which fields become typed staging columns. Everything else stays in the raw JSON column, so a
field Recurly adds tomorrow is kept, never an error.

Column `path` is a dotted path into the API object ("billing_info.payment_method.exp_year");
`type` is one of: string, integer, money (an amount: exact decimal, staging/rows.py), number (a
rate or other measure: a double), boolean, timestamp (ISO-8601 UTC), json (kept as JSON text:
arrays, objects).

`snapshot` marks the fields whose changes matter downstream (states, plan, amounts, quantity,
dates): a change in any of them appends a row to the resource's snapshot table, so lifecycle
events can be derived between runs.

The staging column names declared here are the contract between extraction and transform:
add columns freely, never rename one without changing every reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    path: str
    type: str = "string"
    snapshot: bool = False


@dataclass(frozen=True)
class Resource:
    name: str                      # staging table stg_<name>, snapshot table snap_<name>
    path: str                      # site-level list endpoint, or a child path with {parent_id}
    columns: tuple[Column, ...]
    primary_key: str = "id"
    cursor: str = "updated_at"     # the sort field the incremental window filters on
    parent: str | None = None      # a child resource read once per parent record (plan add-ons)
    parent_key: str | None = None  # the child's field naming its parent, filled in when absent
    list_params: dict = field(default_factory=dict)  # extra fixed query parameters
    # Staging indexes besides the key, each (columns...) after the site, for the warehouse's
    # readers (e.g. a delivery looking up an invoice's line items).
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def table(self) -> str:
        return f"stg_{self.name}"

    @property
    def snapshot_table(self) -> str:
        return f"snap_{self.name}"

    @property
    def snapshot_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.snapshot)


def _c(name: str, type_: str = "string", path: str | None = None, snapshot: bool = False) -> Column:
    return Column(name=name, path=path or name, type=type_, snapshot=snapshot)


_TIMES = (_c("created_at", "timestamp"), _c("updated_at", "timestamp"))

ACCOUNTS = Resource(
    name="accounts",
    path="/accounts",
    columns=(
        _c("id"),
        _c("code"),
        _c("state", snapshot=True),
        _c("email"),
        _c("first_name"),
        _c("last_name"),
        _c("company"),
        _c("preferred_locale"),
        _c("parent_account_id"),
        _c("bill_to"),
        _c("has_live_subscription", "boolean"),
        _c("has_active_subscription", "boolean"),
        _c("has_future_subscription", "boolean"),
        _c("has_canceled_subscription", "boolean"),
        _c("has_paused_subscription", "boolean"),
        _c("has_past_due_invoice", "boolean", snapshot=True),
        _c("billing_info_id", path="billing_info.id"),
        _c("billing_info_valid", "boolean", path="billing_info.valid"),
        _c("card_type", path="billing_info.payment_method.card_type"),
        _c("card_exp_month", "integer", path="billing_info.payment_method.exp_month", snapshot=True),
        _c("card_exp_year", "integer", path="billing_info.payment_method.exp_year", snapshot=True),
        _c("country", path="address.country"),
        _c("custom_fields", "json"),
        *_TIMES,
        _c("deleted_at", "timestamp", snapshot=True),
    ),
)

SUBSCRIPTIONS = Resource(
    name="subscriptions",
    path="/subscriptions",
    columns=(
        _c("id"),
        _c("uuid"),
        _c("account_id", path="account.id"),
        _c("account_code", path="account.code"),
        _c("plan_id", path="plan.id", snapshot=True),
        _c("plan_code", path="plan.code", snapshot=True),
        _c("plan_name", path="plan.name"),
        _c("state", snapshot=True),
        _c("currency"),
        _c("unit_amount", "money", snapshot=True),
        _c("quantity", "integer", snapshot=True),
        _c("add_ons", "json", snapshot=True),
        _c("add_ons_total", "money", snapshot=True),
        _c("subtotal", "money", snapshot=True),
        _c("tax", "money"),
        _c("total", "money"),
        _c("coupon_redemptions", "json"),
        _c("pending_change", "json"),
        _c("collection_method"),
        _c("auto_renew", "boolean", snapshot=True),
        _c("total_billing_cycles", "integer"),
        _c("remaining_billing_cycles", "integer"),
        _c("current_period_started_at", "timestamp", snapshot=True),
        _c("current_period_ends_at", "timestamp", snapshot=True),
        _c("current_term_started_at", "timestamp"),
        _c("current_term_ends_at", "timestamp"),
        _c("trial_started_at", "timestamp"),
        _c("trial_ends_at", "timestamp", snapshot=True),
        _c("activated_at", "timestamp"),
        _c("converted_at", "timestamp"),
        _c("paused_at", "timestamp", snapshot=True),
        _c("remaining_pause_cycles", "integer"),
        _c("canceled_at", "timestamp", snapshot=True),
        _c("expires_at", "timestamp", snapshot=True),
        _c("expiration_reason", snapshot=True),
        _c("custom_fields", "json"),
        *_TIMES,
    ),
)

INVOICES = Resource(
    name="invoices",
    path="/invoices",
    columns=(
        _c("id"),
        _c("number"),
        _c("account_id", path="account.id"),
        _c("account_code", path="account.code"),
        _c("type"),
        _c("origin"),
        _c("state", snapshot=True),
        _c("currency"),
        _c("subscription_ids", "json"),
        _c("previous_invoice_id"),
        _c("collection_method"),
        _c("net_terms", "integer"),
        _c("discount", "money"),
        _c("subtotal", "money"),
        _c("tax", "money"),
        _c("total", "money", snapshot=True),
        _c("paid", "money", snapshot=True),
        _c("balance", "money", snapshot=True),
        _c("refundable_amount", "money"),
        _c("has_more_line_items", "boolean"),
        # The redemptions applied to the invoice, read only for the invoices MRR needs them of
        # (extract/completion.py); absent (null) otherwise.
        _c("coupon_redemptions", "json"),
        _c("dunning_events_sent", "integer"),
        _c("due_at", "timestamp", snapshot=True),
        _c("closed_at", "timestamp", snapshot=True),
        *_TIMES,
    ),
)

LINE_ITEMS = Resource(
    name="line_items",
    path="/line_items",
    columns=(
        _c("id"),
        _c("uuid"),
        _c("account_id", path="account.id"),
        _c("invoice_id"),
        _c("invoice_number"),
        _c("subscription_id"),
        _c("plan_id"),
        _c("plan_code"),
        _c("add_on_id"),
        _c("add_on_code"),
        _c("type"),
        _c("state", snapshot=True),
        _c("origin"),
        _c("legacy_category"),
        _c("credit_reason_code"),
        _c("original_line_item_invoice_id"),
        _c("previous_line_item_id"),
        _c("currency"),
        _c("unit_amount", "money"),
        _c("unit_amount_decimal"),          # decimal text; replaces unit_amount when set
        _c("quantity", "integer"),
        _c("quantity_decimal"),             # decimal text; replaces quantity when set
        _c("subtotal", "money", snapshot=True),
        _c("discount", "money"),
        _c("tax", "money"),
        _c("tax_inclusive", "boolean"),
        _c("tax_rate", "number", path="tax_info.rate"),
        _c("amount", "money", snapshot=True),
        _c("proration_rate", "number"),
        _c("refund", "boolean"),
        _c("refunded_quantity", "integer"),
        _c("description"),
        _c("start_date", "timestamp"),
        _c("end_date", "timestamp"),
        *_TIMES,
    ),
    indexes=(("invoice_id", "id"),),  # an invoice's line items, in order (destinations' Line Items)
)

TRANSACTIONS = Resource(
    name="transactions",
    path="/transactions",
    columns=(
        _c("id"),
        _c("uuid"),
        _c("original_transaction_id"),
        _c("account_id", path="account.id"),
        _c("invoice_id", path="invoice.id"),
        _c("invoice_number", path="invoice.number"),
        _c("subscription_ids", "json"),
        _c("type"),
        _c("origin"),
        _c("status", snapshot=True),
        _c("success", "boolean", snapshot=True),
        _c("refunded", "boolean", snapshot=True),
        _c("currency"),
        _c("amount", "money"),
        _c("collection_method"),
        _c("status_code"),
        _c("status_message"),
        _c("collected_at", "timestamp"),
        _c("voided_at", "timestamp"),
        *_TIMES,
    ),
)

PLANS = Resource(
    name="plans",
    path="/plans",
    columns=(
        _c("id"),
        _c("code"),
        _c("name", snapshot=True),
        _c("state", snapshot=True),
        _c("interval_unit", snapshot=True),
        _c("interval_length", "integer", snapshot=True),
        _c("trial_unit"),
        _c("trial_length", "integer"),
        _c("total_billing_cycles", "integer"),
        _c("auto_renew", "boolean"),
        _c("pricing_model"),
        _c("currencies", "json", snapshot=True),
        *_TIMES,
        _c("deleted_at", "timestamp"),
    ),
)

PLAN_ADD_ONS = Resource(
    name="plan_add_ons",
    path="/plans/{parent_id}/add_ons",
    parent="plans",
    parent_key="plan_id",
    columns=(
        _c("id"),
        _c("plan_id"),
        _c("code"),
        _c("name"),
        _c("state", snapshot=True),
        _c("add_on_type"),
        _c("usage_type"),
        _c("optional", "boolean"),
        _c("default_quantity", "integer"),
        _c("currencies", "json", snapshot=True),
        *_TIMES,
        _c("deleted_at", "timestamp"),
    ),
)

RESOURCES: dict[str, Resource] = {
    r.name: r for r in (ACCOUNTS, SUBSCRIPTIONS, INVOICES, LINE_ITEMS, TRANSACTIONS, PLANS, PLAN_ADD_ONS)
}


def get(name: str) -> Resource:
    try:
        return RESOURCES[name]
    except KeyError:
        raise KeyError(f"unknown Recurly resource {name!r}; known: {', '.join(RESOURCES)}") from None
