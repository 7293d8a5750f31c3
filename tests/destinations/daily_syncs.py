"""The end-to-end loop every destination test runs: a one-time import, then for each of the 7 days
after it the day transformed, a daily sync, the fake compared with the warehouse, and the same day
run again, which must send nothing. And the same runs without the checks, for the fault tests,
which check what is left at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from .fakes_running import state
from .warehouse_data import DAYS, IMPORT_DAY, transform_day


@dataclass
class Syncs:
    first: object                                 # the import's result
    imported: dict                                # the fake's state right after the import
    dailies: list = field(default_factory=list)   # each day's daily sync result, in order
    fake: dict | None = None                      # the fake's state after the last day


def import_then_daily_syncs(run, warehouse, server, compare, *, backfill: bool = False,
                            each_day=None) -> Syncs:
    """`run` is the test file's own runner (`run(warehouse, server, run_id=, day=, **kw)`),
    `compare(warehouse, fake_state)` its assertion that the fake holds what the warehouse maps to.
    `backfill`: the import, and each day's rerun, deliver every event whatever its age (the rerun
    then also proves a repeated backfill sends nothing). `each_day(day, daily, fake_state)` adds a
    test's own checks after each day's comparison. Asserted here: the import succeeds and every
    run sends exactly the requests its batch limits allow (no split, no retry on a healthy fake);
    the fake equals the warehouse after the import and after every day; each rerun sends nothing
    and the fake receives no request."""
    extra = {"backfill": True} if backfill else {}
    first = run(warehouse, server, run_id="import", day=IMPORT_DAY, **extra)
    assert first.status == "success", first.status
    assert first.total("requests") == first.total("min_requests")
    syncs = Syncs(first=first, imported=state(server))
    compare(warehouse, syncs.imported)
    for day in DAYS:
        transform_day(warehouse, day)
        daily = run(warehouse, server, run_id=f"daily-{day}", day=day)
        assert daily.status == "success", (day, daily.status)
        assert daily.total("requests") == daily.total("min_requests"), day
        fake = state(server)
        compare(warehouse, fake)
        if each_day is not None:
            each_day(day, daily, fake)
        syncs.dailies.append(daily)
        again = run(warehouse, server, run_id=f"again-{day}", day=day, **extra)
        assert again.total("requests") == 0 and again.total("sent") == 0, day
        assert state(server)["server"]["requests"] == fake["server"]["requests"], day
    syncs.fake = state(server)
    return syncs


def import_then_days(run, warehouse, server, days: int, *, backfill: bool = False) -> None:
    """The one-time import (a backfill if `backfill`), then the daily syncs of the first `days`
    days, each after its day is transformed; nothing checked (under faults, runs may fail)."""
    run(warehouse, server, run_id="import", day=IMPORT_DAY, **({"backfill": True} if backfill else {}))
    for day in DAYS[:days]:
        transform_day(warehouse, day)
        run(warehouse, server, run_id=f"daily-{day}", day=day)
