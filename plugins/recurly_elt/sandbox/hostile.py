"""A hostile Recurly: named scenarios that make the sandbox answer as a misbehaving server would.

A scenario is set per site (`SandboxServer.set_hostile(site, name)`, or
`PUT /__sandbox/hostile?site=S` with body {"scenario": NAME}; an empty name clears it). It sits
between the rate limit / faults and the routing of the requests to its list (`/accounts` unless
said otherwise): it may answer in place of the routing, or rewrite what the routing answered.
Everything else the site serves stays as it was. docs/sandbox.md lists the scenarios; tests/extract/
test_hostile.py asserts what the pipeline does with each, and docs/reliability.md says it in prose.

Record-level scenarios say what they planted (`planted`: record id, field, what is wrong), so a test
can compare the quarantine with the sandbox's own account of what it broke, not with the
extractor's idea of it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlencode

ACCOUNTS = "/accounts"
FOREIGN_HOST = "evil.example"


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    total: int | None = None   # Recurly-Total-Records (HEAD)


@dataclass
class Request:
    method: str
    path: str
    params: list[tuple[str, str]]
    server_url: str
    api_key: str

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)

    def without(self, name: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.params if k != name]


@dataclass(frozen=True)
class Planted:
    """One hostile value a scenario put into a record: what the pipeline must quarantine or keep."""
    record_id: str | None     # the id the record is served with (None: missing or empty)
    field: str
    what: str
    source_id: str | None = None   # the record's id in the sandbox's own data
    resource: str | None = None    # the list it was served in (sandbox names: add_ons), when not /accounts


Serve = Callable[[list[tuple[str, str]]], Answer]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    respond: Callable[["Active", Request, Serve], Answer]
    path: str | None = ACCOUNTS   # None: every API path (the scenario leaves what it does not change)


class Active:
    """A scenario set on one site: its calls so far and what it planted."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.calls = 0
        self.planted: list[Planted] = []
        self._lock = threading.Lock()

    def applies(self, path: str) -> bool:
        return self.scenario.path is None or path.rstrip("/") == self.scenario.path

    def respond(self, request: Request, serve: Serve) -> Answer:
        with self._lock:
            self.calls += 1
        return self.scenario.respond(self, request, serve)

    def plant(self, record_id: str | None, field_: str, what: str, source_id: str | None = None,
              resource: str | None = None) -> None:
        with self._lock:
            planted = Planted(record_id, field_, what, source_id if source_id is not None else record_id, resource)
            if planted not in self.planted:
                self.planted.append(planted)


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, summary: str, path: str | None = ACCOUNTS):
    def register(fn):
        SCENARIOS[name] = Scenario(name, summary, fn, path)
        return fn
    return register


def get(name: str) -> Scenario:
    """A scenario by name; `hostile_records=SHARE` (e.g. hostile_records=0.01) is the one with a parameter."""
    base, _, share = name.partition("=")
    if base == "hostile_records" and share:
        return _hostile_records_scenario(_share(share))
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown hostile scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}, "
                         "hostile_records=SHARE") from None


def _share(text: str) -> float:
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 < share <= 1:
        raise ValueError(f"hostile_records share must be a number in (0, 1], got {text!r}")
    return share


# -- helpers ----------------------------------------------------------------------------------------
def _envelope(answer: Answer) -> dict | None:
    if answer.status != 200 or not answer.body:
        return None
    body = json.loads(answer.body)
    return body if isinstance(body, dict) and body.get("object") == "list" else None


def _with_envelope(answer: Answer, envelope: dict) -> Answer:
    body = json.dumps(envelope, ensure_ascii=True, separators=(",", ":")).encode()
    return Answer(answer.status, body, answer.headers, answer.total)


def _first_page(request: Request) -> bool:
    return request.param("cursor") is None


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps({"error": {"type": type_, "message": message}}).encode(), headers or {})


