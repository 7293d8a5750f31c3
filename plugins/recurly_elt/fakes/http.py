"""The HTTP side every fake destination shares: loopback server, rate limit, faults, state endpoint.

One API request goes through, in order:
  control      /_fake/state (GET: what the fake holds), /_fake/reset (POST), /_fake/faults (PUT,
               body = a fault spec) and /_fake/reject (PUT, body = a share): no key, never
               limited or faulted
  auth         the app checks its vendor's header                                   -> 401
  rate limit   fixed windows as the vendors count them (FixedWindowLimiter, on the sandbox's
               limiter and Decision), vendor headers                                 -> 429
  faults       the sandbox's seeded faults (sandbox/faults.py): 5xx, storm (429), slow, drop
               (the connection closed before the request is applied), malformed (a truncated
               body; the request *was* applied, as when a proxy cuts an answer), lost (the
               request *was* applied, then the connection closed with no answer: what a client
               sees as a drop, but the destination holds the data)
  app          the vendor's own validation and answer
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from recurly_elt.loopback import LoopbackHandler, LoopbackServer
from recurly_elt.sandbox.faults import NO_FAULT, FaultInjector, FaultSpec
from recurly_elt.sandbox.ratelimit import Decision, SlidingWindowLimiter

CONTROL = "/_fake/"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict | None = None
    content_type: str = "application/json"


def json_reply(status: int, payload, **kw) -> Reply:
    return Reply(status, json.dumps(payload).encode() if payload is not None else b"", **kw)


class FixedWindowLimiter(SlidingWindowLimiter):
    """N requests per window of S seconds, the windows aligned on the clock (Braze's reset on the
    hour, Klaviyo's 1 s and 1 min windows): Reset is the end of the current window. Same interface
    and Decision as the sandbox's sliding window, whose constructor checks the figures."""

    def __init__(self, capacity: int, window_seconds: float, clock=time.time):
        super().__init__(math.ceil(capacity * 60 / window_seconds), window_seconds, clock)
        self.capacity = capacity
        self._window_start = None
        self._count = 0

    def acquire(self) -> Decision:
        now = self._clock()
        with self._lock:
            start = math.floor(now / self.window) * self.window
            if start != self._window_start:
                self._window_start, self._count = start, 0
            allowed = self._count < self.capacity
            if allowed:
                self._count += 1
            return Decision(allowed, self.capacity, self.capacity - self._count, math.ceil(start + self.window))


def parse_rate_limit(spec: str | None) -> SlidingWindowLimiter:
    """`N/S` = N requests per fixed window of S seconds, `N` = N per minute, empty or 0 = off."""
    text = (spec or "").strip()
    if not text or text == "0":
        return SlidingWindowLimiter(0)
    count, _, seconds = text.partition("/")
    try:
        n, window = int(count), float(seconds or 60)
        if n <= 0 or window <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad --rate-limit {spec!r}: expected N/SECONDS (e.g. 3000/3) or N per minute") from None
    return FixedWindowLimiter(n, window)


class App:
    """A vendor API. Subclasses implement authenticate, rate_headers, handle and state."""

    name = "fake"

    def __init__(self, api_key: str, seed: int = 42, reject: float = 0.0):
        self.api_key, self.seed, self.reject = api_key, seed, reject
        self.lock = threading.Lock()  # requests change state one at a time, as a log would

    def authenticate(self, headers) -> Reply | None:
        raise NotImplementedError

    def rate_headers(self, decision: Decision) -> dict[str, str]:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        raise NotImplementedError

    def json_body(self, body: bytes, max_bytes: int, not_json: str) -> tuple[object, Reply | None]:
        """(the request's JSON document, None), or (None, the vendor's error) for a body over
        `max_bytes` (413) or not JSON (400, `not_json`): what every JSON API checks first."""
        if len(body) > max_bytes:
            return None, self.error(413, "Request Entity Too Large")
        try:
            return json.loads(body), None
        except ValueError:
            return None, self.error(400, not_json)

    def handle(self, method: str, path: str, query: dict, headers, body: bytes) -> Reply:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class FakeServer(LoopbackServer):
    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0, limiter: SlidingWindowLimiter | None = None,
                 faults: str = "", seed: int = 42):
        self.app = app
        self.thread_name = f"fake-{app.name}"
        self.limiter = limiter or SlidingWindowLimiter(0)
        self.seed = seed
        self.set_faults(faults)
        self.statuses: Counter[int] = Counter()
        self.fault_counts: Counter[str] = Counter()
        super().__init__((host, port), Handler)

    def set_faults(self, spec: str) -> None:
        self.faults = FaultInjector(FaultSpec.parse(spec), seed=self.seed)

    def before_serving(self) -> None:
        self.set_faults(str(self.faults.spec))  # storm periods count from when serving starts

    def stats(self) -> dict:
        return {"requests": sum(self.statuses.values()), "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "faults": dict(self.fault_counts), "fault_spec": str(self.faults.spec),
                "rate_limit": {"capacity": self.limiter.capacity, "window_s": self.limiter.window}
                if self.limiter.enabled else None}


