"""`recurly-elt bench ...`: one module per benchmark, each printing one JSON line of figures.

A benchmark module exposes configure(parser) and run(args) -> int, like a CLI group.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "sandbox": ("recurly_elt.bench.sandbox", "page rate of the sandbox and its day-to-day churn"),
    "extract": ("recurly_elt.bench.extract", "extract everything from a sandbox into a fresh warehouse"),
    "transform": ("recurly_elt.bench.transform", "transform staging into MRR, events and health"),
    "load": ("recurly_elt.bench.load", "deliver a transformed warehouse to an offline Braze or Klaviyo"),
}


def configure(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    chosen = next((a for a in (sys.argv[1:] if argv is None else argv) if a in BENCHMARKS), None)
    for name, (module_name, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_bench_module=module_name)
        if name == chosen:  # only the chosen benchmark's module is imported
            importlib.import_module(module_name).configure(p)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._bench_module).run(args) or 0)
