"""`recurly-elt bench sandbox`: how fast the sandbox serves full reads, and how much a day changes.

Starts `recurly-elt sandbox serve` in a subprocess (its start-up time is `build_seconds`: the
simulation plus the first index), then reads every list fully with limit=200, sorted by
updated_at ascending as the extractor reads, over one keep-alive connection and parses each page
as a client must. Then N client processes (default 4) each do the same full read at once, for the
aggregate page rate under concurrency. Finally it advances the clock one day and reports how many
objects changed per resource and as a share of that resource. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from recurly_elt.sandbox.server import API_VERSION

API_KEY = "bench-key"
HEADERS = {"Accept": f"application/vnd.recurly.{API_VERSION}",
           "Authorization": "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()}
LISTS = ("accounts", "subscriptions", "invoices", "line_items", "transactions", "plans")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start-date", default="2025-01-01")
    parser.add_argument("--until", default="2026-01-01")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--repeat", type=int, default=3, help="single-client reads; the median is reported")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    with serve_in_subprocess(["--api-key", API_KEY, "--accounts", str(args.accounts), "--seed", str(args.seed),
                              "--start-date", args.start_date, "--until", args.until]) as port:
        build_seconds = time.perf_counter() - started
        result = _measure(port, args)
        result["build_seconds"] = round(build_seconds, 2)
    print(json.dumps(result), flush=True)
    return 0


@contextmanager
def serve_in_subprocess(serve_args: list[str], timeout: float = 1800) -> Iterator[int]:
    """`recurly-elt sandbox serve SERVE_ARGS` on an ephemeral loopback port, in a child process;
    yields the port once the sandbox is ready and stops it on exit (benchmarks share this)."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        server = subprocess.Popen(
            [sys.executable, "-m", "recurly_elt.cli", "sandbox", "serve", "--port", "0",
             "--ready-file", str(ready), *serve_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            yield _wait_ready(server, ready, timeout)
        finally:
            server.terminate()
            server.wait(timeout=60)


def _wait_ready(server: subprocess.Popen, ready: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if server.poll() is not None:
            raise SystemExit(f"the sandbox exited before it was ready: {server.stderr.read()}")
        if time.monotonic() > deadline:
            raise SystemExit("the sandbox was not ready in time")
        time.sleep(0.05)
    return json.loads(ready.read_text())["port"]


def _measure(port: int, args: argparse.Namespace) -> dict:
    stats = _call(port, "GET", "/__sandbox/stats")["sites"]["sandbox"]
    objects = stats["objects"]
    conn = http.client.HTTPConnection("127.0.0.1", port)
    plans = [p["id"] for p in _read_list(conn, "/plans?limit=200", keep=True)[2]]
    conn.close()
    paths = [f"/{name}" for name in LISTS] + [f"/plans/{plan}/add_ons" for plan in plans]

    single = [full_read(port, paths) for _ in range(max(1, args.repeat))]
    pages, records = single[0]["pages"], single[0]["records"]
    seconds = statistics.median(r["seconds"] for r in single)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.clients) as pool:
        concurrent = list(pool.map(full_read, [port] * args.clients, [paths] * args.clients))
    wall = time.perf_counter() - started

    busy = _call(port, "GET", "/__sandbox/stats")["sites"]["sandbox"]["busy_seconds"]
    before = objects
    advance_started = time.perf_counter()
    changed = _call(port, "POST", "/__sandbox/clock/advance?days=1")["sites"]["sandbox"]["changed"]
    advance_seconds = time.perf_counter() - advance_started
    return {
        "accounts": args.accounts,
        "seed": args.seed,
        "objects": objects,
        "pages": pages,
        "records": records,
        "seconds": round(seconds, 3),
        "pages_per_s": round(pages / seconds, 1),
        "records_per_s": round(records / seconds),
        # the server's own time per page over all reads: what the client's parsing hides
        "server_ms_per_page": round(1000 * busy / (pages * len(single) + sum(r["pages"] for r in concurrent)), 3),
        "index_seconds": stats["index_seconds"],
        "concurrent": {
            "clients": args.clients,
            "pages": sum(r["pages"] for r in concurrent),
            "seconds": round(wall, 3),
            "pages_per_s": round(sum(r["pages"] for r in concurrent) / wall, 1),
            "records_per_s": round(sum(r["records"] for r in concurrent) / wall),
        },
        "churn": {name: {"changed": changed.get(name, 0),
                         "share": round(changed.get(name, 0) / before[name], 4) if before.get(name) else 0.0}
                  for name in before},
        "advance_seconds": round(advance_seconds, 3),
    }


def full_read(port: int, paths: list[str]) -> dict:
    """Read every list to its end on one keep-alive connection; parse every page as a client would."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    pages = records = 0
    started = time.perf_counter()
    for path in paths:
        sep = "&" if "?" in path else "?"
        page_count, record_count, _ = _read_list(conn, f"{path}{sep}limit=200&sort=updated_at&order=asc")
        pages += page_count
        records += record_count
    conn.close()
    return {"pages": pages, "records": records, "seconds": time.perf_counter() - started}


def _read_list(conn: http.client.HTTPConnection, url: str, keep: bool = False) -> tuple[int, int, list]:
    """(pages, records, the records themselves if `keep`) of one list followed to its end."""
    pages = records = 0
    kept: list[dict] = []
    while url:
        conn.request("GET", url, headers=HEADERS)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {url}: {response.status} {body[:300]!r}")
        page = json.loads(body)
        pages += 1
        records += len(page["data"])
        if keep:
            kept.extend(page["data"])
        url = page["next"] if page["has_more"] else None
    return pages, records, kept


def _call(port: int, method: str, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
    conn.request(method, path)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return body
