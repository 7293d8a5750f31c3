"""`recurly-elt sandbox ...`: serve the offline Recurly API, advance its clock.

  recurly-elt sandbox serve [--host 127.0.0.1] [--port N] [--api-key KEY | --sites JSON | --sites-file FILE]
      [--seed S] [--accounts N] [--start-date D] [--until D] [--rate-limit PER_MIN]
      [--rate-window SECONDS] [--faults SPEC] [--embedded-line-items N] [--request-log FILE]
      [--ready-file FILE]
  recurly-elt sandbox advance --url URL [--days N] [--site NAME]

`serve` prints one line when it listens and writes --ready-file (JSON: host, port, url, sites,
pid) so scripts can wait for it; --port 0 picks a free port. SIGTERM or SIGINT stops it cleanly.

--sites takes the keys on the command line, which every local user can read (`ps`): fine at a
prompt, not for a server left running. Scripts write the same JSON to a file only they can read
and pass --sites-file (as `make run` does).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from recurly_elt.sandbox.index import DEFAULT_EMBEDDED_LINE_ITEMS

DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_SEED = 42
DEFAULT_ACCOUNTS = 500


def configure(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="serve the sandbox API on loopback until stopped")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    serve.add_argument("--api-key", default=DEFAULT_API_KEY, help="API key of the single site 'sandbox'")
    keys = serve.add_mutually_exclusive_group()
    keys.add_argument("--sites", type=_sites_json, default=None, metavar="JSON",
                      help='several sites: \'{"acme": "key-a", "globex": "key-b"}\' (replaces --api-key)')
    keys.add_argument("--sites-file", dest="sites", type=_sites_file, metavar="FILE",
                      help="the --sites JSON read from FILE, so the keys stay out of the process list")
    serve.add_argument("--seed", type=int, default=DEFAULT_SEED)
    serve.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="accounts per site")
    serve.add_argument("--start-date", type=date.fromisoformat, default=None,
                       help="first day of simulated history (default: 365 days before --until)")
    serve.add_argument("--until", type=date.fromisoformat, default=None,
                       help="the sandbox clock's day (default: today, UTC)")
    serve.add_argument("--rate-limit", type=int, default=0, help="requests per minute per site, 0 = off")
    serve.add_argument("--rate-window", type=float, default=60.0,
                       help="sliding window in seconds (Recurly: 300, holding 5x the per-minute limit)")
    serve.add_argument("--faults", default="", help='e.g. "5xx=0.1,slow=0.05:2,drop=0.02,malformed=0.02,storm=30:5"')
    serve.add_argument("--embedded-line-items", type=int, default=DEFAULT_EMBEDDED_LINE_ITEMS,
                       help="line items embedded in an invoice before has_more_line_items (default %(default)s)")
    serve.add_argument("--request-log", type=Path, default=None, help="also append every request as JSON lines")
    serve.add_argument("--ready-file", type=Path, default=None, help="written (JSON with the port) once listening")
    advance = sub.add_parser("advance", help="advance a running sandbox's clock")
    advance.add_argument("--url", required=True, help="the sandbox's base URL, e.g. http://127.0.0.1:8765")
    advance.add_argument("--days", type=int, default=1)
    advance.add_argument("--site", default=None, help="only this site (default: every site)")


def _sites_json(text: str, source: str = "--sites") -> dict[str, str]:
    try:
        sites = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{source} is not JSON: {exc}") from None
    if not (isinstance(sites, dict) and sites and all(isinstance(k, str) and isinstance(v, str) and k and v
                                                        for k, v in sites.items())):
        raise argparse.ArgumentTypeError(f'{source} must be a JSON object {{"subdomain": "api_key", ...}}')
    return sites


def _sites_file(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc.strerror}") from None
    return _sites_json(text, source=f"--sites-file {path}")


def run(args: argparse.Namespace) -> int:
    return {"serve": serve, "advance": advance}[args.command](args)


def serve(args: argparse.Namespace) -> int:
    from recurly_elt.loopback import serve_until_signalled
    from recurly_elt.sandbox.requestlog import RequestLog
    from recurly_elt.sandbox.server import SandboxServer
    from recurly_elt.sandbox.sites import build_sites

    until = args.until or datetime.now(timezone.utc).date()
    start_date = args.start_date or until - timedelta(days=365)
    if start_date >= until:
        print(f"--start-date {start_date} must be before --until {until}", file=sys.stderr)
        return 2
    keys = args.sites or {"sandbox": args.api_key}
    try:
        sites = build_sites(
            keys, seed=args.seed, accounts=args.accounts, start_date=start_date, until=until,
            rate_limit=args.rate_limit, rate_window=args.rate_window, faults=args.faults,
            embedded_line_items=args.embedded_line_items)
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    # The simulations are a large, long-lived heap: keep the cyclic GC from walking it again and
    # again while requests allocate (objects replaced later are still freed by reference counting).
    gc.collect()
    gc.freeze()
    server = SandboxServer(sites, args.host, args.port, RequestLog(args.request_log))
    names = ", ".join(f"{s.name} ({sum(s.index.counts().values())} objects)" for s in sites)
    return serve_until_signalled(server, "sandbox", f"{server.url} (host {args.host}, port {server.port}); sites: {names}",
                                 args.ready_file, {"host": args.host, "port": server.port, "url": server.url,
                                                   "sites": list(keys)})


def advance(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode({"days": args.days, **({"site": args.site} if args.site else {})})
    request = urllib.request.Request(f"{args.url.rstrip('/')}/__sandbox/clock/advance?{query}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            result = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"sandbox at {args.url}: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"sandbox at {args.url} is not reachable: {exc.reason}", file=sys.stderr)
        return 1
    for name, site in result["sites"].items():
        changed = ", ".join(f"{k} {v}" for k, v in site["changed"].items())
        print(f"{name}: now {site['now']} (version {site['version']}); changed: {changed}")
    return 0
