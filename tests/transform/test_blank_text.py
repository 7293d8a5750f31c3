"""Recurly sends unset text as "": staging keeps the raw value, every reader treats it as missing."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from recurly_elt.transform import pipeline
from recurly_elt.warehouse.engine import create_engine_from_url

from .builders import Book
from .staging_data import load_objects


def test_blank_text_is_missing_for_every_reader(warehouse_url):
    book = Book()
    plan = book.plan("basic")
    blank = book.account(email="", first_name="", address={"country": "", "city": ""},
                         billing_info={"id": "", "valid": False})
    filled = book.account(email="ana@example.com", address={"country": "PT"}, billing_info={"id": "bi1", "valid": True})
    for account in (blank, filled):
        s = book.subscription(account, plan, "2025-01-10", state="expired", expires_at="2025-03-10T10:00:00Z",
                              expiration_reason="", canceled_at="")
        book.charge(s, plan, "2025-01-10", "2025-02-10", 30.0)
        book.charge(s, plan, "2025-02-10", "2025-03-10", 30.0)
    engine = create_engine_from_url(warehouse_url)
    load_objects(engine, "s1", book.objects)
    pipeline.run(engine, "2025-01-01", "2025-04-01", health_days=1)
    with engine.connect() as c:
        staged = dict(c.execute(sa.text("SELECT id, email FROM stg_accounts")).all())
        accounts = pd.read_sql_query(sa.text("SELECT * FROM v_accounts ORDER BY account_id"), c).set_index("account_id")
        health = pd.read_sql_query(sa.text("SELECT * FROM v_account_health"), c).set_index("account_id")
        overview = pd.read_sql_query(sa.text("SELECT * FROM subscription_overview"), c).set_index("account_id")
    assert staged[blank["id"]] == ""  # staging keeps what Recurly sent
    assert accounts.loc[blank["id"], ["email", "first_name", "country", "billing_info_id"]].isna().all()
    assert accounts.loc[filled["id"], "email"] == "ana@example.com" and accounts.loc[filled["id"], "country"] == "PT"
    # health: a blank billing info id is no billing info; a blank expiration reason is no reason
    assert not health.loc[blank["id"], "has_billing_info"] and health.loc[filled["id"], "has_billing_info"]
    assert health.loc[blank["id"], "account_status"] == "churned"
    assert pd.isna(health.loc[blank["id"], "churn_reason"]) and pd.isna(health.loc[blank["id"], "churn_type"])
    # status: a blank canceled_at is no cancellation; a blank reason has no churn type
    assert overview.loc[blank["id"], "status"] == "expired" and pd.isna(overview.loc[blank["id"], "churn_type"])
    engine.dispose()
