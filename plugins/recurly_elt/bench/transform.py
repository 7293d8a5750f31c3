"""`recurly-elt bench transform [--accounts N]`: transform a whole simulated history, timed.

Setup (not timed): the sandbox simulation of N accounts a year over 365 days is built in-process
and loaded into staging directly (no HTTP), once per (accounts, seed, warehouse): the staged
warehouse is reused by later runs. Measured: the transform of the whole history, as the one-time
import runs it (MRR runs, monthly movements, status and segments, lifecycle events, health for the
last day, all writes), in a fresh child process so its peak memory is its own. Prints one JSON line:
rows in, rows out, wall and CPU seconds, peak memory and the seconds of each stage (medians over
--runs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
UNTIL = date(2026, 1, 1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts signed up per year (default 100000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warehouse", default=None,
                        help="warehouse URL (default: a SQLite file under .local/bench/, reused between runs)")
    parser.add_argument("--runs", type=int, default=1, help="transform runs; figures are medians")
    parser.add_argument("--health-days", type=int, default=1, help="days of account health (default 1, as the import)")


def _stage(url: str, accounts: int, seed: int) -> dict:
    """Build the simulation and load it into staging (skipped when already staged)."""
    import sqlalchemy as sa

    from recurly_elt.sandbox.simulation import SiteSimulation
    from recurly_elt.staging.load import ensure_staging_tables, upsert_records
    from recurly_elt.staging.tables import staging_table
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(url)
    ensure_staging_tables(engine)
    with engine.connect() as c:
        staged = c.execute(sa.select(sa.func.count()).select_from(staging_table("accounts"))).scalar()
    if staged:
        return {"reused": True}
    t0 = time.perf_counter()
    sim = SiteSimulation(subdomain="bench", seed=seed, accounts=accounts, start_date=UNTIL - timedelta(days=365),
                         until=UNTIL)
    t1 = time.perf_counter()
    names = {"add_ons": "plan_add_ons"}
    for resource, objects in sim.objects.items():
        values = list(objects.values())
        for i in range(0, len(values), 20_000):
            upsert_records(engine, names.get(resource, resource), "bench", values[i:i + 20_000])
    engine.dispose()
    return {"reused": False, "simulate_s": round(t1 - t0, 1), "load_s": round(time.perf_counter() - t1, 1)}


def _transform(url: str, health_days: int, queue) -> None:
    import resource

    from recurly_elt.transform import pipeline
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(url)
    pipeline.drop_outputs(engine)
    start = pipeline.history_start(engine)
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])  # noqa: E731 (user + system)
    t0, c0 = time.perf_counter(), cpu()
    (result,) = pipeline.run(engine, start, UNTIL, sites=["bench"], health_days=health_days)
    seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    queue.put({"rows_in": result.rows_in, "rows_out": sum(result.rows_out.values()), "seconds": seconds,
               "cpu_seconds": cpu_seconds, "peak_mb": peak_mb, "stages": result.seconds,
               "quarantined": result.quarantined})


def run(args: argparse.Namespace) -> int:
    url = args.warehouse or f"sqlite:///{REPO / '.local' / 'bench' / f'transform-{args.accounts}-{args.seed}.db'}"
    setup = _stage(url, args.accounts, args.seed)
    ctx = multiprocessing.get_context("spawn")
    results = []
    for _ in range(args.runs):
        queue = ctx.Queue()
        child = ctx.Process(target=_transform, args=(url, args.health_days, queue))
        child.start()
        results.append(queue.get())
        child.join()
        if child.exitcode:
            print(f"transform child failed with exit code {child.exitcode}", file=sys.stderr)
            return 1
    stages = {k: round(statistics.median(r["stages"][k] for r in results), 2) for k in results[0]["stages"]}
    print(json.dumps({
        "benchmark": "transform", "accounts": args.accounts, "seed": args.seed,
        "dialect": url.split(":", 1)[0], "runs": args.runs,
        "rows_in": results[0]["rows_in"], "rows_out": results[0]["rows_out"],
        "quarantined": results[0]["quarantined"],
        "seconds": round(statistics.median(r["seconds"] for r in results), 2),
        # The process's own CPU time: on a shared machine, wall seconds also count other loads.
        "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in results), 2),
        "runs_seconds": [round(r["seconds"], 1) for r in results],
        "peak_memory_mb": round(max(r["peak_mb"] for r in results)),
        "stages": stages, "setup_not_timed": setup,
    }))
    return 0
