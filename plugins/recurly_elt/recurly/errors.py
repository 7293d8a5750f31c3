"""Errors of the Recurly client. Messages name the connection and site, never the API key.

- `RecurlyConfigError` (401, 403, 404 of a list, 406): retrying cannot help; the task fails fast.
- `RecurlyRequestError` (400, 422 and other 4xx): the request itself is wrong (e.g. an expired
  cursor); the caller may change the request.
- `RecurlyUnavailableError`: retries or the rate-limit wait were exhausted (5xx, timeouts, dropped
  connections, malformed bodies, 429s).
"""

from __future__ import annotations


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


class MalformedResponse(Exception):
    """A 2xx body that is not the JSON document expected: retried, never staged."""
