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
    """A stored amount (the table's exact decimal: Decimal or its text, never a float) rounded half up
    to the cent, as the number a destination's JSON carries."""
    if value is None:
        return None
    assert not isinstance(value, float), f"amount {value!r} read from the warehouse as a binary float"
    return float(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


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


def uncertain(engine, destination: str, kind: str) -> set[str]:
    """Keys the ledger marks uncertain (their batch was written but its answer was lost)."""
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT object_key FROM load_delivered WHERE destination = :d AND kind = :k "
                                 "AND uncertain"), {"d": destination, "k": kind}).all()
    return {k for k, in rows}


def assert_once_or_uncertain(received: Counter, wanted: Counter, uncertain_ids: set[str], event_id=lambda k: k[-1]):
    """Every wanted event received exactly once, except the events of uncertain batches, received
    at most once (the destination may or may not have applied them); nothing else received."""
    twice = {k: n for k, n in received.items() if n > 1}
    assert not twice, f"received more than once: {list(twice)[:5]}"
    assert set(received) <= set(wanted), f"not expected: {list(set(received) - set(wanted))[:5]}"
    missing = {event_id(k) for k in wanted if k not in received}
    assert missing <= uncertain_ids, f"lost without being reported uncertain: {sorted(missing - uncertain_ids)[:5]}"


def rejections(engine, destination: str) -> list[tuple]:
    """(kind, object_key, reason, http_status, retryable) of every row load_rejections holds for
    the destination."""
    with engine.connect() as c:
        return c.execute(sa.text("SELECT kind, object_key, reason, http_status, retryable FROM load_rejections "
                                 "WHERE destination = :d"), {"d": destination}).all()
