"""The adapter interface: what a destination writes, and all it writes.

The engine (engine.py) selects, diffs, batches, paces, retries and keeps the ledger. An adapter
only turns a batch of records into a request and reads the answer into per-record outcomes:

    class MyDestination(Adapter):
        name = "mydestination"
        rate_headers = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                                   reset_is_delta=False)
        def auth_headers(self, secret): ...                      # from the connection's password
        def wire(self, kind, records): ...                       # records of one group -> wire objects
        def build_request(self, kind, wires, records, options): ...  # one request for a batch
        def read_answer(self, kind, records, response): ...     # -> Answer
    ADAPTER = MyDestination                                     # module-level: the registry entry

Optional hooks, each with a default:
    idempotent(kind)            resending a batch is harmless (default: objects yes, events no)
    read_job(kind, records, job, response)   for asynchronous APIs: an Answer may carry a Job
                                (a request to send after `wait` seconds); the engine sends it and
                                hands its response here, until an Answer has no job
    split_on_refusal(kind)      a whole-batch refusal with Answer.split is retried in halves until
                                the bad rows are isolated (default True)
    base_url_check(url)         raise ValueError for a connection host this API never lives at
    prepare(transport)          before a run's first request (never in a dry run, nor in a run
                                with nothing to send): look up or create what requests refer to
                                (ActiveCampaign's eCommerce connection), through transport.retry_read
    connect(login, extra)       read what the API needs besides the key from the connection (a key
                                id in the login, a project token in the extra); raise ValueError
                                naming what is missing

An Answer says per record what happened: every record not listed in `rejected` (by its index
in `records`) is delivered, unless `whole` refuses them all. The engine never looks into a body.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from recurly_elt.destinations.mapping import Kind, Mapping
from recurly_elt.destinations.records import Record


@dataclass(frozen=True)
class Request:
    method: str
    path: str                                  # appended to the connection's base URL
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]                    # lower-cased names
    body: bytes

    def json(self) -> Any:
        """The body as JSON; a body that is not JSON raises BadAnswer (retried like a 5xx)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise BadAnswer(f"HTTP {self.status}: the body is not JSON ({len(self.body)} bytes)") from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class BadAnswer(Exception):
    """An answer the adapter cannot read (truncated, wrong types): retried as a transient failure."""


@dataclass(frozen=True)
class Rejected:
    reason: str                                # the destination's own message
    http_status: int | None = None
    retryable: bool = False                    # retried on later runs even if the row is unchanged
    index: int | None = None                   # position in the batch's records (None: whole batch)


@dataclass(frozen=True)
class Job:
    """A follow-up request of an asynchronous API (status poll, error pages)."""

    request: Request
    state: Any = None
    wait: float = 0.5                          # seconds before sending it


@dataclass
class Answer:
    rejected: list[Rejected] = field(default_factory=list)
    whole: Rejected | None = None              # every record of the batch refused
    split: bool = False                        # ... because of some of them: split and retry
    job: Job | None = None                     # not final yet: send job.request, then read_job
    job_id: str | None = None                  # kept in load_requests


@dataclass(frozen=True)
class RateHeaders:
    limit: str
    remaining: str
    reset: str
    reset_is_delta: bool                       # Reset in seconds from now (else epoch seconds)
    retry_after: str = "Retry-After"
    # An API that sends no rate headers but documents a budget (ActiveCampaign: 5 per second):
    # the transport spaces its requests to stay within it.
    requests_per_second: float | None = None


class Adapter:
    name: ClassVar[str] = ""
    rate_headers: ClassVar[RateHeaders]

    def __init__(self, mapping: Mapping):
        self.mapping = mapping

    # -- required --------------------------------------------------------------------------------
    def auth_headers(self, secret: str) -> dict[str, str]:
        raise NotImplementedError

    def wire(self, kind: Kind, records: list[Record]) -> list[dict]:
        """The objects one group of records becomes in a request body (one per record for most
        APIs; Klaviyo's bulk events nest a profile's events in one entry)."""
        raise NotImplementedError

    def build_request(self, kind: Kind, wires: list, records: list[Record], options: dict) -> Request:
        """One request for a batch. `wires` are the batch's wire objects already encoded (the
        engine encodes each once, for the byte limit, as records.piece): put them in the body and
        encode it with records.encode, which copies them verbatim; do not look inside them."""
        raise NotImplementedError

    def read_answer(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        raise NotImplementedError

    # -- optional --------------------------------------------------------------------------------
    def idempotent(self, kind: Kind) -> bool:
        return not kind.is_event

    def read_job(self, kind: Kind, records: list[Record], job: Job, response: Response) -> Answer:
        raise NotImplementedError(f"{self.name} answered with a job but reads none")

    def split_on_refusal(self, kind: Kind) -> bool:
        return True

    def base_url_check(self, url: str) -> None:
        return None

    def connect(self, login: str | None, extra: dict) -> None:
        return None

    def prepare(self, transport) -> None:
        return None

    def envelope_bytes(self, kind: Kind) -> int:
        """Bytes a request adds around its wire objects (for the byte limit)."""
        return 512


def load_adapter(mapping: Mapping) -> Adapter:
    """The adapter a mapping names: module recurly_elt.destinations.<adapter>, attribute ADAPTER."""
    try:
        module = importlib.import_module(f"recurly_elt.destinations.{mapping.adapter}")
    except ModuleNotFoundError:
        raise ValueError(f"{mapping.path}: adapter {mapping.adapter!r} is not a module of "
                         "recurly_elt.destinations") from None
    return module.ADAPTER(mapping)
