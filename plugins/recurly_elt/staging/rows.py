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

A record whose declared fields do not have the declared JSON types (say, a number where a string
was declared) is not an error: it goes through `from_object`, the plain-Python path, which coerces
each value (str(), int(), float(), bool()) as the declaration says. Both paths give the same row
for well-typed records (tests/staging/test_rows.py).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable, Iterable

import msgspec

from recurly_elt.recurly.resources import RESOURCES, Column, Resource
from recurly_elt.staging.tables import parse_timestamp

_ENCODE_SORTED = msgspec.json.Encoder(order="sorted").encode
_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.decode

# JSON types of the typed columns in the fast path (lax: "10.5" -> 10.5, 2.0 -> 2 are accepted).
_STRUCT_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool, "timestamp": str, "json": Any,
}


def timestamp_text(value: Any) -> str | None:
    """An API timestamp (ISO-8601, any zone) as the stored text of a naive UTC timestamp."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value) == 20 and value[19] == "Z" and value[10] == "T":
        return f"{value[:10]} {value[11:19]}.000000"   # the API's usual form: whole seconds, UTC
    moment = parse_timestamp(value)
    return moment.isoformat(" ", "microseconds")


def datetime_text(moment: datetime) -> str:
    """A naive UTC datetime as stored text (the form `timestamp_text` produces)."""
    return moment.isoformat(" ", "microseconds")


def json_text(value: Any) -> str:
    """Canonical JSON text of a value: compact, object keys sorted."""
    return _ENCODE_SORTED(value).decode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# Per declared type: what the plain-Python path applies to a non-null value, and what the fast path
# still has to apply after msgspec decoded it (None: nothing, the Struct field already has the type).
_COERCE: dict[str, Callable[[Any], Any]] = {
    "string": _text, "integer": int, "number": float, "boolean": bool, "timestamp": timestamp_text, "json": json_text,
}
_AFTER_DECODE: dict[str, Callable[[Any], Any] | None] = {
    "string": None, "integer": None, "number": None, "boolean": None, "timestamp": timestamp_text, "json": json_text,
}


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
        self._decoder = msgspec.json.Decoder(struct_type, strict=False)
        self._paths = tuple((tuple(c.path.split(".")), _COERCE[c.type]) for c in resource.columns)

    def from_raw(self, raw: bytes | memoryview | msgspec.Raw, site: str, loaded_at: str,
                 run_id: str | None) -> tuple:
        """The row of one record as the API sent it (its JSON bytes become raw_json as they are)."""
        data = bytes(raw)
        try:
            decoded = self._decoder.decode(data)
        except msgspec.ValidationError:
            return self.from_object(_DECODE(data), site, loaded_at, run_id, raw_json=data.decode())
        return self._from_struct(decoded, site, data.decode(), loaded_at, run_id)

    def from_object(self, obj: dict, site: str, loaded_at: str, run_id: str | None, *,
                    raw_json: str | None = None) -> tuple:
        """The row of a decoded object (raw_json: its compact JSON unless given)."""
        if not isinstance(obj, dict):
            raise ValueError(f"{self.resource.name}: a record of site {site!r} is not a JSON object: "
                             f"{str(obj)[:200]}")
        values: list[Any] = [site]
        for parts, coerce in self._paths:
            value: Any = obj
            for part in parts:
                value = value.get(part) if isinstance(value, dict) else None
            values.append(None if value is None else coerce(value))
        if raw_json is None:
            raw_json = _ENCODE(obj).decode()
        values += [raw_json, loaded_at, run_id]
        return tuple(values)


@lru_cache(maxsize=None)
def converter(resource_name: str) -> RowConverter:
    return RowConverter(RESOURCES[resource_name])


def encode_object(obj: dict) -> bytes:
    """Compact JSON of an object changed after decoding (a completed invoice): its new raw_json."""
    return _ENCODE(obj)


def decode_object(raw: bytes | memoryview | msgspec.Raw) -> dict:
    return _DECODE(bytes(raw))


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
                fields.append((field, _STRUCT_TYPES[child.type] | None, None))
            else:
                var = f"n{next(counter)}"
                lines.append(f"{var} = {holder}.{field}" if holder == "r"
                             else f"{var} = {holder}.{field} if {holder} is not None else None")
                nested = struct_for(child, f"{name}_{key}", var)
                fields.append((field, nested | None, None))
        return msgspec.defstruct(name, fields, rename=rename, forbid_unknown_fields=False)

    struct_type = struct_for(_tree(resource.columns, resource.name), f"{resource.name}_record", "r")
    values = ", ".join(["site", *(expressions[c.name] for c in resource.columns), "raw_json", "loaded_at", "run_id"])
    body = "\n    ".join(lines)
    source = f"def row_from_struct(r, site, raw_json, loaded_at, run_id):\n    {body}\n    return ({values},)\n"
    namespace: dict[str, Any] = dict(helpers)
    exec(compile(source, f"<staging row converter: {resource.name}>", "exec"), namespace)  # noqa: S102
    return struct_type, source, namespace["row_from_struct"]