def _records_of_first_page(mutate: Callable[[Active, list], None]):
    """A respond function that lets `mutate` change the records of the list's first page."""
    def respond(active: Active, request: Request, serve: Serve) -> Answer:
        answer = serve(request.params)
        envelope = _envelope(answer)
        if envelope is None or not _first_page(request) or request.method != "GET":
            return answer
        mutate(active, envelope["data"])
        return _with_envelope(answer, envelope)
    return respond


def _next_to(link: Callable[[Request, str], str]):
    """A respond function that rewrites the first page's `next` link (made up when the list has one page)."""
    def respond(active: Active, request: Request, serve: Serve) -> Answer:
        answer = serve(request.params)
        envelope = _envelope(answer)
        if envelope is None:
            return answer
        own = envelope.get("next") or f"{ACCOUNTS}?{urlencode([('cursor', 'forged'), *request.without('cursor')])}"
        envelope.update(has_more=True, next=link(request, own))
        return _with_envelope(answer, envelope)
    return respond


# -- links and cursors ------------------------------------------------------------------------------
scenario("foreign_next", "the next link points at another host (with the same path and cursor)")(
    _next_to(lambda request, link: f"https://{FOREIGN_HOST}{link}"))

scenario("netpath_next", "the next link is a network-path reference (//host/...) to another host")(
    _next_to(lambda request, link: f"//{FOREIGN_HOST}{link}"))


def _other_scheme(request: Request, link: str) -> str:
    scheme, _, rest = request.server_url.partition("://")
    return f"{'https' if scheme == 'http' else 'http'}://{rest}{link}"


scenario("scheme_next", "the next link points at the same host under another scheme")(_next_to(_other_scheme))
scenario("other_list_next", "the next link points at another list of the same host (/transactions)")(
    _next_to(lambda request, link: link.replace(ACCOUNTS, "/transactions", 1)))


