"""Run tasks at the same moment, each with its own warehouse engine, as separate task processes would.

For the races of a fresh warehouse (first runs creating their tables): every task waits on one
barrier, so they start together; the tracebacks of those that fail are returned, each named, so
an assertion shows which statement lost the race.
"""

from __future__ import annotations

import threading
import traceback
from typing import Callable

import sqlalchemy as sa

from recurly_elt.warehouse.engine import create_engine_from_url


def failures_at_once(url: str, tasks: dict[str, Callable[[sa.Engine], object]]) -> list[str]:
    """Run every task of `tasks` (name -> callable taking its engine) at once; "name: traceback" of each failure."""
    start = threading.Barrier(len(tasks))
    failures: list[str] = []

    def run(name: str, task: Callable[[sa.Engine], object]) -> None:
        engine = create_engine_from_url(url)
        try:
            start.wait()
            task(engine)
        except BaseException as exc:  # noqa: BLE001 - collected and reported by the caller
            failures.append(f"{name}: {''.join(traceback.format_exception(exc))}")
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=item) for item in tasks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures
