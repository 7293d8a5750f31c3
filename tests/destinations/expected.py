"""What a destination should hold, computed from the warehouse on its own: plain SQL and Python,
none of the engine's mapping or conversion code."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa


def _iso(value) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def cents(value) -> float | None:
    if value is None:
        return None
    return float(Decimal(repr(float(value))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def accounts(engine) -> dict[str, dict]:
    """{account_code: the checked attributes}, from the latest health day and the accounts."""
    with engine.connect() as c:
        rows = c.execute(sa.text(
            "SELECT h.account_code, h.account_status, h.mrr, h.health_band, h.health_score, h.plan_names, a.email "
            "FROM account_health_daily h JOIN stg_accounts a ON a.site = h.site AND a.id = h.account_id "
            "WHERE h.day = (SELECT MAX(day) FROM account_health_daily)")).all()
    return {code: {"status": status, "mrr": cents(mrr), "band": band,
                   "score": None if score is None else float(score), "plan": plan, "email": email}
            for code, status, mrr, band, score, plan, email in rows}


def events(engine, names: dict[str, str] | None = None, since: datetime | None = None) -> Counter:
    """Counter of (account_code, destination name, time, event_id) of lifecycle_events."""
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT account_code, event_name, occurred_at, event_id FROM lifecycle_events")).all()
    out = Counter()
    for code, name, at, event_id in rows:
        at = datetime.fromisoformat(at) if isinstance(at, str) else at
        if names is not None and name not in names:
            continue
        if since is not None and at < since:
            continue
        out[(code, names[name] if names else name, _iso(at), event_id)] += 1
    return out
