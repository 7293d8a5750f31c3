"""Answers over the transform's outputs, kept until the transform runs again.

MRR, movements, segments and health change only when the transform writes, and every transform
run adds a row to `transform_run_log`. So an answer is kept under (question, arguments, the log's
highest id): the first request after a transform computes it, the next ones reuse it, and a new
transform run makes every kept answer stale at once. Run-history answers are never kept (they
change while a run is going). Bounded (least recently used go first) and shared by the API
server's threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

import sqlalchemy as sa

MAX_ENTRIES = 256


class TransformVersionCache:
    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def version(conn: sa.Connection) -> Any:
        """The transform's latest run (None before any): what every kept answer depends on."""
        if not sa.inspect(conn).has_table("transform_run_log"):
            return None
        return conn.execute(sa.text("SELECT MAX(id) FROM transform_run_log")).scalar()

    def get(self, key: tuple, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
        value = compute()  # outside the lock: two first requests may both compute, both get the same
        with self._lock:
            self.misses += 1
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value
