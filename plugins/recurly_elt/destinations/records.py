"""Warehouse rows -> mapped records: one per object or event, with its key, payload and payload hash.

The payload holds exactly the mapped fields under their destination names, converted once by the
field types of mapping.py; the hash (128-bit BLAKE2b of the payload's canonical JSON: keys sorted,
decimals written as they are) is what change detection compares with the ledger. A row whose key
is empty or null is not a record: it is set aside with the reason and counted; so is a row whose
key an earlier row of the same source already has (e.g. one account code in two Recurly sites):
the destination would hold only one of them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

import sqlalchemy as sa

from recurly_elt.destinations.mapping import Children, Field, Kind

ENCODER = None  # msgspec encoder, created on first use (no import-time cost)


def encode(value: Any) -> bytes:
    """Canonical JSON bytes: keys sorted, Decimal written exactly as a number."""
    global ENCODER
    if ENCODER is None:
        import msgspec

        ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")
    return ENCODER.encode(value)


def piece(value: Any):
    """`value` encoded once, as a piece that encode() of an enclosing body copies verbatim
    (msgspec.Raw): a wire object is encoded for the byte limit and the same bytes are sent."""
    import msgspec

    return msgspec.Raw(encode(value))


def payload_hash(payload: Any) -> str:
    return hashlib.blake2b(encode(payload), digest_size=16).hexdigest()


@dataclass(slots=True)
class Record:
    key: str
    payload: dict                    # destination name -> JSON value: what is diffed
    hash: str
    identity: dict = field(default_factory=dict)  # events: who it is about (sent, not diffed)
    group: tuple = ()                # records with the same group travel in one request
    name: str | None = None          # events: the destination's event or metric name
    time: datetime | None = None     # events: when it happened (naive UTC)
    backfill: bool = False           # events: historical, sent with the API's marker
    changed: dict | None = None      # objects: only the fields that changed since last delivered
    is_update: bool = False          # objects: the key was delivered before


@dataclass
class SetAside:
    key: str
    reason: str
    payload: dict | None = None


@dataclass
class Selection:
    records: list[Record]
    set_aside: list[SetAside]
    considered: int
    held_historical: int = 0         # events older than the age limit, not asked for


# -- value conversion -------------------------------------------------------------------------

def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value)
        dt = datetime.fromisoformat(text[:-1] if text.endswith("Z") else text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def iso_utc(value: Any) -> str:
    return _timestamp(value).isoformat(timespec="seconds") + "Z"


def unix_utc(value: Any) -> float:
    """UNIX seconds of a timestamp (naive values are UTC), for APIs that take epoch times."""
    return _timestamp(value).replace(tzinfo=timezone.utc).timestamp()


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return date.fromisoformat(str(value)[:10]).isoformat()


def _money(places: int) -> Callable[[Any], Decimal]:
    quantum = Decimal(1).scaleb(-places)

    def convert(value: Any) -> Decimal:
        # repr() of a float is the shortest text that reads back as the same float: the decimal
        # the warehouse stored, not the binary approximation's expansion.
        exact = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
        return exact.quantize(quantum, rounding=ROUND_HALF_UP)

    return convert


def _number(value: Any) -> Any:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return value
    return Decimal(str(value))


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "text": str,
    "integer": int,
    "number": _number,
    "boolean": bool,
    "timestamp": iso_utc,
    "date": _date,
    "json": lambda v: json.loads(v) if isinstance(v, str) else v,
}


def converter(f: Field) -> Callable[[Any], Any]:
    convert = _money(f.places) if f.type == "money" else CONVERTERS[f.type]

    def apply(value: Any) -> Any:
        if value is None or (isinstance(value, float) and value != value):  # NULL or NaN
            return None
        try:
            return convert(value)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ValueError(f"column {f.column} value {value!r} is not a valid {f.type}: {exc}") from None

    return apply


def _fast(f: Field) -> Callable[[Any], Any] | None:
    """The conversion of a non-null value without the error wrapping (None: the value as read,
    for text that is already a str)."""
    if f.type == "money":
        return _money(f.places)
    return CONVERTERS[f.type]


def _mapper(fields: tuple[Field, ...]) -> Callable[[dict], dict]:
    """row -> payload. The fast path converts each value directly; any failure (or a NaN) maps
    the row again through converter(), whose errors name the column and value."""
    plan = [(f.name, f.column, converter(f)) for f in fields]
    fast = [(f.name, f.column, _fast(f), f.type == "text") for f in fields]

    def slow(row: dict) -> dict:
        return {name: conv(row[col]) for name, col, conv in plan}

    def mapped(row: dict) -> dict:
        out = {}
        try:
            for name, col, conv, text in fast:
                value = row[col]
                if value is None or (text and type(value) is str):
                    out[name] = value
                elif type(value) is float and value != value:  # NaN: null
                    return slow(row)
                else:
                    out[name] = conv(value)
        except (ValueError, TypeError, ArithmeticError):
            return slow(row)
        return out

    return mapped


# -- reading ------------------------------------------------------------------------------------

def _execute(conn: sa.Connection, sql: str, params: dict | None = None) -> sa.CursorResult:
    statement = sa.text(sql)
    if params:
        statement = statement.bindparams(*(sa.bindparam(k, type_=sa.DateTime()) for k, v in params.items()
                                           if isinstance(v, datetime)))
    return conn.execute(statement, params or {})


def _rows(conn: sa.Connection, sql: str, params: dict | None = None) -> list[dict]:
    result = _execute(conn, sql, params)
    keys = list(result.keys())
    return [dict(zip(keys, r)) for r in result]


# Parents' join values per query when an event kind's children are looked up (bound parameters).
CHILD_LOOKUP_CHUNK = 500


def _children(conn: sa.Connection, child: Children, parents: list[dict], lookup: bool = False) -> dict[tuple, list]:
    """The child rows of `child` that belong to one of `parents`, mapped, grouped by their join
    columns (in the source's order). Rows of other parents are skipped as read, before they are
    mapped. `lookup`, set when the parents are a few rows of their source (an event kind's events
    to send, while its children's source is every line item of the warehouse), asks the database
    for the parents' children only: `c.<join column> IN (the parents' values)`, the column with
    the most values cut in chunks of CHILD_LOOKUP_CHUNK, so it looks them up through an index on
    the join columns (stg_line_items (site, invoice_id, id): already in the source's order)
    instead of reading and sorting every child row. Bound values rather than a subquery of the
    parents' query: the kind's query is not run again per join column, and the plan does not
    rest on the planner's guess of the subquery's size. The IN lists keep any combination of the
    parents' values: the filter on `wanted` drops the few extra rows."""
    one = converter(child.value) if child.value else None
    mapped = _mapper(child.fields)
    wanted = {tuple(str(p[pc]) for pc, _ in child.join) for p in parents}
    out: dict[tuple, list] = {}
    if not wanted:
        return out
    results = _child_lookups(conn, child, parents) if lookup else None
    for result in results if results is not None else [_execute(conn, child.source)]:
        columns = list(result.keys())
        at = [columns.index(c) for _, c in child.join]
        for values in result:
            join_key = tuple(str(values[i]) for i in at)
            if join_key in wanted:
                row = dict(zip(columns, values))
                out.setdefault(join_key, []).append(one(row[child.value.column]) if one else mapped(row))
    return out


def _child_lookups(conn: sa.Connection, child: Children, parents: list[dict]):
    """The queries of _children's lookup, one result at a time; None when the parents' values do
    not fit in bound lists (then the whole source is read)."""
    values = [sorted({p[pc] for p in parents if p[pc] is not None}, key=str) for pc, _ in child.join]
    widest = max(range(len(values)), key=lambda i: len(values[i]))
    if any(len(v) > CHILD_LOOKUP_CHUNK for i, v in enumerate(values) if i != widest):
        return None
    statement = sa.text(f"SELECT c.* FROM ({child.source}) c WHERE "
                        + " AND ".join(f"c.{cc} IN :k{i}" for i, (_, cc) in enumerate(child.join))
                        ).bindparams(*(sa.bindparam(f"k{i}", expanding=True) for i in range(len(child.join))))

    def results():
        if not all(values):
            return
        for begin in range(0, len(values[widest]), CHILD_LOOKUP_CHUNK):
            params = {f"k{i}": v[begin:begin + CHILD_LOOKUP_CHUNK] if i == widest else v for i, v in enumerate(values)}
            yield conn.execute(statement, params)
    return results()


def _custom_field(row: dict, c) -> Any:
    """The value of Recurly custom field `c.field` in the row's `c.source` list, else `c.otherwise`."""
    fields = row.get(c.source)
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            fields = None
    for item in fields if isinstance(fields, list) else ():
        if isinstance(item, dict) and item.get("name") == c.field and not _is_missing(item.get("value")):
            return str(item["value"])
    return row.get(c.otherwise) if c.otherwise else None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _count_held(conn: sa.Connection, source: str, where: list[str], time: str, params: dict) -> int:
    """How many of the source's rows that `where` keeps are older than :cutoff (held back).

    The inner query selects only a constant and has its own ORDER BY: SQLite then folds the source
    into it, reading no more of each row than the filters and joins need (a LEFT JOIN whose
    columns are unused is dropped, an inner join becomes a lookup in its index) and sorting
    nothing but that constant. Counted straight over the source (no ORDER BY of its own), SQLite
    runs the source whole instead and sorts every column of every old row just to count them:
    2 - 5 times the work at equal results."""
    # Most rows are old: on SQLite a unary + keeps the time index out of it (a lookup of the row
    # for every old entry of the index costs more than one pass over the table).
    plus = "+" if conn.dialect.name == "sqlite" else ""
    statement = sa.text(f"SELECT COUNT(*) FROM (SELECT 1 AS old FROM ({source}) s WHERE "
                        + " AND ".join([*where, f"{plus}s.{time} < :cutoff"]) + " ORDER BY old) h")
    return int(conn.execute(statement.bindparams(sa.bindparam("cutoff", type_=sa.DateTime())), params).scalar() or 0)


def select(conn: sa.Connection, kind: Kind, *, now: datetime, max_age_days: int, backfill: bool,
           exclude_delivered: tuple[str, str] | None = None, account_keys=None) -> Selection:
    """Read the kind's source rows and map them into records.

    Events: only names listed in `event_names`; events older than `max_age_days` before `now`
    are left out (counted as held back) unless `backfill`, when they are marked as backfilled.
    `exclude_delivered=(destination, kind)` leaves out events the ledger already holds, in SQL
    (an anti-join on its primary key), so a daily run does not read the whole event history.
    `account_keys` (account_keys.AccountKeys) adds the column `account_key` to every row that has
    `site` and `account_code`, before the custom-field columns (which may fall back to it).
    """
    params: dict[str, Any] = {}
    where: list[str] = []
    sql = kind.source
    if kind.is_event:
        names = ", ".join("'" + n.replace("'", "''") + "'" for n in kind.event_names)
        where.append(f"s.{kind.event_name} IN ({names})")
        if exclude_delivered:
            params.update(dest=exclude_delivered[0], kind=exclude_delivered[1])
            where.append("NOT EXISTS (SELECT 1 FROM load_delivered d WHERE d.destination = :dest "
                         f"AND d.kind = :kind AND d.object_key = s.{kind.key})")
    cutoff = now - timedelta(days=max_age_days)
    held = 0
    if where:
        if kind.is_event and not backfill:
            held = _count_held(conn, sql, where, kind.time, {**params, "cutoff": cutoff})
            where.append(f"s.{kind.time} >= :cutoff")
            params["cutoff"] = cutoff
        sql = f"SELECT * FROM ({sql}) s WHERE " + " AND ".join(where)
    rows = _rows(conn, sql, params)
    lists = [(c, _children(conn, c, rows, lookup=kind.is_event)) for c in kind.children]
    mapped, identity = _mapper(kind.fields), _mapper(kind.identity)
    records: list[Record] = []
    set_aside: list[SetAside] = []
    seen: dict[str, dict] = {}
    for row in rows:
        if account_keys is not None:
            account_keys.add(row)
        for c in kind.custom_fields:
            row[c.name] = _custom_field(row, c)
        key = row.get(kind.key)
        if _is_missing(key):
            set_aside.append(SetAside(f"(no {kind.key}) {_describe(row)}", f"missing key: column {kind.key} is empty"))
            continue
        key = str(key)
        if key in seen:  # two rows would overwrite each other at the destination: the first is sent
            # named by key and row, so the ledger keeps it apart from the record that is sent
            set_aside.append(SetAside(f"{key} ({_describe(row)})",
                                      f"duplicate key: column {kind.key} = {key!r} is also the key of an earlier "
                                      f"row ({_describe(seen[key])}); this one is not sent"))
            continue
        seen[key] = row
        try:
            payload = mapped(row)
            for child, groups in lists:
                payload[child.name] = groups.get(tuple(str(row[p]) for p, _ in child.join), [])
            who = identity(row)
        except ValueError as exc:
            set_aside.append(SetAside(key, f"unmappable row: {exc}"))
            continue
        record = Record(key=key, payload=payload, hash="", identity=who,
                        group=tuple(row[c] for c in kind.group_by))
        if kind.is_event:
            at = _timestamp(row[kind.time])
            record.name = kind.event_names[row[kind.event_name]]
            record.time = at
            record.backfill = at < cutoff
            payload = {"name": record.name, "time": iso_utc(at), "properties": payload, **who}
            missing = [n for n, v in who.items() if _is_missing(v)]
            if missing:
                set_aside.append(SetAside(key, f"missing identity {', '.join(missing)} for event {record.name}"))
                continue
        record.hash = payload_hash(payload)
        records.append(record)
    return Selection(records=records, set_aside=set_aside, considered=len(rows), held_historical=held)


def _describe(row: dict) -> str:
    """Names a keyless row in the ledger by its first two columns (sources start with site and id)."""
    shown = [f"{k}={v}" for k, v in list(row.items())[:2]]
    return ", ".join(shown) or "empty row"
