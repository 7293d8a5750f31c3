"""The Recurly API v3 client: one site, one HTTP session, its rate budget and retry policy.

It knows the transport facts of the API (Basic auth with the key as user name, the Accept version
header, the list envelope and its `next` cursor links, the error envelope) and nothing about
staging. `pages()` yields one list page at a time so the caller can write each page before asking
for the next; `next` links already carry the original filters, so a saved link resumes a read.

Failures are sorted once, here:
- 5xx, timeouts, dropped connections and malformed bodies: retried with backoff (RetryPolicy);
- 429: waited out until the reset (RateBudget), never hammered;
- 401/403/406 and a 404 on a list: RecurlyConfigError at once, naming the connection and site;
- other 4xx: RecurlyRequestError (the caller may change the request).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urljoin

import msgspec
import requests

from recurly_elt.recurly.errors import (
    MalformedResponse,
    RecurlyConfigError,
    RecurlyRequestError,
    RecurlyUnavailableError,
)
from recurly_elt.recurly.ratebudget import RateBudget
from recurly_elt.recurly.retry import RetryPolicy
from recurly_elt.recurly.sites import Site

log = logging.getLogger(__name__)

API_VERSION = "v2021-02-25"
ACCEPT = f"application/vnd.recurly.{API_VERSION}+json"
PAGE_SIZE = 200  # the API's maximum
USER_AGENT = "recurly-elt"

_TRANSIENT = (
    requests.ConnectionError,   # refused, reset, dropped mid-response (RemoteDisconnected)
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,   # body cut short
    requests.exceptions.ContentDecodingError,
)
_FAIL_FAST = {401: "the API key was refused", 403: "the API key lacks permission",
              406: "the API version was refused"}


@dataclass
class RequestStats:
    """What the client did; read by the extractor after each page for the run log."""
    requests: int = 0
    status_429: int = 0
    retries: int = 0
    waited_seconds: float = 0.0

    def snapshot(self) -> "RequestStats":
        return RequestStats(self.requests, self.status_429, self.retries, self.waited_seconds)

    def since(self, earlier: "RequestStats") -> dict[str, float]:
        return {"requests": self.requests - earlier.requests, "status_429": self.status_429 - earlier.status_429,
                "retries": self.retries - earlier.retries}


class _ListEnvelope(msgspec.Struct):
    """A list response with each record left undecoded: its bytes become the staged raw_json."""
    data: list[msgspec.Raw]
    object: str | None = None
    has_more: bool = False
    next: str | None = None


_DECODE_LIST = msgspec.json.Decoder(_ListEnvelope).decode


@dataclass
class Page:
    records: list[msgspec.Raw]  # each record's JSON bytes, as the API sent them
    next_url: str | None        # the `next` link when has_more, else None
    url: str                    # what was requested (path and query), for logs

    @cached_property
    def data(self) -> list[dict]:
        """The records decoded (for callers that need whole objects rather than staging rows)."""
        return [msgspec.json.decode(raw) for raw in self.records]


@dataclass
class RecurlyClient:
    site: Site
    session: requests.Session = field(default_factory=requests.Session)
    budget: RateBudget = field(default_factory=RateBudget)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stats: RequestStats = field(default_factory=RequestStats)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.session.auth = (self.site.api_key, "")
        self.session.headers.update({"Accept": ACCEPT, "User-Agent": USER_AGENT})

    # -- public -------------------------------------------------------------------------------
    def pages(self, path: str, params: dict[str, Any] | None = None, *, start_url: str | None = None
              ) -> Iterator[Page]:
        """List pages of `path` with `params`, or from a saved `next` link (`start_url`)."""
        url, query = (start_url, None) if start_url else (path, dict(params or {}))
        while url:
            body = self._get(url, query, _decode_list)
            next_url = body.next if body.has_more else None
            if body.has_more and not next_url:
                raise RecurlyUnavailableError(f"{self._who()}: list page of {url} has has_more but no next link")
            yield Page(records=body.data, next_url=next_url,
                       url=url if query is None else f"{url}?{urlencode(query)}")
            url, query = next_url, None

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> dict:
        """One GET with the budget, retries and error handling; returns the decoded JSON object."""
        return self._get(url, params, _decode_object)

    def _get(self, url: str, params: dict[str, Any] | None, decode: Callable[[bytes], Any]) -> Any:
        """One GET; `decode` turns a 2xx body into the result or raises MalformedResponse (retried)."""
        full_url = urljoin(self.site.base_url + "/", url.lstrip("/"))
        attempt = 0
        rate_limited_for = 0.0
        while True:
            self.stats.waited_seconds += self.budget.wait(self.sleep)
            attempt += 1
            self.stats.requests += 1
            try:
                resp = self.session.get(full_url, params=params,
                                        timeout=(self.retry.connect_timeout, self.retry.read_timeout))
            except _TRANSIENT as exc:
                self._retry_or_raise(attempt, url, f"{type(exc).__name__}")
                continue
            self.budget.observe(resp.headers)
            status = resp.status_code
            if status == 429:
                self.stats.status_429 += 1
                wait = self.budget.rate_limited_wait(resp.headers)
                rate_limited_for += wait
                if rate_limited_for > self.retry.max_rate_limited_seconds:
                    raise RecurlyUnavailableError(
                        f"{self._who()}: still rate limited after waiting {rate_limited_for:.0f}s for {url}",
                        status=429, error_type="rate_limited")
                log.info("%s: rate limited (429), waiting %.1fs for the budget to reset", self._who(), wait)
                self.stats.waited_seconds += wait
                self.sleep(wait)
                attempt -= 1  # waiting out the budget is not a failed attempt
                continue
            if status >= 500:
                self._retry_or_raise(attempt, url, f"HTTP {status} {_error_type(resp)}".rstrip())
                continue
            if status >= 400:
                raise self._client_error(resp, url)
            try:
                return decode(resp.content)
            except MalformedResponse as exc:
                self._retry_or_raise(attempt, url, f"malformed body ({exc})")

    # -- internals ----------------------------------------------------------------------------
    def _who(self) -> str:
        return f"Recurly connection {self.site.conn_id!r} site {self.site.subdomain!r}"

    def _retry_or_raise(self, attempt: int, url: str, reason: str) -> None:
        if attempt >= self.retry.max_attempts:
            raise RecurlyUnavailableError(f"{self._who()}: {url} failed {attempt} times, last: {reason}")
        wait = self.retry.backoff(attempt)
        self.stats.retries += 1
        self.stats.waited_seconds += wait
        log.warning("%s: %s on %s, retry %d in %.2fs", self._who(), reason, url, attempt, wait)
        self.sleep(wait)

    def _client_error(self, resp: requests.Response, url: str):
        error_type = _error_type(resp)
        message = _error_message(resp)
        path = url.split("?", 1)[0]
        if resp.status_code in _FAIL_FAST or (resp.status_code == 404 and path.count("/") <= 1):
            reason = _FAIL_FAST.get(resp.status_code, "the list endpoint does not exist on this host")
            return RecurlyConfigError(
                f"{self._who()} ({self.site.base_url}): {reason} (HTTP {resp.status_code} {error_type}: "
                f"{message}); check the connection's host/region and API key",
                status=resp.status_code, error_type=error_type)
        return RecurlyRequestError(f"{self._who()}: {path} answered HTTP {resp.status_code} {error_type}: {message}",
                                   status=resp.status_code, error_type=error_type)


def _decode_object(content: bytes) -> dict:
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError as exc:
        raise MalformedResponse(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedResponse("not a JSON object")
    return body


def _decode_list(content: bytes) -> _ListEnvelope:
    """The list envelope; the records stay bytes, but msgspec has checked they are well-formed JSON."""
    try:
        body = _DECODE_LIST(content)
    except msgspec.ValidationError as exc:
        raise MalformedResponse(f"not a list envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedResponse(f"not JSON: {exc}") from None
    if body.object != "list":
        raise MalformedResponse(f"not a list envelope (object {body.object!r})")
    return body


def _error_body(resp: requests.Response) -> dict:
    try:
        err = resp.json().get("error")
        return err if isinstance(err, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _error_type(resp: requests.Response) -> str:
    return str(_error_body(resp).get("type") or "")


def _error_message(resp: requests.Response) -> str:
    return str(_error_body(resp).get("message") or resp.reason or "")[:300]
