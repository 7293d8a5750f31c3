"""The transform's output tables (the marts), one declaration each.

Keys make every write idempotent: a run replaces exactly the rows of its site and date range
(store.py). Money is in the reporting currency unless the column says native, and is stored exactly
as staging stores it (warehouse/types.py `Money`, `MartMoney`: NUMERIC(20, 6) on PostgreSQL, the
decimal text with six decimals on SQLite, which has no exact decimal type); docs/transform.md,
"Money in the marts".
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from recurly_elt.warehouse.types import MartMoney

log = logging.getLogger(__name__)

METADATA = sa.MetaData()

# The health dimensions with a score column (`<name>_score`); health.yaml may use these.
DIMENSIONS = ("billing", "growth", "retention")

_number = lambda: sa.Numeric(20, 6, asdecimal=False)  # noqa: E731


def _money(name: str, **kw) -> sa.Column:
    """A money column: frames carry it as int64 micro-units (transform/money.py); the store writes
    it as an exact decimal (`MartMoney`) and reads it back as the same micro-units."""
    return sa.Column(name, MartMoney(), info={"money": True}, **kw)


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


# Below this, a double written from a decimal of at most six places prints back as that decimal.
REAL_EXACT_BELOW = 1e9


def _stale_money(table: sa.Table, have: dict[str, str]) -> list[str]:
    """The money columns of `table` that its stored version (`have`: column -> type) keeps as REAL."""
    return [c.name for c in table.columns if c.info.get("money") and c.name in have
            and "CHAR" not in have[c.name] and "TEXT" not in have[c.name]]


def _money_as_text(conn: sa.Connection, table: sa.Table, have: dict[str, str]) -> bool:
    """SQLite: rebuild a table an older version created with REAL (NUMERIC) money columns, its
    amounts rewritten as the decimal text `Money` stores. The doubles were written from exact
    decimals of at most 6 places and below 10^9 (one correctly rounded conversion), so printf's
    6 decimals of each is that decimal again."""
    stale = _stale_money(table, have)
    if not stale:
        return False
    largest = conn.exec_driver_sql("SELECT " + ", ".join(f'MAX(ABS("{n}"))' for n in stale)
                                   + f" FROM {table.name}").one()
    too_large = [f"{n} (up to {v})" for n, v in zip(stale, largest) if v is not None and v >= REAL_EXACT_BELOW]
    if too_large:  # a double of that size no longer holds six exact decimals: never guess them
        raise ValueError(f"{table.name}: an older version stored {', '.join(too_large)} as REAL, too large "
                         f"to recover six exact decimals from (at least {REAL_EXACT_BELOW:.0e}); drop the "
                         "transform's outputs (pipeline.drop_outputs) and run the transform again")
    log.warning("%s: rebuilding it to store %s as exact decimal text (an older version stored REAL)",
                table.name, ", ".join(stale))
    old = f"{table.name}__real_money"
    cols = [c.name for c in table.columns if c.name in have]
    values = [f'CASE WHEN "{n}" IS NULL THEN NULL ELSE printf(\'%.6f\', "{n}") END' if n in stale else f'"{n}"'
              for n in cols]
    # Legacy rename: the views that read the table keep its name (they are recreated after this).
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {old}")
        for index in table.indexes:  # renamed with the old table: the new one creates them again
            conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
        table.create(conn)
        names = ", ".join(f'"{n}"' for n in cols)
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) SELECT {', '.join(values)} FROM {old}")
        conn.exec_driver_sql(f"DROP TABLE {old}")
    finally:
        conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
    return True  # the new table has every declared column


def create_transform_tables(engine: sa.Engine) -> None:
    """Create missing tables, and add the columns and indexes a newer version declares to a table
    created by an older one (columns nullable, so existing rows read as NULL until their days are
    transformed again): warehouse/schema.py, race-free and idempotent. On SQLite, a table whose
    amounts an older version stored as REAL is rebuilt first, with them as text."""
    from recurly_elt.warehouse.schema import ensure_tables

    if engine.dialect.name == "sqlite":
        _rebuild_real_money(engine)
    ensure_tables(engine, METADATA.sorted_tables)


def _rebuild_real_money(engine: sa.Engine) -> None:
    """The SQLite tables an older version created with REAL amounts, rebuilt by `_money_as_text`
    under the write lock; when there is none, one catalogue read."""
    from recurly_elt.warehouse.engine import write_transaction

    def columns(conn: sa.Connection) -> dict[str, dict[str, str]]:
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        return {t.name: {c["name"]: str(c["type"]).upper() for c in inspector.get_columns(t.name)}
                for t in METADATA.sorted_tables if t.name in existing}

    with engine.connect() as conn:
        found = columns(conn)
    if not any(_stale_money(t, found[t.name]) for t in METADATA.sorted_tables if t.name in found):
        return
    with write_transaction(engine) as conn:
        found = columns(conn)  # again, under the lock: another task may have rebuilt them meanwhile
        for table in METADATA.sorted_tables:
            if table.name in found:
                _money_as_text(conn, table, found[table.name])
