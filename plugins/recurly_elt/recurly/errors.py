"""Errors of the Recurly client. Messages name the connection and site, never the API key.

- `RecurlyConfigError` (401, 403, 404 of a list, 406, a key that cannot be sent): retrying cannot
  help; the task fails fast.
- `RecurlyRequestError` (400, 422 and other 4xx): the request itself is wrong (e.g. an expired
  cursor); the caller may change the request.
- `RecurlyUnavailableError`: retries or the rate-limit wait were exhausted (5xx, timeouts, dropped
  connections, malformed bodies, 429s).
- `RecurlyUntrustedResponse`: the API answered something the client refuses to follow: a link to
  another host or scheme, a cursor that loops, more pages than the list holds, a redirect, a
  response of another API version. Retrying would get the same answer; the message names it.

Every message built from what a server sent goes through `scrub` first: a server that echoes the
key (in an error body, a link) never gets it into a log line, the run log or an exception.
"""

from __future__ import annotations

import base64
from typing import Iterable
from urllib.parse import quote

REDACTED = "***"


class RecurlyError(Exception):
    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class RecurlyConfigError(RecurlyError):
    """Wrong key, missing permission, unknown path or API version: fix the connection, do not retry."""


class RecurlyRequestError(RecurlyError):
    """The API refused this request (4xx other than the above)."""


class RecurlyUnavailableError(RecurlyError):
    """The API kept failing (or kept us rate-limited) beyond the retry policy."""


class RecurlyUntrustedResponse(RecurlyError):
    """An answer that must not be followed or staged (foreign link, loop, unbounded list)."""


class MalformedResponse(Exception):
    """A 2xx body that is not the JSON document expected: retried, never staged."""


def secret_forms(secret: str) -> list[str]:
    """The ways a key can appear in text a server sends back: as is, URL-quoted, in a Basic header."""
    if not secret:
        return []
    forms = {secret, quote(secret, safe=""), quote(secret)}
    try:
        forms.add(base64.b64encode(f"{secret}:".encode()).decode())
    except UnicodeError:  # pragma: no cover - str.encode() to UTF-8 always succeeds
        pass
    return sorted(forms, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every form of every secret replaced by ***."""
    for secret in secrets:
        for form in secret_forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    return text
