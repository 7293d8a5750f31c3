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
from operator import itemgetter
from typing import Any, Callable

import sqlalchemy as sa

from recurly_elt.destinations.account_keys import COLUMN as ACCOUNT_KEY
from recurly_elt.destinations.mapping import Children, Field, Kind

ENCODER = None  # msgspec encoder, created on first use (no import-time cost)
RAW = None      # msgspec.Raw, with it


def _encoder():
    global ENCODER, RAW
    import msgspec

    RAW = msgspec.Raw
    ENCODER = msgspec.json.Encoder(decimal_format="number", order="sorted")
    return ENCODER


def encode(value: Any) -> bytes:
    """Canonical JSON bytes: keys sorted, Decimal written exactly as a number."""
    return (ENCODER or _encoder()).encode(value)


def piece(value: Any):
    """`value` encoded once, as a piece that encode() of an enclosing body copies verbatim
    (msgspec.Raw): a wire object is encoded for the byte limit and the same bytes are sent."""
    data = (ENCODER or _encoder()).encode(value)  # sets RAW on first use
    return RAW(data)


_BLAKE2B_16 = hashlib.blake2b(digest_size=16)  # never updated: payload_hash() copies it (cheaper than a new one)


def payload_hash(payload: Any) -> str:
    """hashlib.blake2b(encode(payload), digest_size=16).hexdigest()."""
    h = _BLAKE2B_16.copy()
    h.update(encode(payload))
    return h.hexdigest()


@dataclass(slots=True)
class Record:
    key: str
    payload: dict                    # destination name -> JSON value: what is diffed
    hash: str
    identity: dict = field(default_factory=dict)  # events: who it is about (sent, not diffed)
    group: tuple = ()                # records with the same group travel in one request
    name: str | None = None          # events: the destination's event or metric name
    time: datetime | None = None     # events: when it happened (naive UTC)
    time_text: str | None = None     # events: `time` as sent and hashed (iso_utc: ISO-8601 UTC with Z)
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
    return _timestamp_and_text(value)[1]


def _timestamp_and_text(value: Any) -> tuple[datetime, str]:
    """_timestamp(value), and the same instant as ISO-8601 UTC text with Z (seconds).

    Text the database gave without a zone in the form `YYYY-MM-DD HH:MM:SS[.digits]` (SQLite's)
    is that text's own digits once it has been parsed (which checks it): datetime.isoformat()
    costs several times the parse. Anything else (a datetime, a zone, another form) is formatted
    from the parsed value."""
    dt = _timestamp(value)
    if (type(value) is str and (len(value) == 19 or (value[19:20] == "." and value[20:].isdigit()))
            and value[4] == "-" and value[7] == "-" and value[10] in " T" and value[13] == ":"
            and value[16] == ":" and value[11:13] != "24"):
        return dt, value[:10] + "T" + value[11:19] + "Z"
    return dt, dt.isoformat(timespec="seconds") + "Z"


def unix_utc(value: Any) -> float:
    """UNIX seconds of a timestamp (naive values are UTC), for APIs that take epoch times."""
    return _timestamp(value).replace(tzinfo=timezone.utc).timestamp()


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return date.fromisoformat(str(value)[:10]).isoformat()


# Amounts read as text (SQLite's) each converter remembers: prices repeat, a dict lookup costs a
# fraction of Decimal() and quantize().
MONEY_TEXTS_KEPT = 65_536


def _money(places: int) -> Callable[[Any], Decimal]:
    quantum = Decimal(1).scaleb(-places)
    known: dict[str, Decimal] = {}

    def convert(value: Any) -> Decimal:
        if type(value) is str:
            amount = known.get(value)
            if amount is None:
                amount = Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)
                if len(known) < MONEY_TEXTS_KEPT:
                    known[value] = amount
            return amount
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


def _fast(f: Field) -> Callable[[Any], Any]:
    """The conversion of a non-null value without the error wrapping."""
    if f.type == "money":
        return _money(f.places)
    return CONVERTERS[f.type]


_NOTHING = object()  # equal to no value read


def _picker(positions: list[int]) -> Callable[[Any], tuple]:
    """row -> the tuple of its values at `positions` (itemgetter, which returns a bare value for one
    position and needs at least one)."""
    if not positions:
        return lambda row: ()
    if len(positions) == 1:
        i = positions[0]
        return lambda row: (row[i],)
    return itemgetter(*positions)