@scenario("has_more_without_next", "the first page says has_more but has no next link")
def _has_more_without_next(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    envelope = _envelope(answer)
    if envelope is None:
        return answer
    envelope.update(has_more=True, next=None)
    return _with_envelope(answer, envelope)


def _fake_cursor_pages(next_cursor: Callable[[str | None], str]):
    """Pages of the first page's records whose next cursor is `next_cursor(current cursor)`."""
    def respond(active: Active, request: Request, serve: Serve) -> Answer:
        if request.method != "GET":
            return serve(request.params)
        cursor = request.param("cursor")
        answer = serve(request.without("cursor"))
        envelope = _envelope(answer)
        if envelope is None:
            return answer
        query = [(k, v) for k, v in request.without("cursor")]
        envelope.update(has_more=True, next=f"{ACCOUNTS}?{urlencode([('cursor', next_cursor(cursor)), *query])}")
        return _with_envelope(answer, envelope)
    return respond


scenario("cursor_loop", "page 2's next link is page 2 itself (A -> A)")(
    _fake_cursor_pages(lambda cursor: "loop-a"))
scenario("cursor_cycle", "pages alternate between two cursors (A -> B -> A)")(
    _fake_cursor_pages(lambda cursor: "cycle-b" if cursor == "cycle-a" else "cycle-a"))


@scenario("endless_list", "every page has a fresh next cursor: the list never ends (Total-Records says 400)")
def _endless(active: Active, request: Request, serve: Serve) -> Answer:
    return _fake_cursor_pages(lambda cursor: f"page-{active.calls}")(active, request, serve)


# -- bodies, versions, redirects ---------------------------------------------------------------------
@scenario("html_body", "a 200 whose body is an HTML page (a proxy's error page)")
def _html(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    if request.method == "HEAD":
        return answer
    html = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
    return Answer(200, html, {**answer.headers, "Content-Type": "text/html"})


@scenario("truncated_body", "every list page is cut off mid-JSON (a complete response, broken body)")
def _truncated(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    if request.method == "HEAD" or not answer.body:
        return answer
    return Answer(answer.status, answer.body[: len(answer.body) // 2], answer.headers, answer.total)


@scenario("huge_body", "a list page padded to 3 MB (a test client reads at most 1 MB)")
def _huge(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    envelope = _envelope(answer)
    if envelope is None:
        return answer
    envelope["padding"] = "x" * 3_000_000
    return _with_envelope(answer, envelope)


@scenario("wrong_version", "answers carry Recurly-Version recurly.v2019-10-10, not the version asked for")
def _wrong_version(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    answer.headers["Recurly-Version"] = "recurly.v2019-10-10"
    return answer


@scenario("redirect_foreign", "the list answers 302 to another host")
def _redirect(active: Active, request: Request, serve: Serve) -> Answer:
    return Answer(302, b"", {"Location": f"https://{FOREIGN_HOST}{ACCOUNTS}"})


# -- rate-limit headers -------------------------------------------------------------------------------
DAY = 86_400


@scenario("reset_a_day_ahead", "200 answers say X-RateLimit-Remaining 0 and a reset a day ahead")
def _reset_a_day_ahead(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    answer.headers.update({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + DAY)})
    return answer


@scenario("rate_limited_for_a_day", "every request answers 429 with Retry-After and a reset a day ahead")
def _limited_for_a_day(active: Active, request: Request, serve: Serve) -> Answer:
    return _error(429, "rate_limited", "Too many requests.", {
        "X-RateLimit-Limit": "1000", "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(time.time()) + DAY), "Retry-After": str(DAY)})


@scenario("garbage_rate_headers", "the first request answers 429 with unreadable rate-limit headers")
def _garbage_rate_headers(active: Active, request: Request, serve: Serve) -> Answer:
    if active.calls == 1:
        return _error(429, "rate_limited", "Too many requests.", {
            "X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "-5", "X-RateLimit-Reset": "NaN",
            "Retry-After": "soon"})
    answer = serve(request.params)
    answer.headers.update({"X-RateLimit-Remaining": "-1", "X-RateLimit-Reset": "inf"})
    return answer


# -- error bodies echoing the key -----------------------------------------------------------------------
def _echo(status: int, type_: str):
    def respond(active: Active, request: Request, serve: Serve) -> Answer:
        if request.method == "HEAD":  # a HEAD answer has no body to echo anything in
            return serve(request.params)
        return _error(status, type_, f"API key {request.api_key} (Basic {request.api_key}:) is not allowed here; "
                                     f"see /accounts?key={request.api_key}")
    return respond


scenario("key_echo_400", "a 400 whose error message echoes the API key")(_echo(400, "bad_request"))
scenario("key_echo_503", "503s whose error message echoes the API key")(_echo(503, "service_not_available"))
scenario("key_echo_401", "a 401 whose error message echoes the API key")(_echo(401, "unauthorized"))


# -- hostile records ---------------------------------------------------------------------------------------
# (field, bad value, what is wrong) planted into consecutive records of the first accounts page.
WRONG_VALUES: tuple[tuple[str, object, str], ...] = (
    ("billing_info.payment_method.exp_month", 3.5, "a fraction where an integer is declared"),
    ("billing_info.payment_method.exp_year", 10**20, "an integer beyond 64 bits"),
    ("billing_info.payment_method.exp_month", "3", "a string where an integer is declared"),
    ("has_live_subscription", "false", "the string 'false' where a boolean is declared"),
    ("has_active_subscription", 0, "the number 0 where a boolean is declared"),
    ("created_at", "yesterday", "a timestamp that is not ISO-8601"),
    ("created_at", 1735689600, "an epoch number where a timestamp is declared"),
    ("updated_at", "2026-02-30T00:00:00Z", "an impossible date"),
    ("deleted_at", "2025-13-01T00:00:00Z", "an impossible month"),
    ("email", {"address": "a@example.com"}, "an object where a string is declared"),
    ("address", "Main Street 1", "a string where an object is declared"),
    ("billing_info", [1, 2], "an array where an object is declared"),
    ("company", "Acme\u0000Corp", "a NUL character"),
    ("first_name", "\ud800", "a lone surrogate"),
    ("last_name", "x" * 1_000_000, "a string of a million characters"),
    ("id", "", "an empty id"),
)
# Odd but valid strings: staged exactly as sent.
ODD_UNICODE: tuple[tuple[str, str], ...] = (
    ("first_name", "\u202eevil\u202c name"),                       # right-to-left override
    ("last_name", "\U0001F468\u200d\U0001F469\u200d\U0001F467"),     # emoji joined by ZWJ
    ("company", "Cafe\u0301 \ufeff\U0010FFFF\uffff"),               # combining accent, BOM, last code points
    ("email", "\u0130stanbul@\u00e9xample.com"),
)


def _set(record: dict, path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    node = record
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


@scenario("wrong_values", "one record each: fractions, huge ints, 'false', bad dates, NUL, surrogate, ...")
def _wrong_values(active: Active, request: Request, serve: Serve) -> Answer:
    def mutate(active: Active, records: list) -> None:
        for record, (path, value, what) in zip(records, WRONG_VALUES):
            source_id = record.get("id")
            _set(record, path, value)
            active.plant(source_id if path != "id" else None, path, what, source_id)
    return _records_of_first_page(mutate)(active, request, serve)


@scenario("odd_unicode", "valid but odd strings (RTL override, ZWJ emoji, combining marks, U+10FFFF)")
def _odd_unicode(active: Active, request: Request, serve: Serve) -> Answer:
    def mutate(active: Active, records: list) -> None:
        for path, value in ODD_UNICODE:
            _set(records[0], path, value)
            active.plant(records[0]["id"], path, value)
    return _records_of_first_page(mutate)(active, request, serve)


@scenario("nulls_and_missing_ids", "a null record, a record without id, two with id '', null objects")
def _nulls(active: Active, request: Request, serve: Serve) -> Answer:
    def mutate(active: Active, records: list) -> None:
        records[0]["billing_info"] = None      # a null object: its columns are null, the record is fine
        records[0]["address"] = None
        active.plant(records[0]["id"], "billing_info", "null object (kept)")
        active.plant(None, "id", "missing id", records[1].pop("id"))
        for record in records[2:4]:
            active.plant(None, "id", "empty id", record["id"])
            record["id"] = ""
        records.insert(4, None)
        active.plant(None, "", "a null record")
    return _records_of_first_page(mutate)(active, request, serve)


# Strings no declaration reads (kept in raw_json): (path, value, what); every one but the last is bad.
UNDECLARED_TEXT: tuple[tuple[str, object, str], ...] = (
    ("custom_fields", [{"name": "tier", "value": "\ud800"}], "a lone surrogate in a custom field's value"),
    ("hostile_note", "before\u0000after", "a NUL character in a field nobody declares"),
    ("hostile_tags", {"bad\u0000name": "x"}, "a NUL character in a field name"),
    ("hostile_list", ["ok", ["\udfff"]], "a lone surrogate deep in a list"),
    ("hostile_emoji", "\U0001F600 \u00e9", "a valid emoji and accent (sent as escapes): kept"),
)
UNDECLARED_PATHS = ("custom_fields[0].value", "hostile_note", 'hostile_tags."bad\\u0000name"', "hostile_list[1][0]")


@scenario("undeclared_bad_text", "NUL and lone surrogates in fields no declaration reads (and a valid emoji)")
def _undeclared_bad_text(active: Active, request: Request, serve: Serve) -> Answer:
    def mutate(active: Active, records: list) -> None:
        for record, (path, value, what), planted_path in zip(records, UNDECLARED_TEXT, (*UNDECLARED_PATHS, "")):
            record[path] = value
            active.plant(record["id"], planted_path or path, what)
    return _records_of_first_page(mutate)(active, request, serve)


def _older(record: dict, by_seconds: int = 3600) -> dict:
    from datetime import datetime, timedelta

    stale = json.loads(json.dumps(record))
    moment = datetime.fromisoformat(record["updated_at"].replace("Z", "+00:00")) - timedelta(seconds=by_seconds)
    stale["updated_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    stale["email"] = "stale-copy@example.com"
    return stale


@scenario("stale_versions", "the first page's records served as older versions (updated_at a day back, "
                            "another email) than a previous read staged")
def _stale_versions(active: Active, request: Request, serve: Serve) -> Answer:
    def mutate(active: Active, records: list) -> None:
        for at, record in enumerate(records):
            if isinstance(record, dict) and isinstance(record.get("updated_at"), str):
                records[at] = _older(record, by_seconds=86_400)
                active.plant(record["id"], "updated_at", "older version")
    return _records_of_first_page(mutate)(active, request, serve)


@scenario("stale_duplicates", "an older copy of a record after it on the same page, and another on page 2")
def _stale(active: Active, request: Request, serve: Serve) -> Answer:
    answer = serve(request.params)
    envelope = _envelope(answer)
    if envelope is None or request.method != "GET" or not envelope["data"]:
        return answer
    records = envelope["data"]
    if _first_page(request):
        active.first_page = [json.loads(json.dumps(r)) for r in records[:2]]
        records.insert(1, _older(records[0]))       # same page, after the newer version
        active.plant(records[0]["id"], "updated_at", "older copy on the same page")
    elif getattr(active, "first_page", None):
        records.append(_older(active.first_page[1]))  # a later page carries an older version
        active.plant(active.first_page[1]["id"], "updated_at", "older copy on a later page")
    return _with_envelope(answer, envelope)



# -- a share of hostile records in every list (the extraction benchmark's --hostile-records) ----------
# Kinds, each in about a quarter of the chosen records; the choice and the kind follow from a hash of
# the list and the record id, so every read (and every retry) serves a record the same way.
HOSTILE_KINDS = ("bad_type", "bad_date", "nul", "stale")
LISTED = {"accounts", "subscriptions", "invoices", "line_items", "transactions", "plans", "add_ons"}


def hostile_kind(resource: str, record_id: str, share: float) -> str | None:
    """Whether (and how) `hostile_records=share` serves this record hostile: None, or one of HOSTILE_KINDS."""
    import hashlib

    digest = hashlib.sha256(f"{resource}:{record_id}".encode()).digest()
    if int.from_bytes(digest[:4], "big") / 2 ** 32 >= share:
        return None
    return HOSTILE_KINDS[digest[4] % len(HOSTILE_KINDS)]


# A string field of each list that pipelines type (a NUL there cannot be kept as a typed value).
NUL_FIELDS = {"accounts": "code", "subscriptions": "uuid", "invoices": "number", "line_items": "uuid",
              "transactions": "uuid", "plans": "code", "add_ons": "code"}


def _text_field(resource: str, record: dict) -> str | None:
    name = NUL_FIELDS.get(resource)
    return name if isinstance(record.get(name), str) else None


def _hostile_records_scenario(share: float) -> Scenario:
    def respond(active: Active, request: Request, serve: Serve) -> Answer:
        answer = serve(request.params)
        envelope = _envelope(answer) if request.method == "GET" else None
        if envelope is None:
            return answer
        segments = request.path.strip("/").split("/")
        resource = segments[-1]
        # the lists the extraction reads records from: site-level ones and a plan's add-ons (not an
        # invoice's line items, which completion embeds in the invoice)
        if resource not in LISTED or not (len(segments) == 1 or segments[0] == "plans"):
            return answer
        records, extra = envelope["data"], []
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                continue
            kind = hostile_kind(resource, record["id"], share)
            if kind is None:
                continue
            if kind == "bad_type":
                record["created_at"] = 1735689600            # an epoch number
                active.plant(record["id"], "created_at", kind, resource=resource)
            elif kind == "bad_date":
                record["updated_at"] = "2026-02-30T00:00:00Z"
                active.plant(record["id"], "updated_at", kind, resource=resource)
            elif kind == "nul" and _text_field(resource, record):
                field_ = _text_field(resource, record)
                record[field_] = f"{record[field_]}\u0000"
                active.plant(record["id"], field_, kind, resource=resource)
            elif kind == "stale" and isinstance(record.get("updated_at"), str):
                extra.append(_older(record))                 # after the newer version, same page
                active.plant(record["id"], "updated_at", kind, resource=resource)
        records.extend(extra)
        return _with_envelope(answer, envelope)

    return Scenario(f"hostile_records={share:g}", f"{share:.0%} of the records of every list hostile "
                    "(bad types, impossible dates, NUL, stale duplicates)", respond, path=None)
