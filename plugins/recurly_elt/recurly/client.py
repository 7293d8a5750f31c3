"""The Recurly API v3 client: one site, one HTTP session, its rate budget and retry policy.

It knows the transport facts of the API (Basic auth with the key as user name, the Accept version
header, the list envelope and its `next` cursor links, the error envelope) and nothing about
staging. `pages()` yields one list page at a time so the caller can write each page before asking
for the next; `next` links already carry the original filters, so a saved link resumes a read.

Every answer is untrusted:
- requests go only to the configured scheme and host: a `next` link (or a saved checkpoint link)
  to anywhere else is a `RecurlyUntrustedResponse` naming it, and redirects are never followed, so
  the key is never sent elsewhere;
- a `next` link seen before in the same read (A -> A, A -> B -> A) is a cursor loop, an error;
- a read may be given a page bound (from `Recurly-Total-Records`, see `count()` and `page_bound`);
  more pages than that is an error, not an endless read;
- every wait (pacing, 429, backoff) is capped by the policy's `max_wait_seconds` and logged;
- a 2xx answer of another API version than requested (`Recurly-Version`) is refused;
- messages built from what the server sent are scrubbed of the key (errors.scrub).

Failures are sorted once, here (http_retry.RetryPolicy does the waiting):
- 5xx, timeouts, dropped connections and malformed bodies: retried with backoff;
- 429: resumed exactly when the API says (`X-RateLimit-Reset`, else `Retry-After`), never hammered;
- 401/403/406 and a 404 on a list: RecurlyConfigError at once, naming the connection and site;
- other 4xx: RecurlyRequestError (the caller may change the request).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urlsplit

import msgspec
import requests

from recurly_elt.http_retry import RateLimited, RetryPolicy, Transient
from recurly_elt.recurly.errors import (
    MalformedResponse,
    RecurlyConfigError,
    RecurlyRequestError,
    RecurlyUnavailableError,
    RecurlyUntrustedResponse,
    scrub,
)
from recurly_elt.recurly.ratebudget import RateBudget
from recurly_elt.recurly.sites import Site

log = logging.getLogger(__name__)

API_VERSION = "v2021-02-25"
ACCEPT = f"application/vnd.recurly.{API_VERSION}+json"
VERSION_HEADER = "Recurly-Version"
TOTAL_RECORDS_HEADER = "Recurly-Total-Records"
PAGE_SIZE = 200  # the API's maximum
USER_AGENT = "recurly-elt"
# A read may list this share more pages than Recurly-Total-Records says (records updated while
# the read runs are listed again at its end), plus a few pages.
PAGE_BOUND_SLACK = 0.1
PAGE_BOUND_EXTRA = 5
# The largest response body read (a page of 200 invoices with their line items is about 1 MB):
# a bigger one is refused before it is held in memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024

_TRANSIENT = (
    requests.ConnectionError,   # refused, reset, dropped mid-response (RemoteDisconnected)
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,   # body cut short
    requests.exceptions.ContentDecodingError,
)
_FAIL_FAST = {401: "the API key was refused", 403: "the API key lacks permission",
              406: "the API version was refused"}


def page_bound(total_records: int, page_size: int = PAGE_SIZE) -> int:
    """The most pages a read of a list of `total_records` may take (see PAGE_BOUND_SLACK)."""
    pages = math.ceil(total_records / page_size)
    return pages + math.ceil(pages * PAGE_BOUND_SLACK) + PAGE_BOUND_EXTRA


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
NUL_ESCAPE = b"\\u0000"  # a NUL character in JSON: staging/rows.py checks such pages record by record


@dataclass
class Page:
    records: list[msgspec.Raw]  # each record's JSON bytes, as the API sent them
    next_url: str | None        # the `next` link when has_more, else None
    url: str                    # what was requested (path and query), for logs
    may_hold_nul: bool = True   # False: no record of the page holds a NUL escape (checked once)

    @cached_property
    def data(self) -> list[dict]:
        """The records decoded (for callers that need whole objects rather than staging rows)."""
        return [_decode_record(raw) for raw in self.records]


@dataclass
class RecurlyClient:
    site: Site
    session: requests.Session = field(default_factory=requests.Session)
    budget: RateBudget = field(default_factory=RateBudget)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stats: RequestStats = field(default_factory=RequestStats)
    sleep: Callable[[float], None] = time.sleep
    max_body_bytes: int = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        self.session.auth = (self.site.api_key, "")
        self.session.headers.update({"Accept": ACCEPT, "User-Agent": USER_AGENT})
        base = urlsplit(self.site.base_url)
        self._origin = (base.scheme.lower(), base.netloc.lower())
        self._base_path = base.path.rstrip("/")

    # -- public -------------------------------------------------------------------------------
    def pages(self, path: str, params: dict[str, Any] | None = None, *, start_url: str | None = None,
              max_pages: int | None = None, bound: str = f"the bound derived from {TOTAL_RECORDS_HEADER}") -> Iterator[Page]:
        """List pages of `path` with `params`, or from a saved `next` link (`start_url`, which must
        be a link of the same list on the configured host). At most `max_pages` pages; `bound` says
        where that number comes from, in the error of a list that goes on past it."""
        if start_url:
            self._check_link_of(start_url, path, "saved checkpoint link")
        url, query = (start_url, None) if start_url else (path, dict(params or {}))
        seen: set[str] = set()
        read = 0
        while url:
            body, may_hold_nul = self._request("GET", url, query, _decode_list)
            read += 1
            next_url = body.next if body.has_more else None
            shown = url if query is None else f"{url}?{urlencode(query)}"
            if body.has_more and not next_url:
                raise RecurlyUntrustedResponse(
                    f"{self._who()}: list page {self._safe(shown)} says has_more but gives no next link")
            if next_url is not None:
                self._check_link_of(next_url, path, f"next link of {self._safe(shown)}")
                if next_url in seen or next_url == url:
                    raise RecurlyUntrustedResponse(
                        f"{self._who()}: cursor loop in {path}: the next link {self._safe(next_url)} was "
                        f"already read in this read (after {read} pages)")
                if max_pages is not None and read >= max_pages:
                    raise RecurlyUntrustedResponse(
                        f"{self._who()}: {path} still has more after {read} pages, {bound} ({max_pages} "
                        "pages); the list does not end as announced")
                seen.add(next_url)
            yield Page(records=body.data, next_url=next_url, url=shown, may_hold_nul=may_hold_nul)
            url, query = next_url, None

    def count(self, path: str, params: dict[str, Any] | None = None) -> int | None:
        """`HEAD` of a list: its `Recurly-Total-Records` (None when the header is missing or not a count)."""
        headers = self._request("HEAD", path, dict(params or {}), None)
        value = (headers.get(TOTAL_RECORDS_HEADER) or "").strip()
        if not value.isdigit():
            log.warning("%s: HEAD %s has no usable %s (%r): the read has no page bound", self._who(), path,
                        TOTAL_RECORDS_HEADER, self._safe(value[:40]))
            return None
        return int(value)

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> dict:
        """One GET with the budget, retries and error handling; returns the decoded JSON object."""
        return self._request("GET", url, params, _decode_object)

    # -- one request --------------------------------------------------------------------------
    def _request(self, method: str, url: str, params: dict[str, Any] | None,
                 decode: Callable[[bytes], Any] | None) -> Any:
        """One request, retried by the policy; `decode` turns a 2xx body into the result or raises
        MalformedResponse (retried). Without `decode` the response headers are the result."""
        full_url = self._resolve(url)
        timeout = (self.retry.connect_timeout, self.retry.read_timeout)

        def attempt() -> Any:
            self.stats.waited_seconds += self._pace()
            self.stats.requests += 1
            try:
                resp = self.session.request(method, full_url, params=params, timeout=timeout,
                                            allow_redirects=False, stream=True)
                self._read_body(resp, url)
            except _TRANSIENT as exc:
                raise Transient(type(exc).__name__) from None
            self.budget.observe(resp.headers)
            status = resp.status_code
            if status == 429:
                self.stats.status_429 += 1
                raise RateLimited(self.budget.rate_limited_wait(resp.headers), "rate limited (429)")
            if status >= 500:
                raise Transient(f"HTTP {status} {self._safe(_error_type(resp))[:100]}".rstrip())
            if 300 <= status < 400:
                target = urlsplit(resp.headers.get("Location") or "")
                raise RecurlyUntrustedResponse(
                    f"{self._who()}: {self._safe(url)} answered a redirect (HTTP {status}) to "
                    f"{self._safe(f'{target.scheme}://{target.netloc}{target.path}')}; redirects are not followed")
            if status >= 400:
                raise self._client_error(resp, url)
            self._check_version(resp, url)
            if decode is None:
                return resp.headers
            try:
                return decode(resp.content)
            except MalformedResponse as exc:
                raise Transient(f"malformed body ({exc})") from None

        try:
            return self.retry.call(attempt, sleep=self.sleep, on_wait=lambda exc, seconds, failures:
                                   self._waiting(exc, seconds, failures, url))
        except Transient as exc:
            raise RecurlyUnavailableError(
                f"{self._who()}: {self._safe(url)} failed {self.retry.max_attempts} times, last: {exc.reason}") from None
        except RateLimited:
            raise RecurlyUnavailableError(
                f"{self._who()}: still rate limited after waiting {self.retry.max_rate_limited_seconds:.0f}s "
                f"for {self._safe(url)}", status=429, error_type="rate_limited") from None

    def _read_body(self, resp: requests.Response, url: str) -> None:
        """Read the body (streamed) up to `max_body_bytes`; a longer one is refused unread."""
        announced = resp.headers.get("Content-Length") or ""
        if announced.isdigit() and int(announced) > self.max_body_bytes:
            resp.close()
            raise self._too_big(url, f"announces {int(announced):,} bytes")
        chunks, size = [], 0
        for chunk in resp.iter_content(_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_body_bytes:
                resp.close()
                raise self._too_big(url, f"is over {size:,} bytes and still going")
            chunks.append(chunk)
        resp._content = b"".join(chunks)  # what resp.content and resp.json() read from now on

    def _too_big(self, url: str, what: str) -> RecurlyUntrustedResponse:
        return RecurlyUntrustedResponse(f"{self._who()}: the answer to {self._safe(url)} {what}; at most "
                                        f"{self.max_body_bytes:,} bytes are read")

    def _waiting(self, exc: BaseException, seconds: float, failures: int, url: str) -> None:
        self.stats.waited_seconds += seconds
        if isinstance(exc, RateLimited):
            capped = f" (the API asked for {exc.seconds:.0f}s; capped)" if exc.seconds > self.retry.max_wait_seconds else ""
            log.log(logging.WARNING if capped or seconds >= 60 else logging.INFO,
                    "%s: rate limited (429) on %s, resuming in %.2fs%s", self._who(), self._safe(url), seconds, capped)
            return
        self.stats.retries += 1
        log.warning("%s: %s on %s, retry %d in %.2fs", self._who(), self._safe(str(exc)), self._safe(url),
                    failures, seconds)

    def _pace(self) -> float:
        """Wait for the rate budget before a request (capped, logged when long); the seconds waited."""
        wanted = self.budget.delay()
        wait = self.retry.capped(wanted)
        if wanted > wait:
            log.warning("%s: the rate budget says wait %.0fs (X-RateLimit-Reset); waiting the cap of %.0fs",
                        self._who(), wanted, wait)
        elif wait >= 5:
            log.info("%s: pacing for the rate budget, waiting %.1fs", self._who(), wait)
        if wait > 0:
            self.sleep(wait)
        self.budget.requested()
        return wait

    # -- what is trusted ----------------------------------------------------------------------
    def _who(self) -> str:
        return f"Recurly connection {self.site.conn_id!r} site {self.site.subdomain!r}"

    def _safe(self, text: str) -> str:
        return scrub(text, (self.site.api_key,))

    def _resolve(self, url: str, what: str = "link") -> str:
        """The absolute URL of a path or link, refusing any other scheme or host than the configured one."""
        if any(ord(c) < 0x21 or c == "\\" for c in url):
            raise RecurlyUntrustedResponse(f"{self._who()}: refusing the {what} with spaces, control characters "
                                           f"or backslashes: {self._safe(url[:200])!r}")
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            origin = (parts.scheme.lower(), parts.netloc.lower())
            if origin != self._origin:
                target = f"{parts.scheme}://{parts.netloc}" if parts.scheme else f"//{parts.netloc}"
                raise RecurlyUntrustedResponse(
                    f"{self._who()}: refusing the {what} to {self._safe(target)} ({self._safe(url[:200])}): "
                    f"only {self.site.base_url} is read with this key")
            return url
        return f"{self.site.base_url.rstrip('/')}/{url.lstrip('/')}"

    def _check_link_of(self, link: str, path: str, what: str) -> None:
        """A `next` or saved link: on the configured host (`_resolve`) and of the list `path`."""
        self._resolve(link, what)
        link_path = urlsplit(link).path
        if self._base_path and link_path.startswith(self._base_path + "/"):
            link_path = link_path[len(self._base_path):]
        if link_path.rstrip("/") != path.rstrip("/"):
            raise RecurlyUntrustedResponse(
                f"{self._who()}: the {what} points at {self._safe(link_path[:200])!r}, not at the list {path!r}")

    def _check_version(self, resp: requests.Response, url: str) -> None:
        version = resp.headers.get(VERSION_HEADER)
        if version is not None and version.strip().lower().removeprefix("recurly.") != API_VERSION:
            raise RecurlyUntrustedResponse(
                f"{self._who()}: {self._safe(url)} answered {VERSION_HEADER} {self._safe(version[:60])!r}, "
                f"not the {API_VERSION} requested; its records would not mean what the declarations say")

    def _client_error(self, resp: requests.Response, url: str):
        error_type = self._safe(_error_type(resp))[:100]  # scrubbed before cut: no piece of a key left
        message = self._safe(_error_message(resp))[:300]
        path = self._safe(url.split("?", 1)[0])
        if resp.status_code in _FAIL_FAST or (resp.status_code == 404 and path.count("/") <= 1):
            reason = _FAIL_FAST.get(resp.status_code, "the list endpoint does not exist on this host")
            return RecurlyConfigError(
                f"{self._who()} ({self.site.base_url}): {reason} (HTTP {resp.status_code} {error_type}: "
                f"{message}); check the connection's host/region and API key",
                status=resp.status_code, error_type=error_type)
        return RecurlyRequestError(f"{self._who()}: {path} answered HTTP {resp.status_code} {error_type}: {message}",
                                   status=resp.status_code, error_type=error_type)


def _decode_record(raw: msgspec.Raw) -> Any:
    """One record of a page (Python's parser for JSON msgspec refuses, such as lone surrogates)."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        import json

        return json.loads(bytes(raw))


def _decode_object(content: bytes) -> dict:
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError as exc:
        raise MalformedResponse(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedResponse("not a JSON object")
    return body


def _decode_list(content: bytes) -> tuple[_ListEnvelope, bool]:
    """The list envelope; the records stay bytes, but msgspec has checked they are well-formed JSON.

    JSON that msgspec refuses but Python's parser reads (an escaped lone surrogate, a number out of
    range) is not a broken body: each record is then re-encoded on its own (ASCII escapes kept), so
    the one offending record fails its own conversion and is quarantined, not the whole page.
    """
    try:
        body = _DECODE_LIST(content)
    except msgspec.ValidationError as exc:
        raise MalformedResponse(f"not a list envelope: {exc}") from None
    except msgspec.DecodeError as exc:
        body = _decode_list_leniently(content, exc)
    if body.object != "list":
        raise MalformedResponse(f"not a list envelope (object {body.object!r})")
    return body, NUL_ESCAPE in content


def _decode_list_leniently(content: bytes, error: msgspec.DecodeError) -> _ListEnvelope:
    import json

    try:
        parsed = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedResponse(f"not JSON: {error}") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
        raise MalformedResponse("not a list envelope")
    records = [msgspec.Raw(json.dumps(record, ensure_ascii=True, allow_nan=True, separators=(",", ":")).encode())
               for record in parsed["data"]]
    next_url, has_more = parsed.get("next"), parsed.get("has_more")
    if not isinstance(next_url, (str, type(None))) or not isinstance(has_more, (bool, type(None))):
        raise MalformedResponse("not a list envelope (has_more / next of the wrong type)")
    return _ListEnvelope(data=records, object=parsed.get("object"), has_more=bool(has_more), next=next_url)


def _error_body(resp: requests.Response) -> dict:
    try:
        err = resp.json().get("error")
        return err if isinstance(err, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _error_type(resp: requests.Response) -> str:
    return str(_error_body(resp).get("type") or "")


def _error_message(resp: requests.Response) -> str:
    return str(_error_body(resp).get("message") or resp.reason or "")