def _mapper(fields: tuple[Field, ...], at: dict[str, int]) -> Callable[[Any], dict]:
    """row (the source's values, by position: `at` maps a column to its position) -> payload.
    The fast path converts each value directly; any failure (or a NaN) maps the row again through
    converter(), whose errors name the column and value."""
    plan = [(f.name, at[f.column], converter(f)) for f in fields]
    fast = [(f.name, at[f.column], _fast(f), f.type == "text") for f in fields]

    def slow(row) -> dict:
        return {name: conv(row[i]) for name, i, conv in plan}

    def mapped(row) -> dict:
        out = {}
        try:
            for name, i, conv, text in fast:
                value = row[i]
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


def _positions(columns: list[str]) -> dict[str, int]:
    """column -> its position in a row; a name that occurs twice names its last value (as a dict of
    the row would)."""
    return {c: i for i, c in enumerate(columns)}


# Parents' join values per query when an event kind's children are looked up (bound parameters).
CHILD_LOOKUP_CHUNK = 500


def _children(conn: sa.Connection, child: Children, parents: list, at: dict[str, int],
              lookup: bool = False) -> dict[tuple, list]:
    """The child rows of `child` that belong to one of `parents` (rows by position: `at`), mapped,
    grouped by their join columns (in the source's order). Rows of other parents are skipped as
    read, before they are mapped. `lookup`, set when the parents are a few rows of their source
    (an event kind's events to send, while its children's source is every line item of the
    warehouse), asks the database for the parents' children only: `c.<join column> IN (the
    parents' values)`, the column with the most values cut in chunks of CHILD_LOOKUP_CHUNK, so it
    looks them up through an index on the join columns (stg_line_items (site, invoice_id, id):
    already in the source's order) instead of reading and sorting every child row. Bound values
    rather than a subquery of the parents' query: the kind's query is not run again per join
    column, and the plan does not rest on the planner's guess of the subquery's size. The IN
    lists keep any combination of the parents' values: the filter on `wanted` drops the few extra
    rows."""
    out: dict[tuple, list] = {}
    if not parents:
        return out
    parent_join = _picker([at[pc] for pc, _ in child.join])
    wanted = {tuple(map(str, parent_join(p))) for p in parents}
    results = _child_lookups(conn, child, [parent_join(p) for p in parents]) if lookup else None
    for result in results if results is not None else [_execute(conn, child.source)]:
        positions = _positions(list(result.keys()))
        join_key_of = _picker([positions[c] for _, c in child.join])
        mapped = _value_mapper(child.value, positions) if child.value else _mapper(child.fields, positions)
        for values in result:
            join_key = tuple(map(str, join_key_of(values)))
            if join_key in wanted:
                out.setdefault(join_key, []).append(mapped(values))
    return out


def _value_mapper(f: Field, at: dict[str, int]) -> Callable[[Any], Any]:
    """row -> the one value of a child given as a value (Children.value), converted."""
    convert, i = converter(f), at[f.column]

    def mapped(row) -> Any:
        return convert(row[i])
    return mapped


def _child_lookups(conn: sa.Connection, child: Children, parents: list[tuple]):
    """The queries of _children's lookup, one result at a time; None when the parents' values do
    not fit in bound lists (then the whole source is read). `parents`: each parent's join values."""
    values = [sorted({p[j] for p in parents if p[j] is not None}, key=str) for j in range(len(child.join))]
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


