"""Faults on demand, reproducible by seed: 5xx, slow and dropped responses, malformed bodies, 429 storms.

A spec is a comma-separated list, e.g. "5xx=0.1,slow=0.05:2.0,drop=0.02,malformed=0.02,storm=30:5":
  5xx=P          share P of requests answered 500, 502 or 503 with the error envelope
  slow=P:S       share P delayed by S seconds before the response (default 2 s)
  drop=P         share P whose connection is closed mid-response (headers sent, body cut short)
  malformed=P    share P answered 200 with a truncated, invalid JSON body
  lost=P         share P processed (a write is applied), then the connection closed with no answer
                 at all: the client cannot tell it from a drop, but the request took effect
  storm=EVERY:D  the last D seconds of every EVERY seconds (counted from the whole second at which
                 the server starts or the faults are set) answer 429
                 `rate_limited` whatever the budget (Remaining 0, Reset at the storm's end)

5xx, drop, malformed and lost exclude each other (their shares must add up to at most 1); slow adds a
delay to whatever else happens. Each site draws from its own RNG seeded from the site's seed, and
every request draws the same number of values whatever the outcome, so the same seed and the same
request sequence give the same faults.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

SERVER_ERRORS = (500, 502, 503)


@dataclass(frozen=True)
class FaultSpec:
    server_error: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 2.0
    drop: float = 0.0
    malformed: float = 0.0
    lost: float = 0.0
    storm_every: float = 0.0
    storm_seconds: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> "FaultSpec":
        values: dict = {}
        for item in filter(None, (part.strip() for part in (text or "").split(","))):
            name, sep, value = item.partition("=")
            name = name.strip().lower()
            try:
                if not sep:
                    raise ValueError("expected NAME=VALUE")
                if name == "5xx":
                    values["server_error"] = _share(value)
                elif name == "slow":
                    share, _, seconds = value.partition(":")
                    values["slow"] = _share(share)
                    if seconds:
                        values["slow_seconds"] = _positive(seconds)
                elif name in ("drop", "malformed", "lost"):
                    values[name] = _share(value)
                elif name == "storm":
                    every, colon, seconds = value.partition(":")
                    if not colon:
                        raise ValueError("expected storm=EVERY:SECONDS")
                    values["storm_every"], values["storm_seconds"] = _positive(every), _positive(seconds)
                    if values["storm_seconds"] >= values["storm_every"]:
                        raise ValueError("a storm must be shorter than its period")
                else:
                    raise ValueError("unknown fault (known: 5xx, slow, drop, malformed, lost, storm)")
            except ValueError as exc:
                raise ValueError(f"bad fault {item!r} in {text!r}: {exc}") from None
        spec = cls(**values)
        if spec.server_error + spec.drop + spec.malformed + spec.lost > 1:
            raise ValueError(f"fault shares 5xx + drop + malformed + lost exceed 1 in {text!r}")
        return spec

    def __str__(self) -> str:
        parts = []
        if self.server_error:
            parts.append(f"5xx={self.server_error:g}")
        if self.slow:
            parts.append(f"slow={self.slow:g}:{self.slow_seconds:g}")
        if self.drop:
            parts.append(f"drop={self.drop:g}")
        if self.malformed:
            parts.append(f"malformed={self.malformed:g}")
        if self.lost:
            parts.append(f"lost={self.lost:g}")
        if self.storm_every:
            parts.append(f"storm={self.storm_every:g}:{self.storm_seconds:g}")
        return ",".join(parts)

    @property
    def active(self) -> bool:
        return bool(self.server_error or self.slow or self.drop or self.malformed or self.lost or self.storm_every)


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("a share is between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


@dataclass(frozen=True)
class Fault:
    """What to do to one response. `kind` is None for a clean response."""

    kind: str | None = None          # "5xx", "drop", "malformed", "lost", "storm"
    status: int | None = None        # for 5xx
    delay: float = 0.0               # seconds to wait first (slow)
    storm_ends: float | None = None  # epoch seconds, for storm

    @property
    def label(self) -> str | None:
        """How the request log names it, e.g. "503", "slow+drop"."""
        names = (["slow"] if self.delay else []) + ([str(self.status) if self.kind == "5xx" else self.kind]
                                                     if self.kind else [])
        return "+".join(names) or None


NO_FAULT = Fault()


@dataclass
class FaultInjector:
    """One site's fault decisions: a seeded RNG and the storm clock."""

    spec: FaultSpec
    seed: int
    # Storm periods start on a whole epoch second, so the whole-second X-RateLimit-Reset and
    # Retry-After a storm answers (Recurly's headers are whole seconds) are its exact end.
    started: float = field(default_factory=lambda: float(math.floor(time.time())))
    clock: object = time.time

    def __post_init__(self):
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def decide(self) -> Fault:
        spec = self.spec
        if not spec.active:
            return NO_FAULT
        now = self.clock()
        if spec.storm_every:
            phase = (now - self.started) % spec.storm_every
            if phase >= spec.storm_every - spec.storm_seconds:
                return Fault("storm", storm_ends=now + spec.storm_every - phase)
        with self._lock:  # same number of draws per request, whatever the outcome
            pick, slow, code = self._rng.random(), self._rng.random(), self._rng.choice(SERVER_ERRORS)
        delay = spec.slow_seconds if slow < spec.slow else 0.0
        if pick < spec.server_error:
            return Fault("5xx", status=code, delay=delay)
        pick -= spec.server_error
        if pick < spec.drop:
            return Fault("drop", delay=delay)
        pick -= spec.drop
        if pick < spec.malformed:
            return Fault("malformed", delay=delay)
        pick -= spec.malformed
        if pick < spec.lost:
            return Fault("lost", delay=delay)
        return Fault(delay=delay) if delay else NO_FAULT
