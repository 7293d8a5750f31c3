"""Progress lines in the task log while a read runs: pages, records and records/s every few seconds."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("recurly_elt.extract")


class Progress:
    def __init__(self, label: str, every_seconds: float = 5.0, clock=time.monotonic):
        self.label = label
        self.every = every_seconds
        self.pages = 0
        self.records = 0
        self._clock = clock
        self._started = clock()
        self._last_log = self._started

    def page(self, records: int) -> None:
        self.pages += 1
        self.records += records
        now = self._clock()
        if now - self._last_log >= self.every:
            self._last_log = now
            self._log("reading")

    def done(self, status: str = "done") -> None:
        self._log(status)

    @property
    def seconds(self) -> float:
        return self._clock() - self._started

    def _log(self, what: str) -> None:
        seconds = max(self.seconds, 1e-9)
        log.info("%s %s: %d pages, %d records, %.0f records/s, %.1fs", self.label, what, self.pages,
                 self.records, self.records / seconds, seconds)
