"""`recurly-elt bench load --destination braze|klaviyo|activecampaign|bloomreach|customersuccessbox`: one delivery of a transformed warehouse to a fake.

Setup (not timed): the sandbox simulation of N accounts over 600 days staged and transformed
(the transform benchmark's warehouse under .local/bench/, reused when it is there; transformed once
here if it has no marts yet); the ledger tables dropped, so every run is a first import. The fake
runs in a subprocess (`recurly-elt fakes serve`), so its request validation does not share the
client's CPU. Timed: `deliver()` of every object and of the events of the last D days (as live
events, without backfill). Prints one JSON line:

  objects, events         records delivered (users/profiles; events of every kind)
  requests, min_requests  delivery requests sent, and the minimum the batch limits allow for them
  polls                   asynchronous-job follow-ups (Klaviyo import jobs)
  seconds, objects_per_s  wall time of the delivery, and (objects + events) per wall second
  client_cpu_s, client_objects_per_s   "client-side": the CPU time of the client process (every
                          thread: reading and mapping the warehouse, SQLite itself, which runs in
                          the process, the ledger, HTTP), and records per CPU second; the fake's
                          own time (request validation) is in its subprocess, not in it
  rejected, resent        records refused; records the fake received more than once
  status_429, share_429   with --rate-limit N/S: 429 answers, and their share of all requests
  allowed_requests_used   requests the fake accepted over what its fixed windows allowed while
                          the client was sending (N x the windows from the first request to the
                          last answer); allowed_requests_used_whole_run: over the windows of the
                          whole delivery, reading the warehouse before the first request included
  matches_expected        the fake holds exactly the warehouse's objects and events (minus rejected; an
                          event of an uncertain batch, whose answer was lost, at most once)
  uncertain               events marked uncertain (at most once: a lost answer, not resent)

--unpaced drops the spacing the client applies by itself to an API that sends no rate headers
(ActiveCampaign: 5 requests per second, whatever the fake's limit), to measure the client's
throughput; a real account would answer 429 to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
KEY = "bench-key-0123456789"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--destination", required=True,
                        choices=("braze", "klaviyo", "activecampaign", "bloomreach", "customersuccessbox"))
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--history-days", type=int, default=600, help="days of simulated history (default 600)")
    parser.add_argument("--days", type=int, default=90, help="events of the last D days are delivered (default 90)")
    parser.add_argument("--rate-limit", default="", help="the fake's limit, N/SECONDS (default: off)")
    parser.add_argument("--faults", default="", help="the fake's faults, sandbox syntax")
    parser.add_argument("--reject", type=float, default=0.0, help="share of records the fake refuses")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warehouse", default=None, help="warehouse URL (default: the transform benchmark's file)")
    parser.add_argument("--in-flight", type=int, default=None, help="requests in flight (default: the engine's)")
    parser.add_argument("--unpaced", action="store_true",
                        help="drop the client's own spacing of an API without rate headers (ActiveCampaign's "
                             "documented 5 requests/s, kept even with the fake's limit off): the client's throughput")


def _warehouse(args) -> tuple[str, dict]:
    import sqlalchemy as sa

    from recurly_elt.bench.transform import UNTIL, _stage
    from recurly_elt.warehouse.engine import create_engine_from_url

    name = f"transform-{args.accounts}-{args.history_days}d-{args.seed}.db"
    url = args.warehouse or f"sqlite:///{REPO / '.local' / 'bench' / name}"
    setup = _stage(url, args.accounts, args.history_days, args.seed)
    engine = create_engine_from_url(url)
    try:
        inspector = sa.inspect(engine)
        ready = inspector.has_table("lifecycle_events") and inspector.has_table("account_health_daily")
        if ready:
            with engine.connect() as c:
                ready = bool(c.execute(sa.text("SELECT COUNT(*) FROM account_health_daily")).scalar())
        from recurly_elt.transform import pipeline

        if ready:  # reused: its tables and views become what this version declares, as a transform's would
            pipeline.prepare(engine)
        else:
            t0 = time.perf_counter()
            pipeline.run(engine, pipeline.history_start(engine), UNTIL, health_days=1)
            setup["transform_s"] = round(time.perf_counter() - t0, 1)
        from recurly_elt.destinations.ledger import METADATA

        METADATA.drop_all(engine)
    finally:
        engine.dispose()
    return url, setup


def _start_fake(args, folder: Path) -> tuple[subprocess.Popen, str]:
    folder.mkdir(parents=True, exist_ok=True)
    # one ready file per run: two runs at once must not read each other's fake
    ready, key_file = folder / f"fake-{args.destination}-{os.getpid()}.ready.json", folder / "fake.key"
    ready.unlink(missing_ok=True)
    key_file.write_text(KEY)
    argv = [sys.executable, "-m", "recurly_elt.cli", "fakes", "serve", args.destination, "--port", "0",
            "--api-key-file", str(key_file), "--seed", str(args.seed), "--ready-file", str(ready),
            "--rate-limit", args.rate_limit, "--faults", args.faults, "--reject", str(args.reject)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(folder / "fake.log", "w"))
    deadline = time.time() + 60
    while not ready.exists():
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the fake did not start (see {folder / 'fake.log'})")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())["url"]


def _expected(engine, mapping, now: datetime, rejected: dict[str, set]) -> tuple[set, set]:
    """Object keys and event keys the fake should hold, from the warehouse (minus rejected rows)."""
    import sqlalchemy as sa

    from recurly_elt.destinations.account_keys import resolve

    objects, events = set(), set()
    cutoff = now - timedelta(days=mapping.event_max_age_days)
    with engine.connect() as c:
        account_keys = resolve(c, mapping)  # the key form the run used (recorded in load_settings)
        for kind in mapping.kinds:
            if kind.is_event:
                names = list(kind.event_names)
                rows = c.execute(sa.text(f"SELECT s.{kind.key}, s.{kind.event_name}, s.{kind.time} FROM ({kind.source}) s"))
                for key, name, at in rows:
                    at = datetime.fromisoformat(at) if isinstance(at, str) else at
                    if name in names and at >= cutoff and key not in rejected.get(kind.name, ()):
                        events.add(str(key))
            else:
                rows = [dict(r) for r in c.execute(sa.text(f"SELECT * FROM ({kind.source}) s")).mappings()]
                for row in rows:
                    account_keys.add(row)
                for derived in kind.custom_fields:  # e.g. CustomerSuccessBox's tenant id, else the code
                    for row in rows:
                        values = [f.get("value") for f in json.loads(row.get(derived.source) or "[]")
                                  if isinstance(f, dict) and f.get("name") == derived.field and f.get("value")]
                        row[derived.name] = values[0] if values else row.get(derived.otherwise)
                keys = (row[kind.key] for row in rows)
                objects |= {str(k) for k in keys if k and str(k) not in rejected.get(kind.name, ())}
    return objects, events


def run(args: argparse.Namespace) -> int:
    import requests
    import sqlalchemy as sa

    from recurly_elt.bench.transform import UNTIL
    from recurly_elt.destinations.adapter import load_adapter
    from recurly_elt.destinations.engine import deliver
    from recurly_elt.destinations.mapping import load_mapping
    from recurly_elt.destinations.transport import Transport
    from recurly_elt.http_retry import RetryPolicy
    from recurly_elt.fakes.http import parse_rate_limit
    from recurly_elt.warehouse.engine import create_engine_from_url

    url, setup = _warehouse(args)
    mapping = dataclasses.replace(load_mapping(args.destination), event_max_age_days=args.days)
    if args.destination == "klaviyo":
        mapping = dataclasses.replace(mapping, options={**mapping.options, "poll_scale": 0.2})
    adapter = load_adapter(mapping)
    import importlib

    reach = getattr(importlib.import_module(f"recurly_elt.fakes.{args.destination}"), "CONNECTION", None)
    if reach:  # what the fake's connection holds besides the key (Bloomreach: key id, project token)
        adapter.connect(reach["login"], reach["extra"])
    proc, fake_url = _start_fake(args, REPO / ".local" / "bench" / "load")
    engine = create_engine_from_url(url)
    try:
        session = requests.Session()
        session.headers.update(adapter.auth_headers(KEY))
        rate = adapter.rate_headers
        if args.unpaced:
            rate = dataclasses.replace(rate, requests_per_second=None)
        transport = Transport(session=session, base_url=fake_url, rate=rate,
                              retry=RetryPolicy(base_seconds=0.05, max_backoff_seconds=2.0))
        now = datetime.combine(UNTIL, datetime.min.time())
        cpu0, t0 = time.process_time(), time.perf_counter()
        extra = {"in_flight": args.in_flight} if args.in_flight else {}
        result = deliver(engine, mapping, adapter, transport, run_id=f"bench-{int(time.time())}", now=now,
                         progress_seconds=30, **extra)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        fake = requests.get(fake_url + "/_fake/state", timeout=600).json()
        with engine.connect() as c:
            rejected: dict[str, set] = {}
            for kind, key in c.execute(sa.text("SELECT kind, object_key FROM load_rejections")):
                rejected.setdefault(kind, set()).add(key)
            # events of batches whose answer was lost (at most once): held at most once, maybe not
            uncertain = {k for k, in c.execute(sa.text("SELECT object_key FROM load_delivered WHERE uncertain"))}
        want_objects, want_events = _expected(engine, mapping, now, rejected)
    finally:
        engine.dispose()
        proc.terminate()
        proc.wait(timeout=30)
    if args.destination == "braze":
        held_objects = {k for k, v in fake["users"].items() if len(v) > 0}
        held_events = [e["properties"]["event_id"] for e in fake["events"]]
        resent = fake["duplicate_events"] + fake["attribute_writes"] - len(fake["users"])
    elif "held" in fake:  # the fake says which keys and event ids it holds
        held_objects, held_events, resent = set(fake["held"]["objects"]), fake["held"]["events"], fake["held"]["resent"]
    else:
        held_objects = set(fake["profiles"])
        held_events = [e["unique_id"] for e in fake["events"]]
        resent = fake["ignored_duplicates"] + fake["profile_imports"] - len(fake["profiles"])
    objects = sum(k.sent for name, k in result.kinds.items() if not mapping.kind(name).is_event)
    events = result.total("sent") - objects
    out = {
        "benchmark": "load", "destination": args.destination, "accounts": args.accounts, "days": args.days,
        "rate_limit": args.rate_limit or None, "unpaced": args.unpaced, "faults": args.faults or None, "reject": args.reject,
        "objects": objects, "events": events, "requests": result.total("requests"),
        "min_requests": result.total("min_requests"), "polls": result.total("polls"),
        "seconds": round(seconds, 2), "objects_per_s": round((objects + events) / seconds),
        "client_cpu_s": round(cpu, 2), "client_objects_per_s": round((objects + events) / max(cpu, 1e-9)),
        "rejected": result.total("rejected"), "skipped": result.total("skipped"), "resent": resent,
        "status_429": result.status_429, "retries": result.retries,
        "uncertain": len(uncertain),
        "matches_expected": held_objects == want_objects and set(held_events) - uncertain == want_events - uncertain
        and set(held_events) <= want_events and len(held_events) == len(set(held_events)),
        "status": result.status, "setup_not_timed": setup,
    }
    if args.rate_limit:
        limiter = parse_rate_limit(args.rate_limit)  # fixed windows, aligned on the clock
        sent = fake["server"]["requests"]
        refused = fake["server"]["statuses"].get("429", 0)
        first, last = transport.counters.first_sent_at, transport.counters.last_answer_at
        windows = math.floor(last / limiter.window) - math.floor(first / limiter.window) + 1 if first else 1
        out["allowed_requests_used"] = round((sent - refused) / (limiter.capacity * windows), 3)
        out["allowed_requests_used_whole_run"] = round(
            (sent - refused) / (limiter.capacity * math.ceil(seconds / limiter.window)), 3)
        out["sending_seconds"] = round(last - first, 2) if first else 0.0
        out["share_429"] = round(refused / max(sent, 1), 4)
    print(json.dumps(out))
    return 0 if out["matches_expected"] else 1
