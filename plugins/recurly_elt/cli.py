"""The `recurly-elt` console script.

One command group per concern; each group lives in its own module and is imported only when
its group is called, so `recurly-elt sandbox serve` never pays for pandas or Airflow.

A group module exposes:
    configure(parser: argparse.ArgumentParser, argv: list[str]) -> None
                                                          adds its sub-commands (argv: the words
                                                          after the group, to import lazily)
    run(args: argparse.Namespace) -> int                  runs the chosen sub-command
"""

from __future__ import annotations

import argparse
import importlib
import sys

GROUPS: dict[str, tuple[str, str]] = {
    "sandbox": ("recurly_elt.sandbox.cli", "the offline Recurly API v3 sandbox"),
    "local": ("recurly_elt.local.cli", "a local Airflow: start, load settings, backfill, summary, stop"),
    "fakes": ("recurly_elt.fakes.cli", "offline destination APIs (Braze, Klaviyo) for tests and try-outs"),
    "bench": ("recurly_elt.bench.cli", "benchmarks whose figures go to docs/benchmarks.md"),
}


def build_parser(group: str | None = None, argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recurly-elt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for name, (module_name, help_text) in GROUPS.items():
        group_parser = sub.add_parser(name, help=help_text)
        if name == group:  # only the chosen group's module is imported
            importlib.import_module(module_name).configure(group_parser, list(argv or [])[1:])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    group = argv[0] if argv and argv[0] in GROUPS else None
    args = build_parser(group, argv).parse_args(argv)
    return int(importlib.import_module(GROUPS[args.group][0]).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
