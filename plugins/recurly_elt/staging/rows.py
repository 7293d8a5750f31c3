"""API objects to staging rows: one converter per resource, compiled once from its declaration.

A staging row is a tuple in the column order of `stg_<name>` (tables.staging_table):
site, the declared columns, raw_json, _loaded_at, _run_id. Values are already in the form both
warehouses store, so the writers hand them to the driver untouched:

- timestamps as text `YYYY-MM-DD HH:MM:SS.ffffff` (naive UTC): exactly what SQLAlchemy writes to
  and reads from SQLite, and what PostgreSQL's COPY parses into `timestamp`. One fixed width
  matters on SQLite, where timestamps compare as text;
- json columns as canonical JSON text (compact, keys sorted), so a snapshot column such as a
  subscription's add-ons does not "change" when the API reorders keys;
- raw_json as the object's own bytes from the response, never re-serialised.

Why compiled: converting rows was most of an extraction's CPU time. A list page is decoded once
with msgspec into the envelope plus one undecoded `msgspec.Raw` per record (its bytes, kept as
raw_json); each record is then decoded into a msgspec Struct generated from the declaration, which
reads only the declared fields (nested ones such as `billing_info.payment_method.exp_year` through
nested Structs) and skips the rest in C; a small function generated from the declaration then
turns the Struct into the row tuple. `RowConverter.source` shows that function.

One set of rules decides what a declared field may hold (`RULES`, one function per declared
type; docs/extraction.md "Record rules"). A value that breaks them is never coerced: the record is
refused with a `RecordRejected` that names its id and every offending field, the raw value and the
reason, and the extractor quarantines it (staging/quarantine.py) while the rest of the page is
staged. The rules:

- string: a JSON string (or an integer, kept as its decimal text), without NUL characters or lone
  surrogates (neither warehouse stores both the same way), at most MAX_STRING_CHARS characters;
- integer: a JSON integer (or a number with no fraction, 3.0) within 64 bits; "3", 3.5, 10**20 and
  true are refused;
- money (an amount): a JSON number read as a Decimal from its JSON text, never a binary float,
  with at most 6 decimals and |x| < 1e14 (NUMERIC(20,6)); a 7th decimal is refused, not rounded;
  stored as its canonical decimal text ("0.005", "123456789.987654", "10": warehouse/types.py);
  strings such as "9,99" are refused;
- number (a rate): a JSON number within NUMERIC(20,6) (|x| < 1e14); strings are refused;
- boolean: JSON true or false only; "false", 0 and 1 are refused;
- timestamp: an ISO-8601 string with a time zone (Z or an offset) naming a real moment;
  "yesterday", epoch numbers, "2026-02-30T00:00:00Z" and naive strings are refused;
- "" is no value for every type but string: Recurly sends unset text as "", so a blank timestamp,
  number, integer or boolean is stored as NULL (raw_json keeps the ""), never refused; a string
  column keeps "" as sent, and every reader treats it as missing (docs/transform.md);
- json: any JSON value (strings in it without NUL characters or lone surrogates);
- every string anywhere in the record, declared or not (raw_json keeps the fields no declaration
  reads, and readers decode them: custom fields, destinations' attributes), field names included:
  no NUL character, no lone surrogate. A record breaking this is refused naming the JSON path
  (`custom_fields[0].value`), the same way on SQLite and PostgreSQL (nothing is replaced);
- an object on the way to a field (`billing_info` of `billing_info.payment_method.exp_year`) is an
  object or null (null: the fields under it are null); anything else is refused;
- the primary key is a non-empty string (or integer); a record without one is refused;
- a record is a JSON object.

The fast path is the same rules, checked in C: the Struct is strict (no lax "10.5" -> 10.5 or
"true" -> True), integers are bounded, the key must be a non-empty string, strings bounded in
length, and records whose bytes hold a NUL or surrogate escape (`\\u0000`, `\\ud...`) go the
plain way, where every string of the record is checked (a valid surrogate pair, an emoji sent as
escapes, passes). Whatever the fast path refuses
is decided by `from_object`, which applies the rules one by one and gives the reason; so both paths
give the same row for every record, and the same refusal (tests/staging/test_rows.py).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Callable, Iterable

import msgspec

from recurly_elt.recurly.client import NUL_ESCAPE
from recurly_elt.recurly.resources import RESOURCES, Column, Resource

_ENCODE_SORTED = msgspec.json.Encoder(order="sorted").encode
_ENCODE = msgspec.json.Encoder(decimal_format="number").encode
# The plain path reads every JSON number with a fraction or exponent as a Decimal (its digits as
# sent), so an amount never passes through a binary float on its way to staging.
_DECODE = msgspec.json.Decoder(float_hook=Decimal).decode
_FROMISO = datetime.fromisoformat

MAX_STRING_CHARS = 100_000          # a typed string column; the raw JSON keeps whatever was sent
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
NUMBER_LIMIT = 1e14                 # NUMERIC(20,6): 14 digits before the point
MONEY_DIGITS = 14, 6                # money: at most 14 digits before the point, 6 after
MAX_SHOWN_CHARS = 500               # of a refused value, in the quarantine and in messages
# The escapes a record's JSON must hold for one of its strings to hold a NUL or a lone surrogate,
# as bytes (the API's answer) and as text (a record encoded here): (backslash, NUL, surrogates).
_BAD_TEXT_ESCAPES = {
    bytes: (b"\\", NUL_ESCAPE, (b"\\ud", b"\\uD")),
    str: ("\\", NUL_ESCAPE.decode(), ("\\ud", "\\uD")),
}


def may_hold_bad_text(raw_json: bytes | str, *, nul: bool = True) -> bool:
    """Whether a record's JSON may hold a NUL (unless `nul=False`: the caller checked) or a lone
    surrogate. A scan for a backslash first, which most records pass; then the escapes."""
    backslash, nul_escape, surrogates = _BAD_TEXT_ESCAPES[type(raw_json)]
    if backslash not in raw_json:
        return False
    return (nul and nul_escape in raw_json) or any(escape in raw_json for escape in surrogates)


class BadValue(ValueError):
    """A value a rule refuses; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Problem:
    field: str        # the declared path ("billing_info.payment_method.exp_year"), "" for the record
    raw_value: str    # the value as JSON text (ASCII escapes, cut at MAX_SHOWN_CHARS)
    reason: str


