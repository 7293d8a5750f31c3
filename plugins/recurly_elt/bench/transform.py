"""`recurly-elt bench transform [--accounts N]`: transform a whole simulated history, timed.

Setup (not timed): the sandbox simulation of a business that signs up N accounts over D days of
history (default 600 days: 100,000 accounts then make 131,535 subscriptions and 2,063,349 invoices
and line items) is built in-process and loaded into staging directly (no HTTP), once per
(accounts, days, seed, warehouse): the staged warehouse is reused by later runs. Measured: the
transform of the whole history, as the one-time import runs it (MRR runs, monthly movements, status
and segments, lifecycle events, health for the last day, all writes), in a fresh child process.
Prints one JSON line: rows in, rows out, wall and CPU seconds, peak memory and the seconds of each
stage (medians over --runs). CPU seconds and peak memory count the transform's process and its
SQLite worker together.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
UNTIL = date(2026, 1, 1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=100_000,
                        help="accounts signed up over the whole history (default 100000)")
    parser.add_argument("--days", type=int, default=600,
                        help="days of history (default 600: at 100,000 accounts, about 2 million invoices and "
                             "line items, the size the transform's goal is set for)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warehouse", default=None,
                        help="warehouse URL (default: a SQLite file under .local/bench/, reused between runs)")
    parser.add_argument("--runs", type=int, default=1, help="transform runs; figures are medians")
    parser.add_argument("--health-days", type=int, default=1, help="days of account health (default 1, as the import)")


def _stage(url: str, accounts: int, days: int, seed: int) -> dict:
    """Build the simulation and load it into staging (skipped when already staged)."""
    import sqlalchemy as sa

    from recurly_elt.extract.completion import as_extracted
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
    per_year = round(accounts * 365 / days)  # the simulation's rate: accounts signed up a year
    sim = SiteSimulation(subdomain="bench", seed=seed, accounts=per_year, start_date=UNTIL - timedelta(days=days),
                         until=UNTIL)
    t1 = time.perf_counter()
    for resource, values in as_extracted(sim.objects, sim.invoice_redemptions).items():
        for i in range(0, len(values), 20_000):
            upsert_records(engine, resource, "bench", values[i:i + 20_000])
    engine.dispose()
    return {"reused": False, "simulate_s": round(t1 - t0, 1), "load_s": round(time.perf_counter() - t1, 1)}


class MemorySampler:
    """Peak resident memory of a process and its children together, sampled every 20 ms from
    /proc (Linux). The transform's SQLite worker is a separate process, so one process's max RSS
    would leave out what the two hold at the same time."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        pids, i = [self.pid], 0
        while i < len(pids):
            try:
                children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
            except OSError:
                children = []
            pids += [int(c) for c in children]
            i += 1
        return pids

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, sum(self._rss_kb(p) for p in self._tree()) / 1024)
            self._stop.wait(self.every)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _transform(url: str, health_days: int, queue) -> None:
    import resource

    from recurly_elt.transform import pipeline
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(url)
    pipeline.drop_outputs(engine)
    start = pipeline.history_start(engine)
    # User + system time of this process and of the SQLite worker it starts (a child, counted
    # once it has exited: pipeline.run waits for it).
    cpu = lambda: sum(sum(resource.getrusage(who)[:2]) for who in (resource.RUSAGE_SELF,  # noqa: E731
                                                                   resource.RUSAGE_CHILDREN))
    sampler = MemorySampler(os.getpid())
    t0, c0 = time.perf_counter(), cpu()
    with sampler:
        (result,) = pipeline.run(engine, start, UNTIL, sites=["bench"], health_days=health_days)
    seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
    queue.put({"rows_in": result.rows_in, "rows_out": sum(result.rows_out.values()), "seconds": seconds,
               "cpu_seconds": cpu_seconds, "peak_mb": sampler.peak_mb, "stages": result.seconds,
               "quarantined": result.quarantined})


def run(args: argparse.Namespace) -> int:
    name = f"transform-{args.accounts}-{args.days}d-{args.seed}.db"
    url = args.warehouse or f"sqlite:///{REPO / '.local' / 'bench' / name}"
    setup = _stage(url, args.accounts, args.days, args.seed)
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
        "benchmark": "transform", "accounts": args.accounts, "days": args.days, "seed": args.seed,
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
