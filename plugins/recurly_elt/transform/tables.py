"""The transform's output tables (the marts), one declaration each.

Keys make every write idempotent: a run replaces exactly the rows of its site and date range
(store.py). Money is in the reporting currency unless the column says native.
"""

from __future__ import annotations

import sqlalchemy as sa

METADATA = sa.MetaData()

# The health dimensions with a score column (`<name>_score`); health.yaml may use these.
DIMENSIONS = ("billing", "growth", "retention")

_number = lambda: sa.Numeric(20, 6, asdecimal=False)  # noqa: E731


def _money(name: str, **kw) -> sa.Column:
    """A money column: frames carry it as int64 micro-units (transform/money.py); the store writes
    it as an exact decimal."""
    return sa.Column(name, _number(), info={"money": True}, **kw)


def _t(name: str, *cols: sa.Column, **kw) -> sa.Table:
    """A keyed output table. On SQLite it is stored WITHOUT ROWID, clustered on its key: a bulk
    insert in key order then appends to one B-tree instead of a rowid table plus a key index."""
    return sa.Table(name, METADATA, *cols, sqlite_with_rowid=False, **kw)


def _pk(name: str, type_=sa.Text) -> sa.Column:
    return sa.Column(name, type_(), primary_key=True, nullable=False)


MRR_SUBSCRIPTION_RUNS = _t(
    "mrr_subscription_runs",
    _pk("site"), _pk("subscription_id"), _pk("day_from", sa.Date),
    sa.Column("day_to", sa.Date(), nullable=False),  # exclusive
    sa.Column("account_id", sa.Text()), sa.Column("currency", sa.Text()),
    _money("mrr", nullable=False),        # native currency
    _money("mrr_reporting"),              # NULL: no FX rate (quarantined)
    sa.Column("reporting_currency", sa.Text()),
)

MRR_ACCOUNT_RUNS = _t(
    "mrr_account_runs",
    _pk("site"), _pk("account_id"), _pk("day_from", sa.Date),
    sa.Column("day_to", sa.Date(), nullable=False),
    _money("mrr", nullable=False),
    sa.Column("currency", sa.Text()),  # the reporting currency
)

MRR_MOVEMENTS = _t(
    "mrr_movements_monthly",
    _pk("site"), _pk("month", sa.Date), _pk("account_id"),
    _money("opening_mrr", nullable=False), _money("closing_mrr", nullable=False),
    _money("movement", nullable=False), sa.Column("movement_type", sa.Text(), nullable=False),
    sa.Column("currency", sa.Text()),  # the reporting currency
    sa.Column("as_of", sa.Date(), nullable=False),  # the day whose MRR closes the month
)

SUBSCRIPTION_OVERVIEW = _t(
    "subscription_overview",
    _pk("site"), _pk("subscription_id"),
    *(sa.Column(n, sa.Text()) for n in ("account_id", "account_code", "plan_code", "plan_name",
                                         "plan_interval", "status", "state", "currency")),
    sa.Column("quantity", sa.BigInteger()),
    _money("mrr"), _money("mrr_reporting"), sa.Column("reporting_currency", sa.Text()),
    *(sa.Column(n, sa.DateTime()) for n in ("activated_at", "trial_ends_at", "current_period_ends_at",
                                             "canceled_at", "expires_at")),
    sa.Column("churn_reason", sa.Text()), sa.Column("churn_type", sa.Text()),
    sa.Column("tenure_months", sa.BigInteger()), sa.Column("cohort_month", sa.Date()),
    sa.Column("mrr_band", sa.Text()), sa.Column("quantity_band", sa.Text()), sa.Column("tenure_band", sa.Text()),
    sa.Column("as_of", sa.Date(), nullable=False),
)

