"""`recurly-elt fakes serve braze|klaviyo|activecampaign|bloomreach|customersuccessbox`: an offline destination API on loopback until stopped.

  recurly-elt fakes serve braze|klaviyo [--host 127.0.0.1] [--port N] [--api-key KEY | --api-key-file FILE]
      [--seed S] [--rate-limit N/SECONDS] [--faults SPEC] [--reject SHARE] [--ready-file FILE]
  recurly-elt fakes state --url URL          print what a running fake holds (GET /_fake/state)

`--faults` takes the sandbox's syntax (e.g. "5xx=0.1,drop=0.02,storm=30:5"); `--rate-limit 10/1`
allows 10 requests per fixed one-second window (on the clock) with the vendor's rate headers; `--reject 0.02` refuses a
reproducible 2 % of records (Braze: in `errors`; Klaviyo: invalid emails that refuse their job).
`serve` prints one line when it listens and writes --ready-file (JSON: host, port, url, pid).
--api-key on the command line is visible to local users (`ps`); scripts use --api-key-file.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

APIS = ("braze", "klaviyo", "activecampaign", "bloomreach", "customersuccessbox")
DEFAULT_KEY = "fake-api-key"


def configure(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="serve a fake destination API on loopback until stopped")
    serve.add_argument("api", choices=APIS)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    keys = serve.add_mutually_exclusive_group()
    keys.add_argument("--api-key", default=DEFAULT_KEY)
    keys.add_argument("--api-key-file", type=Path, default=None, help="read the key from FILE")
    serve.add_argument("--seed", type=int, default=42)
    serve.add_argument("--rate-limit", default="", help="N/SECONDS (fixed windows) or N per minute; empty = off")
    serve.add_argument("--faults", default="", help='e.g. "5xx=0.1,slow=0.05:2,drop=0.02,lost=0.02,storm=30:5 (drop: before the request is applied; lost: after, no answer)"')
    serve.add_argument("--reject", type=float, default=0.0, help="share of records refused as invalid (0-1)")
    serve.add_argument("--ready-file", type=Path, default=None, help="written (JSON with the port) once listening")
    state = sub.add_parser("state", help="print what a running fake holds")
    state.add_argument("--url", required=True)


def run(args: argparse.Namespace) -> int:
    return {"serve": serve, "state": show_state}[args.command](args)


def build_server(api: str, *, host: str = "127.0.0.1", port: int = 0, api_key: str = DEFAULT_KEY, seed: int = 42,
                 rate_limit: str = "", faults: str = "", reject: float = 0.0):
    from recurly_elt.fakes.http import FakeServer, parse_rate_limit

    if not 0 <= reject <= 1:
        raise ValueError("--reject is a share between 0 and 1")
    if api == "braze":
        from recurly_elt.fakes.braze import BrazeApp as App
    elif api == "klaviyo":
        from recurly_elt.fakes.klaviyo import KlaviyoApp as App
    else:  # the module's APP (bloomreach: key id "test-key-id", project token "test-project")
        import importlib

        App = importlib.import_module(f"recurly_elt.fakes.{api}").APP
    return FakeServer(App(api_key, seed=seed, reject=reject), host, port, limiter=parse_rate_limit(rate_limit),
                      faults=faults, seed=seed)


def serve(args: argparse.Namespace) -> int:
    from recurly_elt.loopback import serve_until_signalled

    key = args.api_key_file.read_text(encoding="utf-8").strip() if args.api_key_file else args.api_key
    try:
        server = build_server(args.api, host=args.host, port=args.port, api_key=key, seed=args.seed,
                              rate_limit=args.rate_limit, faults=args.faults, reject=args.reject)
    except ValueError as exc:
        print(f"fakes: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(server, f"fake {args.api}", server.url, args.ready_file,
                                 {"api": args.api, "host": args.host, "port": server.port, "url": server.url})


def show_state(args: argparse.Namespace) -> int:
    with urllib.request.urlopen(f"{args.url.rstrip('/')}/_fake/state", timeout=60) as response:
        print(response.read().decode())
    return 0
