"""List endpoints: query parameters, the opaque cursor, and pages as the spec's list envelope.

Parameters follow the Recurly OpenAPI spec: `limit` 1..200 (default 20), `order` asc|desc
(default desc), `sort` created_at|updated_at (default created_at), inclusive `begin_time` and
`end_time` on the sort field, the endpoint's filters (filters.py), and `ids` (up to 200, not
combinable with any other parameter, answered in one page).

The cursor encodes a position, the (sort value, id) of the last record served, never an
offset: a record updated while a client pages moves to the end of an ascending updated_at
read, so it is served (again) later instead of shifting the rest and making the client skip
one. The `next` link repeats the original parameters, so the filters carry over.
"""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import islice
from urllib.parse import urlencode

from recurly_elt.sandbox.errors import bad_parameter
from recurly_elt.sandbox.filters import FILTERS, Filter
from recurly_elt.sandbox.index import Entry, ResourceIndex, SiteIndex, SortedView
from recurly_elt.sandbox.timestamps import to_micros

MAX_LIMIT = 200
MAX_IDS = 200


@dataclass
class ListQuery:
    limit: int = 20
    order: str = "desc"
    sort: str = "created_at"
    begin: int | None = None
    end: int | None = None
    after: tuple[int, str] | None = None  # cursor position
    filters: list[tuple[Filter, str]] = field(default_factory=list)
    ids: list[str] | None = None
    params: list[tuple[str, str]] = field(default_factory=list)  # as received, cursor excluded


def parse_query(resource: str, params: list[tuple[str, str]]) -> ListQuery:
    """Validate a list request's parameters (400 bad_request naming the parameter otherwise)."""
    allowed = FILTERS.get(resource, {})
    values: dict[str, str] = {}
    for name, value in params:
        values[name] = value  # the last one wins, as in most frameworks
    query = ListQuery(params=[(k, v) for k, v in params if k != "cursor"])
    if "ids" in values:
        others = sorted(set(values) - {"ids"})
        if others:
            raise bad_parameter("ids", f"ids cannot be combined with other parameters ({', '.join(others)})")
        ids = [i for i in values["ids"].split(",") if i]
        if len(ids) > MAX_IDS:
            raise bad_parameter("ids", f"at most {MAX_IDS} ids at once, got {len(ids)}")
        query.ids = ids
        return query
    if "limit" in values:
        try:
            query.limit = int(values["limit"])
        except ValueError:
            query.limit = 0
        if not 1 <= query.limit <= MAX_LIMIT:
            raise bad_parameter("limit", f"limit must be an integer between 1 and {MAX_LIMIT}")
    query.order = values.get("order", query.order)
    if query.order not in ("asc", "desc"):
        raise bad_parameter("order", "order must be asc or desc")
    query.sort = values.get("sort", query.sort)
    if query.sort not in ("created_at", "updated_at"):
        raise bad_parameter("sort", "sort must be created_at or updated_at")
    for name in ("begin_time", "end_time"):
        if name in values:
            try:
                moment = to_micros(values[name])
            except ValueError:
                raise bad_parameter(name, f"{name} must be an ISO-8601 date-time") from None
            setattr(query, "begin" if name == "begin_time" else "end", moment)
    if "cursor" in values:
        query.after = decode_cursor(values["cursor"], query.sort, query.order)
    for name, flt in allowed.items():
        if name in values:
            value = values[name]
            if flt.choices is not None and value not in flt.choices:
                raise bad_parameter(name, f"{name} must be one of: {', '.join(flt.choices)}")
            query.filters.append((flt, value))
    return query


def encode_cursor(sort: str, order: str, position: tuple[int, str]) -> str:
    raw = json.dumps([sort, order, position[0], position[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, order: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c_sort, c_order, value, ident = json.loads(raw)
        if not (isinstance(value, int) and isinstance(ident, str)):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise bad_parameter("cursor", "cursor is not one this server issued") from None
    if (c_sort, c_order) != (sort, order):
        raise bad_parameter("cursor", "cursor was issued for another sort or order")
    return value, ident


def _matching(view: SortedView, query: ListQuery, site: SiteIndex):
    """Entries in the requested order, within [begin, end], after the cursor, passing the filters."""
    keys, entries = view.sorted_by(query.sort)
    lo, hi = view.span(query.sort, query.begin, query.end)
    if query.order == "asc":
        if query.after is not None:
            lo = max(lo, bisect_right(keys, query.after))
        positions = range(lo, hi)
    else:
        if query.after is not None:
            hi = min(hi, bisect_left(keys, query.after))
        positions = range(hi - 1, lo - 1, -1)
    if not query.filters:
        return (entries[i] for i in positions)
    filters = query.filters
    return (entries[i] for i in positions
            if all(flt.match(entries[i], value, site) for flt, value in filters))


def _by_ids(resource: ResourceIndex, view: SortedView, ids: list[str]) -> list[Entry]:
    """The named entries of this list, each once, unknown ids ignored (as Recurly does)."""
    members = resource.by_id if view is resource.view else {e.id: e for e in view.entries}
    found: dict[str, Entry] = {}
    for ident in ids:
        if ident in members:
            found.setdefault(ident, members[ident])
    return list(found.values())


def count(resource: ResourceIndex, view: SortedView, query: ListQuery, site: SiteIndex) -> int:
    """Recurly-Total-Records: how many records the whole (unpaged) list holds."""
    if query.ids is not None:
        return len(_by_ids(resource, view, query.ids))
    if not query.filters:
        lo, hi = view.span(query.sort, query.begin, query.end)
        return hi - lo
    return sum(1 for _ in _matching(view, query, site))


def page(path: str, resource: ResourceIndex, view: SortedView, query: ListQuery, site: SiteIndex) -> bytes:
    """One page as the spec's list envelope, JSON bytes joined from the cached object bytes."""
    next_link = None
    if query.ids is not None:
        chosen = _by_ids(resource, view, query.ids)
    else:
        chosen = list(islice(_matching(view, query, site), query.limit + 1))
        if len(chosen) > query.limit:  # one more than the page: there is a next page
            del chosen[query.limit:]
            last = chosen[-1]
            position = (last.updated if query.sort == "updated_at" else last.created, last.id)
            cursor = encode_cursor(query.sort, query.order, position)
            next_link = f"{path}?{urlencode([('cursor', cursor), *query.params])}"
    head = b'{"object":"list","has_more":%s,"next":%s,"data":[' % (
        b"true" if next_link else b"false",
        json.dumps(next_link).encode())
    return head + b",".join(e.body for e in chosen) + b"]}"