ACCOUNT_HEALTH = _t(
    "account_health_daily",
    _pk("site"), _pk("day", sa.Date), _pk("account_id"),
    sa.Column("account_code", sa.Text()), sa.Column("account_status", sa.Text()),
    sa.Column("currency", sa.Text()),  # the reporting currency of every amount of the row
    *(_money(n) for n in ("mrr", "mrr_30d_ago", "mrr_90d_ago")),
    *(sa.Column(n, _number()) for n in ("mrr_trend_30d_pct", "mrr_trend_90d_pct")),
    sa.Column("plan_names", sa.Text()),
    sa.Column("plan_quantity", sa.BigInteger()), sa.Column("active_subscriptions", sa.BigInteger()),
    *(_money(n) for n in ("total_paid", "total_due", "billed_amount", "overdue_amount")),
    sa.Column("overdue_invoice_count", sa.BigInteger()), sa.Column("overdue_since", sa.DateTime()),
    sa.Column("next_billing_at", sa.DateTime()), sa.Column("days_to_renewal", sa.BigInteger()),
    sa.Column("trial_ends_at", sa.DateTime()), sa.Column("failed_payments_30d", sa.BigInteger()),
    sa.Column("card_expires_on", sa.Date()),
    *(sa.Column(n, sa.Boolean()) for n in ("card_expiring_30d", "has_billing_info", "cancellation_scheduled")),
    sa.Column("churn_reason", sa.Text()), sa.Column("churn_type", sa.Text()),
    *(sa.Column(n, sa.Boolean()) for n in (
        "alert_past_due_invoice", "alert_failed_payment", "alert_cancellation_scheduled", "alert_contraction",
        "alert_trial_ending_without_billing_info", "alert_card_expiring", "alert_card_expires_before_renewal")),
    sa.Column("alert_count", sa.BigInteger()),
    # The score's inputs (transform/scoring.py): one score per dimension, the score before risk caps,
    # the caps that lowered the band.
    *(sa.Column(f"{d}_score", sa.Float()) for d in DIMENSIONS),
    sa.Column("health_score_uncapped", sa.Float()), sa.Column("health_capped_by", sa.Text()),
    sa.Column("health_score", _number()), sa.Column("health_band", sa.Text()),
)

# Keyed by time: event_id alone is unique (a hash that includes site and occurred_at, see
# events.py; the no_duplicate_keys check watches it), and putting (site, occurred_at) first stores
# the events in time order, the order windows are replaced in. Destinations read the events of
# every site from a point in time on, ordered by (occurred_at, event_id): the key cannot serve
# that (it starts with the site), the index on (occurred_at, event_id) does, so a delivery reads
# only the window it sends, already in order, instead of every event of the history. Its entries
# are appended in time order like the table's own.
LIFECYCLE_EVENTS = _t(
    "lifecycle_events",
    _pk("site"), _pk("occurred_at", sa.DateTime), _pk("event_id"),
    sa.Column("event_name", sa.Text(), nullable=False),
    *(sa.Column(n, sa.Text()) for n in ("account_id", "account_code", "subscription_id", "invoice_id",
                                         "transaction_id", "object_id", "plan_code")),
    _money("amount"), sa.Column("currency", sa.Text()), sa.Column("detail", sa.Text()),
    sa.Index("ix_lifecycle_events_occurred_at_event_id", "occurred_at", "event_id"),
)

QUARANTINE = _t(
    "transform_quarantine",
    _pk("site"), _pk("stage"), _pk("object_id"),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(), nullable=False),
)

CALENDAR = _t("calendar_days", _pk("day", sa.Date))

RUN_LOG = sa.Table(
    "transform_run_log", METADATA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("site", sa.Text(), nullable=False), sa.Column("run_id", sa.Text()),
    sa.Column("window_start", sa.Date(), nullable=False), sa.Column("window_end", sa.Date(), nullable=False),
    sa.Column("rows_in", sa.BigInteger()), sa.Column("rows_out", sa.BigInteger()),
    sa.Column("quarantined", sa.BigInteger()), sa.Column("seconds", sa.Float()),
    sa.Column("finished_at", sa.DateTime(), nullable=False),
)


def create_transform_tables(engine: sa.Engine) -> None:
    """Create missing tables, and add the columns and indexes a newer version declares to a table
    created by an older one (columns nullable, so existing rows read as NULL until their days are
    transformed again): warehouse/schema.py, race-free and idempotent."""
    from recurly_elt.warehouse.schema import ensure_tables

    ensure_tables(engine, METADATA.sorted_tables)
