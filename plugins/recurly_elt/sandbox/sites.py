"""A sandbox site: its API key, simulation, index, rate budget, faults and counters.

Several sites run in one server, each with its own data (the same generator under a seed
derived from the sandbox seed and the subdomain), its own rate budget and its own fault RNG,
as separate Recurly sites would. The API key selects the site, as on Recurly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import date
from typing import Callable, Protocol

from recurly_elt.sandbox.faults import FaultInjector, FaultSpec
from recurly_elt.sandbox.ids import derive_seed
from recurly_elt.sandbox.index import DEFAULT_EMBEDDED_LINE_ITEMS, EntryCache, SiteIndex
from recurly_elt.sandbox.ratelimit import SlidingWindowLimiter
from recurly_elt.sandbox.timestamps import from_micros


class Simulation(Protocol):
    """What the server reads from a generator (sandbox/simulation.py's SiteSimulation)."""

    now: object      # tz-aware UTC datetime
    objects: dict    # resource -> {id: API object}
    version: int

    def advance(self, days: int = 1) -> dict[str, int]: ...


class Site:
    def __init__(self, name: str, api_key: str, simulation: Simulation, seed: int,
                 limiter: SlidingWindowLimiter | None = None, faults: FaultSpec | None = None,
                 embedded_line_items: int = DEFAULT_EMBEDDED_LINE_ITEMS):
        if not api_key:
            raise ValueError(f"site {name!r} has an empty API key")
        self.name = name
        self.api_key = api_key
        self.sim = simulation
        self.seed = seed
        self.limiter = limiter or SlidingWindowLimiter(0)
        self.set_faults(faults or FaultSpec())
        self.statuses: Counter[int] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self.busy_seconds = 0.0  # time spent answering API requests (faults' delays included)
        self._lock = threading.Lock()
        self._cache = EntryCache(embedded_line_items)
        self.index_seconds = 0.0
        self.index = self._build()

    def _build(self) -> SiteIndex:
        started = time.perf_counter()
        index = self._cache.build(self.sim.version, self.sim.now, self.sim.objects,
                                  getattr(self.sim, "invoice_redemptions", None))  # none: a generator without coupons
        self.index_seconds = time.perf_counter() - started
        return index

    def current_index(self) -> SiteIndex:
        """The index of the simulation's current version (rebuilt if someone advanced it directly)."""
        index = self.index
        if index.version != self.sim.version:
            with self._lock:
                if self.index.version != self.sim.version:
                    self.index = self._build()
                index = self.index
        return index

    def advance(self, days: int) -> dict[str, int]:
        with self._lock:
            changed = self.sim.advance(days=days)
            self.index = self._build()
        return dict(changed)

    def set_faults(self, spec: FaultSpec) -> None:
        """New faults start a fresh RNG from the same seed, so a run is reproducible from the change."""
        self.faults = FaultInjector(spec, derive_seed(self.seed, "faults", size=4))

    def count(self, status: int, fault: str | None, seconds: float) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.busy_seconds += seconds
            if fault:
                self.fault_counts[fault] += 1

    def clock(self) -> dict:
        index = self.current_index()
        return {"now": from_micros(index.now), "version": index.version}

    def stats(self) -> dict:
        index = self.current_index()
        with self._lock:
            statuses = {str(k): v for k, v in sorted(self.statuses.items())}
            faults = dict(sorted(self.fault_counts.items()))
        return {
            **self.clock(),
            "objects": index.counts(),
            "requests": sum(self.statuses.values()),
            "statuses": statuses,
            "faults": faults,
            "fault_spec": str(self.faults.spec),
            "rate_limit": {"per_minute": self.limiter.per_minute, "window_seconds": self.limiter.window,
                           "capacity": self.limiter.capacity},
            "busy_seconds": round(self.busy_seconds, 3),
            "index_seconds": round(self.index_seconds, 3),
        }


def default_simulation_factory() -> Callable[..., Simulation]:
    from recurly_elt.sandbox.simulation import SiteSimulation

    return SiteSimulation


def build_sites(keys: dict[str, str], seed: int, accounts: int, start_date: date, until: date,
                rate_limit: int = 0, rate_window: float = 60.0, faults: str | FaultSpec | None = None,
                embedded_line_items: int = DEFAULT_EMBEDDED_LINE_ITEMS,
                simulation_factory: Callable[..., Simulation] | None = None) -> list[Site]:
    """One Site per {subdomain: api_key}, each simulated under its own derived seed."""
    factory = simulation_factory or default_simulation_factory()
    spec = faults if isinstance(faults, FaultSpec) else FaultSpec.parse(faults)
    if len(set(keys.values())) != len(keys):
        raise ValueError("each site needs its own API key")
    sites = []
    for subdomain, api_key in keys.items():
        site_seed = derive_seed(seed, subdomain, size=4)
        sim = factory(subdomain=subdomain, seed=site_seed, accounts=accounts, start_date=start_date, until=until)
        sites.append(Site(subdomain, api_key, sim, site_seed, SlidingWindowLimiter(rate_limit, rate_window),
                          spec, embedded_line_items))
    return sites