class RecordRejected(ValueError):
    """A record some rule refuses: names the resource, site, record id and each offending field."""

    def __init__(self, resource: str, site: str, record_id: str | None, problems: list[Problem], raw_json: str):
        self.resource, self.site, self.record_id = resource, site, record_id
        self.problems, self.raw_json = problems, raw_json
        fields = "; ".join(f"{p.field or 'the record'}: {p.reason} (value {p.raw_value[:80]})" for p in problems)
        super().__init__(f"{resource} record {record_id!r} of site {site!r} refused: {fields}")


def shown(value: Any) -> str:
    """A value as JSON text for people: ASCII escapes (NUL, surrogates visible), cut when long."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True, default=_decimal_shown)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_SHOWN_CHARS:
        text = f"{text[:MAX_SHOWN_CHARS]}... ({len(text):,} characters)"
    return text


def _decimal_shown(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # for people only: the message shows the number
    raise TypeError(type(value).__name__)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _check_text(text: str) -> str:
    if "\x00" in text:
        raise BadValue("contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadValue("contains a lone surrogate (not valid Unicode text)") from None
    return text


def _text_problem(text: str) -> str | None:
    try:
        _check_text(text)
    except BadValue as bad:
        return bad.reason
    return None


def bad_text_anywhere(obj: Any) -> list[tuple[str, Any, str]]:
    """(JSON path, value, reason) of every string of `obj` (keys included) holding a NUL or a lone
    surrogate: `custom_fields[0].value`; a bad key is named by its escaped text."""
    found: list[tuple[str, Any, str]] = []
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            reason = _text_problem(value)
            if reason:
                found.append((path, value, reason))
        elif isinstance(value, dict):
            for key, child in value.items():
                reason = _text_problem(key)
                name = json.dumps(key) if reason else key
                here = f"{path}.{name}" if path else name
                if reason:
                    found.append((here, key, f"the field name {reason}"))
                stack.append((here, child))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(value))
    return sorted(found, key=lambda item: item[0])


def json_text(value: Any) -> str:
    """Canonical JSON text of a value: compact, object keys sorted."""
    return _ENCODE_SORTED(value).decode()


# -- the rules, one per declared type ---------------------------------------------------------------
def string_value(value: Any) -> str:
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise BadValue(f"a string of {len(value):,} characters (at most {MAX_STRING_CHARS:,})")
        return _check_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadValue(f"expected a string, got {_kind(value)}")


def integer_value(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise BadValue(f"expected an integer, got {_kind(value)}")
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise BadValue(f"{value} is not an integer")
        value = int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise BadValue(f"{value!r} is not an integer")
        value = int(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadValue("an integer outside the 64-bit range")
    return value


def number_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise BadValue(f"expected a number, got {_kind(value)}")
    if isinstance(value, Decimal):
        value = float(value) if value.is_finite() else math.inf
    number = float(value) if abs(value) < 1e300 else math.inf
    if not math.isfinite(number) or abs(number) >= NUMBER_LIMIT:
        raise BadValue(f"a number outside NUMERIC(20,6) (|x| < {NUMBER_LIMIT:.0e})")
    return number


def money_value(value: Any) -> str:
    """An amount as its canonical decimal text: exact digits, no exponent, no trailing zeros.

    A Decimal (the JSON number as sent) or an int; a Python float (an object made in code, never the
    API's JSON) is read as the shortest text that gives it back (`repr`: the literal written)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise BadValue(f"expected a number, got {_kind(value)}")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise BadValue("not a finite number")
    sign, digits, exponent = number.as_tuple()
    digits = list(digits)
    while len(digits) > 1 and exponent < 0 and digits[-1] == 0:  # exact: no context, no rounding
        digits.pop()
        exponent += 1
    whole, places = MONEY_DIGITS
    if exponent < -places:
        raise BadValue(f"an amount with {-exponent} decimals (at most {places}: NUMERIC(20,6) would round it)")
    if any(digits) and len(digits) + exponent > whole:
        raise BadValue(f"an amount outside NUMERIC(20,6) (|x| < {NUMBER_LIMIT:.0e})")
    if not any(digits):
        return "0"
    return format(Decimal((sign, tuple(digits), exponent)), "f")


def _money_raw(raw: msgspec.Raw) -> str | None:
    """The fast path's money: the value's JSON text, parsed as a Decimal (no float in between).
    Anything but a JSON number or null is left to the plain path, which gives the reason."""
    text = bytes(raw)
    if text == b"null":
        return None
    if text[:1] not in b"-0123456789":
        raise BadValue("not a JSON number")
    return money_value(Decimal(text.decode()))


def boolean_value(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise BadValue(f"expected true or false, got {_kind(value)}")


# Days and times of day already validated (a run reads few distinct days; at most 86,400 times).
_VALID_DAYS: set[str] = set()
_VALID_CLOCKS: set[str] = set()
_MAX_REMEMBERED_DAYS = 200_000


def _validate_usual(day: str, clock: str) -> None:
    text = f"{day}T{clock}"
    try:
        moment = _FROMISO(text)
    except ValueError:
        raise BadValue("not a valid ISO-8601 timestamp (no such date or time)") from None
    if moment.isoformat() != text:  # another ISO form of the same length (a week date: 2025-W01-1)
        raise BadValue("not an ISO-8601 calendar date and time (YYYY-MM-DDTHH:MM:SS)")
    if len(_VALID_DAYS) > _MAX_REMEMBERED_DAYS:
        _VALID_DAYS.clear()
    _VALID_DAYS.add(day)
    _VALID_CLOCKS.add(clock)


def timestamp_value(value: Any) -> str:
    """An ISO-8601 timestamp with a zone as the stored text of a naive UTC timestamp."""
    if not isinstance(value, str):
        raise BadValue(f"expected an ISO-8601 timestamp string, got {_kind(value)}")
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":   # the API's usual form: seconds, UTC
        day, clock = value[:10], value[11:19]
        if day not in _VALID_DAYS or clock not in _VALID_CLOCKS:
            _validate_usual(day, clock)   # 2026-02-30 and 24:00:00 are refused here
        return f"{day} {clock}.000000"
    try:
        moment = _FROMISO(value)
    except ValueError:
        raise BadValue("not a valid ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise BadValue("a timestamp without a time zone (Z or an offset)")
    try:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    except OverflowError:
        raise BadValue("a timestamp outside the years 1..9999 in UTC") from None
    return moment.isoformat(" ", "microseconds")


def _as_floats(value: Any) -> Any:
    """The plain path's Decimals inside a JSON value as the floats the fast path decodes, so both
    give one canonical text for a json column."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    return value


def json_value(value: Any) -> str:
    try:
        return json_text(_as_floats(value))
    except UnicodeEncodeError:
        raise BadValue("contains a lone surrogate (not valid Unicode text)") from None


RULES: dict[str, Callable[[Any], Any]] = {
    "string": string_value, "integer": integer_value, "money": money_value, "number": number_value,
    "boolean": boolean_value, "timestamp": timestamp_value, "json": json_value,
}

# The same rules as msgspec types, checked in C by the fast path (strict: no lax conversions).
_Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
_Number = Annotated[float, msgspec.Meta(gt=-NUMBER_LIMIT, lt=NUMBER_LIMIT)]
_String = Annotated[str, msgspec.Meta(max_length=MAX_STRING_CHARS)]
_Key = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STRING_CHARS)]
_STRUCT_TYPES: dict[str, Any] = {
    "string": _String, "integer": _Int64, "money": msgspec.Raw, "number": _Number, "boolean": bool,
    "timestamp": str, "json": Any,
}
# What the fast path still applies after msgspec decoded a value (None: nothing, the type is the rule).
_AFTER_DECODE: dict[str, Callable[[Any], Any] | None] = {
    "string": None, "integer": None, "money": _money_raw, "number": None, "boolean": None,
    "timestamp": timestamp_value,
    "json": json_text,
}


def timestamp_text(value: Any) -> str | None:
    """An API timestamp (ISO-8601 with a zone) as stored text; None and "" are None (BadValue otherwise)."""
    if value is None or value == "":
        return None
    return timestamp_value(value)


def datetime_text(moment: datetime) -> str:
    """A naive UTC datetime as stored text (the form `timestamp_text` produces)."""
    return moment.isoformat(" ", "microseconds")


class RowConverter:
    """Rows of one resource's staging table from raw JSON records or decoded objects."""

    def __init__(self, resource: Resource):
        self.resource = resource
        self.columns: tuple[str, ...] = ("site", *(c.name for c in resource.columns), "raw_json", "_loaded_at",
                                         "_run_id")
        self.index = {name: i for i, name in enumerate(self.columns)}
        self.key_index = self.index[resource.primary_key]
        self.cursor_index = self.index.get(resource.cursor)
        struct_type, self.source, self._from_struct = _compile(resource)
        self._decoder = msgspec.json.Decoder(struct_type)
        self._paths = tuple((c, tuple(c.path.split(".")), RULES[c.type]) for c in resource.columns)

    def from_raw(self, raw: bytes | memoryview | msgspec.Raw, site: str, loaded_at: str,
                 run_id: str | None, *, may_hold_nul: bool = True) -> tuple:
        """The row of one record as the API sent it (its JSON bytes become raw_json as they are).

        Raises RecordRejected when a rule refuses the record. `may_hold_nul=False` says the caller
        has checked that the bytes hold no NUL escape (the client checks a whole page at once,
        cheaper than each record); otherwise this record is checked here."""
        data = bytes(raw)
        # Records holding a NUL or a surrogate escape take the plain path, which checks every string.
        suspect = may_hold_bad_text(data, nul=may_hold_nul)
        if not suspect:
            try:
                decoded = self._decoder.decode(data)
            except (msgspec.ValidationError, msgspec.DecodeError):
                pass  # the plain path finds the reason
            else:
                try:
                    return self._from_struct(decoded, site, data.decode(), loaded_at, run_id)
                except BadValue:
                    pass
        raw_json = data.decode()
        try:
            obj = _DECODE(data)
        except msgspec.DecodeError:
            try:  # JSON msgspec refuses but Python reads: lone surrogates, numbers out of range
                obj = json.loads(raw_json, parse_float=Decimal)
            except (ValueError, RecursionError):
                raise RecordRejected(self.resource.name, site, None,
                                     [Problem("", shown(raw_json), "not valid JSON")], raw_json) from None
        return self.from_object(obj, site, loaded_at, run_id, raw_json=raw_json, suspect=suspect)

    def from_object(self, obj: Any, site: str, loaded_at: str, run_id: str | None, *,
                    raw_json: str | None = None, suspect: bool | None = None) -> tuple:
        """The row of a decoded object (raw_json: its compact JSON unless given), by the rules one by
        one; RecordRejected naming every field they refuse. `suspect`: whether `raw_json` may hold a
        NUL or a lone surrogate, when the caller has already looked (`may_hold_bad_text`)."""
        name = self.resource.name
        if raw_json is None:
            raw_json = _raw_text(obj)
        if not isinstance(obj, dict):
            raise RecordRejected(name, site, None, [Problem("", shown(obj), "the record is not a JSON object")],
                                 raw_json)
        values: list[Any] = [site]
        problems: dict[str, Problem] = {}
        for column, parts, rule in self._paths:
            value: Any = obj
            for depth, part in enumerate(parts):
                if not isinstance(value, dict):
                    if value is not None:
                        parent = ".".join(parts[:depth])
                        problems.setdefault(parent, Problem(parent, shown(value),
                                                            f"expected an object, got {_kind(value)}"))
                    value = None
                    break
                value = value.get(part)
            if value is None or (value == "" and column.type != "string"):
                values.append(None)
                continue
            try:
                values.append(rule(value))
            except BadValue as bad:
                problems.setdefault(column.path, Problem(column.path, shown(value), bad.reason))
                values.append(None)
        if suspect is None:
            suspect = may_hold_bad_text(raw_json)
        if suspect:  # strings no declaration reads, too
            for path, value, reason in bad_text_anywhere(obj):
                within = [seen for seen in problems if path.startswith((f"{seen}.", f"{seen}["))]
                if path in problems or any(problems[seen].reason != reason for seen in within):
                    continue  # a rule already refused this field for another reason
                for seen in within:  # a json column refused as a whole: name the string itself
                    del problems[seen]
                problems[path] = Problem(path, shown(value), reason)
        pk = self.resource.primary_key
        if values[self.key_index] in (None, "") and pk not in problems:
            what = "an empty" if obj.get(pk) == "" else "no"
            problems[pk] = Problem(pk, shown(obj.get(pk)), f"{what} {pk}: the record cannot be keyed")
        if problems:  # the id as the rules stored it: a refused id (NUL, too long) is not one
            record_id = values[self.key_index] if pk not in problems else None
            raise RecordRejected(name, site, record_id, list(problems.values()), raw_json)
        values += [raw_json, loaded_at, run_id]
        return tuple(values)


def _raw_text(obj: Any) -> str:
    try:
        return _ENCODE(obj).decode()
    except UnicodeEncodeError:
        return json.dumps(_as_floats(obj), ensure_ascii=True, separators=(",", ":"))


@lru_cache(maxsize=None)
def converter(resource_name: str) -> RowConverter:
    return RowConverter(RESOURCES[resource_name])


def encode_object(obj: dict) -> bytes:
    """Compact JSON of an object changed after decoding (a completed invoice): its new raw_json."""
    return _raw_text(obj).encode()


def decode_object(raw: bytes | memoryview | msgspec.Raw) -> Any:
    """A record's JSON (any value; Python's parser for what msgspec refuses, such as lone surrogates),
    numbers with a fraction as Decimal (as the plain path reads them)."""
    data = bytes(raw)
    try:
        return _DECODE(data)
    except msgspec.DecodeError:
        return json.loads(data, parse_float=Decimal)


# -- compilation --------------------------------------------------------------------------------
def _tree(columns: Iterable[Column], resource: str) -> dict:
    """Column paths as a tree: {"billing_info": {"payment_method": {"exp_year": Column}}}."""
    root: dict = {}
    for col in columns:
        node = root
        *parents, leaf = col.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if isinstance(node, Column):
                raise ValueError(f"{resource}: column {col.name!r} reads inside {part!r}, which column "
                                 f"{node.name!r} already reads as a whole")
        if leaf in node:
            raise ValueError(f"{resource}: two columns read the path {col.path!r}")
        node[leaf] = col
    return root


def _compile(resource: Resource) -> tuple[type, str, Callable[..., tuple]]:
    """A Struct type for the declared fields and the function from a decoded Struct to a row tuple.

    Struct fields are named f0, f1, ... and renamed to the JSON keys, so any key (a Python keyword,
    a name with a dash) works. The generated function reads each column's value through the nested
    Structs (None when a parent object is missing or null) and applies `_AFTER_DECODE`.
    """
    counter = itertools.count()
    lines: list[str] = []
    expressions: dict[str, str] = {}   # column name -> variable holding its final value
    helpers: dict[str, Any] = {}

    def struct_for(node: dict, name: str, holder: str) -> type:
        fields, rename = [], {}
        for key, child in node.items():
            field = f"f{len(fields)}"
            rename[field] = key
            if isinstance(child, Column):
                var = f"c{next(counter)}"
                lines.append(f"{var} = {holder}.{field}" if holder == "r"
                             else f"{var} = {holder}.{field} if {holder} is not None else None")
                after = _AFTER_DECODE[child.type]
                if after is not None:
                    helper = f"_{child.type}"
                    helpers[helper] = after
                    lines.append(f"if {var} is not None: {var} = {helper}({var})")
                expressions[child.name] = var
                if child.name == resource.primary_key and holder == "r":
                    fields.append((field, _Key))   # required, non-empty: else the plain path says why
                else:
                    fields.append((field, _STRUCT_TYPES[child.type] | None, None))
            else:
                var = f"n{next(counter)}"
                lines.append(f"{var} = {holder}.{field}" if holder == "r"
                             else f"{var} = {holder}.{field} if {holder} is not None else None")
                nested = struct_for(child, f"{name}_{key}", var)
                fields.append((field, nested | None, None))
        return msgspec.defstruct(name, fields, rename=rename, forbid_unknown_fields=False, kw_only=True)

    struct_type = struct_for(_tree(resource.columns, resource.name), f"{resource.name}_record", "r")
    values = ", ".join(["site", *(expressions[c.name] for c in resource.columns), "raw_json", "loaded_at", "run_id"])
    body = "\n    ".join(lines)
    source = f"def row_from_struct(r, site, raw_json, loaded_at, run_id):\n    {body}\n    return ({values},)\n"
    namespace: dict[str, Any] = dict(helpers)
    exec(compile(source, f"<staging row converter: {resource.name}>", "exec"), namespace)  # noqa: S102
    return struct_type, source, namespace["row_from_struct"]
