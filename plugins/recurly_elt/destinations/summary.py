"""A plain-text summary of the deliveries in load_run_log: per destination, what was sent,
unchanged and rejected (printed by `make run`; docs/destinations.md has queries for more)."""

from __future__ import annotations

import sqlalchemy as sa

from recurly_elt.destinations.ledger import RUN_LOG


def delivery_summary(engine: sa.Engine) -> str:
    t = RUN_LOG
    if not sa.inspect(engine).has_table(t.name):
        return "Deliveries: none yet (no load_run_log table)"
    columns = ("creates", "updates", "events", "sent", "unchanged", "rejected", "skipped", "requests",
               "status_429", "uncertain_batches")
    query = (sa.select(t.c.destination, sa.func.count(), *(sa.func.sum(t.c[c]) for c in columns))
             .where(t.c.dry_run == sa.false()).group_by(t.c.destination).order_by(t.c.destination))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        pending = conn.execute(sa.text("SELECT destination, COUNT(*) FROM load_requests WHERE status = 'pending' "
                                       "GROUP BY destination")).all() if sa.inspect(engine).has_table(
            "load_requests") else []
    if not rows:
        return "Deliveries: none yet"
    lines = ["Deliveries (all runs in load_run_log):"]
    for destination, runs, *values in rows:
        v = dict(zip(columns, (int(x or 0) for x in values)))
        lines.append(f"  {destination}: {runs} runs; sent {v['sent']} (creates {v['creates']}, updates {v['updates']}, "
                     f"events {v['events']}), unchanged {v['unchanged']}, rejected {v['rejected']}, skipped "
                     f"{v['skipped']}; {v['requests']} requests, {v['status_429']} answered 429"
                     + (f"; {v['uncertain_batches']} uncertain batches" if v["uncertain_batches"] else ""))
    for destination, n in pending:
        lines.append(f"  {destination}: {n} batches still pending (sent, answer not recorded)")
    return "\n".join(lines)
