"""The sandbox HTTP server: an offline Recurly API v3 (v2021-02-25) on loopback.

One request goes through, in order:
  authentication  the API key (HTTP Basic user name, empty password) selects the site   -> 401
  API version     Accept must name application/vnd.recurly.v2021-02-25 (or +json, or
                  the `latest` alias); Recurly requires a version, so a missing one fails -> 406
  rate limit      the site's sliding window                                              -> 429
  faults          the site's seeded fault decisions (5xx, 429 storm, slow, drop, malformed, lost)
  hostile         a named scenario set on the site (hostile.py) may answer instead of the
                  routing or rewrite what it answered, for the requests to its list
  routing         routes.py answers from the site's current index                       -> 400/404
Every API response carries Recurly-Version and, once the site is known, X-RateLimit-*.
/__sandbox/... endpoints (control.py) skip all of it.

The HTTP plumbing (keep-alive, one send per answer, a clean stop) is `recurly_elt.loopback`, shared
with the fake destinations.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import socket
import time
import traceback
from urllib.parse import parse_qsl, urlsplit

from recurly_elt.loopback import LoopbackHandler, LoopbackServer
from recurly_elt.sandbox import control, hostile, routes
from recurly_elt.sandbox.errors import ApiError
from recurly_elt.sandbox.faults import NO_FAULT, Fault
from recurly_elt.sandbox.requestlog import RequestLog
from recurly_elt.sandbox.sites import Site

API_VERSION = "v2021-02-25"
CONTENT_TYPE = f"application/vnd.recurly.{API_VERSION}+json; charset=utf-8"
ACCEPTED = {f"application/vnd.recurly.{v}{s}" for v in (API_VERSION, "latest") for s in ("", "+json")}
STATUS_ERROR_TYPES = {500: "internal_server_error", 502: "service_not_available", 503: "service_not_available"}


class SandboxServer(LoopbackServer):
    """Serves the given sites; start() runs it in a background thread, stop() ends it cleanly."""

    thread_name = "recurly-sandbox"

    def __init__(self, sites: list[Site], host: str = "127.0.0.1", port: int = 0,
                 request_log: RequestLog | None = None):
        self.sites_by_key = {s.api_key: s for s in sites}
        self.sites_by_name = {s.name: s for s in sites}
        if len(self.sites_by_key) != len(sites) or len(self.sites_by_name) != len(sites):
            raise ValueError("site names and API keys must be unique")
        self.request_log = request_log or RequestLog()
        self.hostile: dict[str, hostile.Active] = {}  # site name -> its hostile scenario
        super().__init__((host, port), RequestHandler)

    def before_serving(self) -> None:
        for site in self.sites_by_name.values():  # storm periods count from when serving starts
            site.set_faults(site.faults.spec)

    def stop(self) -> None:
        """Stop serving (see LoopbackServer.stop), then close the request log file."""
        super().stop()
        self.request_log.close()

    def set_hostile(self, site: str, name: str | None) -> hostile.Active | None:
        """Set (or, with no name, clear) the hostile scenario of a site; returns it."""
        if site not in self.sites_by_name:
            raise ValueError(f"no sandbox site {site!r}")
        if not name:
            self.hostile.pop(site, None)
            return None
        active = self.hostile[site] = hostile.Active(hostile.get(name))
        return active


def _routed(site: Site, method: str, path: str, params: list[tuple[str, str]]) -> hostile.Answer:
    """What the routing answers, errors included (the hostile layer rewrites either)."""
    try:
        answer = routes.handle(site.current_index(), method, path, params, site.name)
    except ApiError as err:
        return hostile.Answer(err.status, err.body(), dict(err.headers))
    return hostile.Answer(200, answer.body, {}, answer.total)


class RequestHandler(LoopbackHandler):
    server_version = "recurly-sandbox"
    server: SandboxServer

    def do_HEAD(self) -> None:  # Recurly answers HEAD on its lists (the count without the page)
        self.dispatch("HEAD")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    # -- dispatch ----------------------------------------------------------------------------

    def dispatch(self, method: str) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        body = self.read_body() or b""  # a bad Content-Length: no body, and the connection closes
        if split.path.startswith(control.PREFIX):
            self._control(method, split.path, dict(parse_qsl(split.query, keep_blank_values=True)), body)
            return
        site: Site | None = None
        fault = NO_FAULT
        headers: dict[str, str] = {}
        total = None
        try:
            site = self._authenticate()
            self._check_version()
            decision = site.limiter.acquire()
            headers.update(decision.headers())
            if not decision.allowed:
                raise ApiError(429, "rate_limited", "You have made too many API requests in the "
                               f"last {site.limiter.window:g} seconds; retry after X-RateLimit-Reset.")
            fault = site.faults.decide()
            if fault.delay:
                time.sleep(fault.delay)
            self._raise_injected(fault, headers)
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "bad_request", f"the sandbox serves GET and HEAD only, not {method}")
            params = parse_qsl(split.query, keep_blank_values=True)
            scenario = self.server.hostile.get(site.name)
            if scenario is not None and scenario.applies(split.path):
                request = hostile.Request(method, split.path, params, self.server.url, site.api_key)
                answer = scenario.respond(request, lambda p: _routed(site, method, split.path, p))
                status, payload, total = answer.status, answer.body, answer.total
                headers.update(answer.headers)
            else:
                answer = routes.handle(site.current_index(), method, split.path, params, site.name)
                status, payload, total = 200, answer.body, answer.total
        except ApiError as err:
            status, payload = err.status, err.body()
            headers.update(err.headers)
        except Exception:  # a bug: say so on stderr, answer as Recurly would, keep serving
            traceback.print_exc()
            err = ApiError(500, "internal_server_error", f"the sandbox failed on {method} {split.path}")
            status, payload = err.status, err.body()
        if total is not None:
            headers["Recurly-Total-Records"] = str(total)
        # Logged before the response is sent: a client that has its answer finds its request in
        # the log (a test reading GET /__sandbox/requests right after its last call sees it).
        seconds = time.perf_counter() - started
        if site is not None:
            site.count(status, fault.label, seconds)
        self.server.request_log.add(method, self.path, site.name if site else None, status, fault.label, seconds)
        self._respond(method, status, payload, headers, fault)

    def _authenticate(self) -> Site:
        header = self.headers.get("Authorization") or ""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            raise ApiError(401, "unauthorized", "Please provide an API key as the HTTP Basic user name.",
                           headers={"WWW-Authenticate": 'Basic realm="Recurly"'})
        try:
            api_key = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            api_key = ""
        site = self.server.sites_by_key.get(api_key)
        if site is None:  # never echo the key
            raise ApiError(401, "invalid_api_key", "The API key is not valid for any site.",
                           headers={"WWW-Authenticate": 'Basic realm="Recurly"'})
        return site

    def _check_version(self) -> None:
        accepts = {part.split(";")[0].strip().lower() for part in (self.headers.get("Accept") or "").split(",")}
        if not accepts & ACCEPTED:
            raise ApiError(406, "invalid_api_version",
                           f"Send Accept: application/vnd.recurly.{API_VERSION} (or +json); "
                           "got " + (self.headers.get("Accept") or "no Accept header") + ".")

    @staticmethod
    def _raise_injected(fault: Fault, headers: dict[str, str]) -> None:
        if fault.kind == "storm":
            reset = math.ceil(fault.storm_ends)
            headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset),
                            "Retry-After": str(max(1, reset - int(time.time())))})
            raise ApiError(429, "rate_limited", "You have made too many API requests; retry after "
                           "X-RateLimit-Reset.")
        if fault.kind == "5xx":
            raise ApiError(fault.status, STATUS_ERROR_TYPES[fault.status],
                           "The service is temporarily unavailable; please retry.")

    # -- responses ---------------------------------------------------------------------------

    def _control(self, method: str, path: str, params: dict[str, str], body: bytes) -> None:
        try:
            status, payload = control.handle(self.server, method, path, params, body)
            data = json.dumps(payload).encode()
        except ApiError as err:
            status, data = err.status, err.body()
        self.write(status, {"Content-Type": "application/json"}, data, head_only=method == "HEAD")

    def _respond(self, method: str, status: int, body: bytes, headers: dict[str, str], fault: Fault) -> None:
        headers = {"Recurly-Version": f"recurly.{API_VERSION}", "Content-Type": CONTENT_TYPE, **headers}
        head_only = method == "HEAD"
        if fault.kind in ("drop", "lost"):  # drop: the full length announced, half of it sent, then
            self.close_connection = True     # the socket closed; lost: closed with no answer at all
            try:
                if not head_only and fault.kind == "drop":
                    self.wfile.write(self.head_bytes(status, headers, len(body)) + body[: len(body) // 2])
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the client left first
                pass
            return
        if fault.kind == "malformed" and not head_only and body:
            body = body[: max(1, len(body) // 2)]  # a complete response with broken JSON
        self.write(status, headers, body, head_only=head_only)