class Handler(LoopbackHandler):
    server_version = "fake-destination"
    server: FakeServer

    def dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        body = self.read_body()
        if body is None:
            self.write(400, {"Content-Type": "text/plain"}, b"bad Content-Length")
            return
        if split.path.startswith(CONTROL):
            status, headers, data = self._control(method, split.path[len(CONTROL):].strip("/"), body)
            self.write(status, headers, data)
            return
        app, server = self.server.app, self.server
        headers: dict[str, str] = {}
        fault = NO_FAULT
        try:
            reply = app.authenticate(self.headers)
            if reply is None:
                decision = server.limiter.acquire()
                headers.update(app.rate_headers(decision))
                if not decision.allowed:
                    reply = app.error(429, "Too many requests: retry after the rate limit resets.")
                    headers["Retry-After"] = str(max(1, decision.reset - int(time.time())))
            if reply is None:
                fault = server.faults.decide()
                if fault.kind:
                    server.fault_counts[fault.kind] += 1
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.kind == "storm":
                    wait = max(1, math.ceil(fault.storm_ends - time.time()))
                    headers.update(app.rate_headers(Decision(False, server.limiter.capacity or 1, 0,
                                                             math.ceil(fault.storm_ends))))
                    headers["Retry-After"] = str(wait)
                    reply = app.error(429, "Too many requests (storm): retry later.")
                elif fault.kind == "5xx":
                    reply = app.error(fault.status, "The service is temporarily unavailable.")
                elif fault.kind == "drop":  # closed before the request is applied
                    self._hang_up()
                    return
            if reply is None:
                with app.lock:
                    reply = app.handle(method, split.path, dict(parse_qsl(split.query)), self.headers, body)
                if fault.kind == "lost":  # applied, then closed with no answer
                    self._hang_up()
                    return
        except Exception:  # a bug in the fake: say so, answer 500, keep serving
            traceback.print_exc()
            reply = app.error(500, f"the fake failed on {method} {split.path}")
        server.statuses[reply.status] += 1
        headers.update(reply.headers or {})
        if reply.body:
            headers["Content-Type"] = reply.content_type
        data = reply.body
        if fault.kind == "malformed" and data:
            data = data[: max(1, len(data) // 2)]
        self.write(reply.status, headers, data)

    def _hang_up(self) -> None:
        """Close the connection without an answer (counted as status 0)."""
        self.server.statuses[0] += 1
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _control(self, method: str, route: str, body: bytes) -> tuple[int, dict, bytes]:
        server, app = self.server, self.server.app
        ctype = {"Content-Type": "application/json"}
        try:
            if (method, route) == ("GET", "state"):
                with app.lock:
                    state = {**app.state(), "server": server.stats()}
                return 200, ctype, json.dumps(state).encode()
            if (method, route) == ("POST", "reset"):
                with app.lock:
                    app.reset()
                server.statuses.clear()
                server.fault_counts.clear()
                return 200, ctype, b'{"reset": true}'
            if (method, route) == ("PUT", "faults"):
                server.set_faults(body.decode().strip())
                return 200, ctype, json.dumps({"faults": str(server.faults.spec)}).encode()
            if (method, route) == ("PUT", "reject"):
                share = float(body.decode().strip() or 0)
                if not 0 <= share <= 1:
                    raise ValueError("a share is between 0 and 1")
                app.reject = share
                return 200, ctype, json.dumps({"reject": share}).encode()
        except ValueError as exc:
            return 400, ctype, json.dumps({"error": str(exc)}).encode()
        return 404, ctype, json.dumps({"error": f"no control endpoint {method} /_fake/{route}"}).encode()

