"""The request log: every API request with its site, status and fault, in memory and optionally as JSON lines.

Tests read it (GET /__sandbox/requests) to prove what a client did: that a resumed extraction did
not read a finished page twice, that a daily sync made the minimum number of requests. With
`--request-log FILE` each entry is also appended to FILE as one JSON line, flushed at once, so
the log survives a killed client and a stopped server.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

# Enough for any test or benchmark run; the oldest entries go first beyond it.
MAX_ENTRIES = 1_000_000


class RequestLog:
    def __init__(self, path: str | Path | None = None, max_entries: int = MAX_ENTRIES):
        self._entries: deque[dict] = deque(maxlen=max_entries)
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", buffering=1) if path else None  # noqa: SIM115

    def add(self, method: str, path: str, site: str | None, status: int, fault: str | None = None,
            seconds: float = 0.0) -> None:
        entry = {
            "time": round(time.time(), 6),
            "method": method,
            "path": path,
            "site": site,
            "status": status,
            "fault": fault,
            "ms": round(seconds * 1000, 3),
        }
        with self._lock:
            self._entries.append(entry)
            if self._file:
                self._file.write(json.dumps(entry) + "\n")

    def entries(self, site: str | None = None) -> list[dict]:
        with self._lock:
            items = list(self._entries)
        return [e for e in items if site is None or e["site"] == site]

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count

    def close(self) -> None:
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None
