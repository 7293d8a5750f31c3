"""`recurly-elt bench ui [--accounts N]`: server-side load time of every plugin page and endpoint.

Setup (not timed, reused between runs): the staged warehouse of `bench transform` (N accounts
signed up over D days on one site) and the transform over its whole history, with health for the
last `--health-days` days. Measured: each page and JSON endpoint of the plugin app, requested in
process (FastAPI's test client: routing, the read-only queries, Jinja rendering, JSON), `--runs`
times, each time on a new app: `cold_ms` is the first request (nothing kept, as after every
transform run), `warm_ms` the second (answers kept until the next transform, see ui/cache.py);
medians in milliseconds. Authentication is replaced by a fixed user (it
costs one JWT check per request, the same for every page). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from recurly_elt.bench.transform import REPO, UNTIL, _stage


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=600)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--health-days", type=int, default=30, help="days of account health (default 30)")
    parser.add_argument("--warehouse", default=None, help="warehouse URL (default: the bench transform file)")
    parser.add_argument("--runs", type=int, default=5, help="requests per page; figures are medians")


def _transformed(url: str, health_days: int) -> dict:
    import sqlalchemy as sa

    from recurly_elt.transform import pipeline
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(url)
    try:
        with engine.connect() as c:
            inspector = sa.inspect(c)
            if inspector.has_table("account_health_daily"):
                days = c.execute(sa.text("SELECT COUNT(DISTINCT day) FROM account_health_daily")).scalar()
                if days >= health_days:
                    return {"reused": True}
        t0 = time.perf_counter()
        pipeline.drop_outputs(engine)
        pipeline.run(engine, pipeline.history_start(engine), UNTIL, sites=["bench"], health_days=health_days)
        return {"reused": False, "transform_s": round(time.perf_counter() - t0, 1)}
    finally:
        engine.dispose()


def _pages(account: str, month: str) -> dict[str, str]:
    return {
        "revenue page": "/revenue",
        "health page": "/health",
        "account page": f"/health/account?site=bench&account={account}",
        "runs page": "/runs",
        "sync summary page": "/sync-summary/recurly_daily_sync/bench-run",
        "api revenue/mrr": "/api/revenue/mrr",
        "api revenue/movements": "/api/revenue/movements?site=bench",
        "api movements/accounts (new)": f"/api/revenue/movements/accounts?site=bench&month={month}&movement_type=new",
        "api revenue/segments": "/api/revenue/segments?site=bench",
        "api health/bands": "/api/health/bands",
        "api health/at-risk": "/api/health/at-risk",
        "api health/account": f"/api/health/account?site=bench&account={account}",
    }


def run(args: argparse.Namespace) -> int:
    import sqlalchemy as sa
    from fastapi.testclient import TestClient

    from recurly_elt.ui import auth
    from recurly_elt.ui.app import create_app
    from recurly_elt.ui.warehouse import read_only_engine

    name = f"transform-{args.accounts}-{args.days}d-{args.seed}.db"
    url = args.warehouse or f"sqlite:///{REPO / '.local' / 'bench' / name}"
    setup = {"stage": _stage(url, args.accounts, args.days, args.seed), "transform": _transformed(url, args.health_days)}
    engine = read_only_engine(url)
    with engine.connect() as c:
        account = c.execute(sa.text("SELECT account_id FROM v_account_health ORDER BY mrr DESC LIMIT 1")).scalar()
        month = str(c.execute(sa.text("SELECT MAX(month) FROM mrr_movements_monthly")).scalar())[:10]
        sizes = {t: c.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar()
                 for t in ("stg_accounts", "mrr_account_runs", "mrr_movements_monthly", "account_health_daily",
                           "lifecycle_events")}

    def fresh_client() -> TestClient:
        """The app as the API server holds it, with nothing kept yet (as after a transform run)."""
        app = create_app(lambda: engine)
        for dependency in (auth.require_reader, auth.require_run_history, auth.require_dag_run):
            app.dependency_overrides[dependency] = lambda: None
        return TestClient(app, root_path="/recurly")

    fresh_client().get("/revenue")  # warms the connection pool, templates and the OS file cache
    figures = {}
    for label, path in _pages(account, month).items():
        cold, warm, cold_cpu = [], [], []
        for _ in range(args.runs):
            client = fresh_client()
            for times in (cold, warm):  # the first request computes, the second reuses kept answers
                t0, c0 = time.perf_counter(), time.process_time()
                response = client.get(path)
                times.append(time.perf_counter() - t0)
                if times is cold:
                    cold_cpu.append(time.process_time() - c0)
                if response.status_code != 200:
                    print(f"{label}: HTTP {response.status_code}: {response.text[:300]}")
                    return 1
        # Wall time counts whatever else the machine runs; CPU time is this process's own work.
        figures[label] = {"cold_ms": round(statistics.median(cold) * 1000),
                          "cold_cpu_ms": round(statistics.median(cold_cpu) * 1000),
                          "warm_ms": round(statistics.median(warm) * 1000),
                          "cold_max_ms": round(max(cold) * 1000), "bytes": len(response.content)}
    engine.dispose()
    print(json.dumps({"benchmark": "ui", "accounts": args.accounts, "days": args.days, "health_days": args.health_days,
                      "runs": args.runs, "rows": sizes, "pages": figures, "setup_not_timed": setup}))
    return 0