def _custom_field(row: list, at: dict[str, int], c) -> Any:
    """The value of Recurly custom field `c.field` in the row's `c.source` list, else `c.otherwise`."""
    fields = row[at[c.source]] if c.source in at else None
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            fields = None
    for item in fields if isinstance(fields, list) else ():
        if isinstance(item, dict) and item.get("name") == c.field and not _is_missing(item.get("value")):
            return str(item["value"])
    return row[at[c.otherwise]] if c.otherwise and c.otherwise in at else None


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
    result = _execute(conn, sql, params)
    columns = list(result.keys())
    rows = result.all()
    if not rows:
        return Selection(records=[], set_aside=[], considered=0, held_historical=held)
    read_at = _positions(columns)
    lists = [(c, _children(conn, c, rows, read_at, lookup=kind.is_event)) for c in kind.children]
    derive = _Derived(columns, kind, account_keys)
    columns, at = derive.columns, derive.at
    mapped, identity = _mapper(kind.fields, at), _mapper(kind.identity, at)
    key_at = at.get(kind.key)
    group_of = _picker([at[c] for c in kind.group_by])
    child_keys = [(child.name, groups, _picker([at[p] for p, _ in child.join])) for child, groups in lists]
    is_event = kind.is_event
    if is_event:
        time_at, name_at, event_names = at[kind.time], at[kind.event_name], kind.event_names
        last_at, last_times = _NOTHING, None
    records: list[Record] = []
    set_aside: list[SetAside] = []
    seen: dict[str, list] = {}
    for read in rows:
        row = derive(read)
        key = row[key_at] if key_at is not None else None
        if _is_missing(key):
            set_aside.append(SetAside(f"(no {kind.key}) {_describe(columns, row)}",
                                      f"missing key: column {kind.key} is empty"))
            continue
        key = str(key)
        if key in seen:  # two rows would overwrite each other at the destination: the first is sent
            # named by key and row, so the ledger keeps it apart from the record that is sent
            set_aside.append(SetAside(f"{key} ({_describe(columns, row)})",
                                      f"duplicate key: column {kind.key} = {key!r} is also the key of an earlier "
                                      f"row ({_describe(columns, seen[key])}); this one is not sent"))
            continue
        seen[key] = row
        try:
            payload = mapped(row)
            for name, groups, join_of in child_keys:
                payload[name] = groups.get(tuple(map(str, join_of(row))), [])
            who = identity(row)
        except ValueError as exc:
            set_aside.append(SetAside(key, f"unmappable row: {exc}"))
            continue
        record = Record(key=key, payload=payload, hash="", identity=who, group=group_of(row))
        if is_event:
            at_value = row[time_at]
            if at_value != last_at:  # rows come in time order: equal times are neighbours
                last_at, last_times = at_value, _timestamp_and_text(at_value)
            when, record.time_text = last_times
            record.name = name = event_names[row[name_at]]
            record.time, record.backfill = when, when < cutoff
            payload = {"name": name, "time": record.time_text, "properties": payload, **who}
            missing = [n for n, v in who.items() if _is_missing(v)]
            if missing:
                set_aside.append(SetAside(key, f"missing identity {', '.join(missing)} for event {name}"))
                continue
        record.hash = payload_hash(payload)
        records.append(record)
    return Selection(records=records, set_aside=set_aside, considered=len(rows), held_historical=held)


class _Derived:
    """The columns select() adds to each row read, before it is keyed and mapped: `account_key`
    (for a source with `account_code`: AccountKeys.value of it and `site`, as AccountKeys.add sets
    it in a dict), then the kind's custom fields, in order (each may read the columns set before
    it). A derived column the source already has is overwritten in place; the others follow the
    source's columns (`columns`, positions `at`). A row with nothing to derive is used as read."""

    def __init__(self, columns: list[str], kind: Kind, account_keys=None):
        self.columns = list(columns)
        at = _positions(self.columns)

        def position(name: str) -> int:
            if name not in at:
                at[name] = len(self.columns)
                self.columns.append(name)
            return at[name]

        self.account = None
        if account_keys is not None and "account_code" in at:
            site, code = at.get("site"), at["account_code"]
            self.account = (account_keys.value, site, code, position(ACCOUNT_KEY))
        self.custom = [(c, position(c.name)) for c in kind.custom_fields]
        self.at = at
        self.pad = [None] * (len(self.columns) - len(columns))

    def __call__(self, read):
        if not self.pad and self.account is None and not self.custom:
            return read
        row = list(read)
        if self.pad:
            row.extend(self.pad)
        if self.account is not None:
            value, site, code, to = self.account
            row[to] = value(row[site] if site is not None else None, row[code])
        for c, to in self.custom:
            row[to] = _custom_field(row, self.at, c)
        return row


def _describe(columns: list[str], row) -> str:
    """Names a keyless row in the ledger by its first two columns (sources start with site and id)."""
    shown = [f"{k}={v}" for k, v in list(dict(zip(columns, row)).items())[:2]]
    return ", ".join(shown) or "empty row"
