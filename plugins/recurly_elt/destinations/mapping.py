"""Destination mappings: `include/mappings/destinations/<name>.yaml`, read into frozen declarations.

A mapping says, per object kind of a destination, which warehouse rows to read (`source`: SQL
valid on SQLite and PostgreSQL), which column is the destination's key, the fields and their names
at the destination, the event names, and the batch limits. docs/destinations.md describes every
setting; the engine (engine.py) reads nothing else.

Field types (`type:`) say how a warehouse value becomes a JSON value:
  text      str(value)                        integer   int
  number    a JSON number (floats as read)    boolean   true/false
  money     an exact decimal with `places` digits (default 2), rounded half-up once, here
  timestamp ISO-8601 UTC with Z               date      YYYY-MM-DD
  json      the column holds JSON text, sent as the value it encodes
A null stays null (Braze removes the attribute; Klaviyo clears the property).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "include" / "mappings" / "destinations"
FIELD_TYPES = ("text", "integer", "number", "boolean", "money", "timestamp", "date", "json")
KIND_TYPES = ("object", "event")
MODES = ("daily_sync", "import_only")
POLICIES = ("at_most_once", "at_least_once")
ACCOUNT_KEY_FORMS = ("auto", "account_code", "site_account_code")


def mappings_dir() -> Path:
    """<repo>/include/mappings/destinations, or $RECURLY_ELT_MAPPINGS_DIR/destinations."""
    base = os.environ.get("RECURLY_ELT_MAPPINGS_DIR")
    return Path(base) / "destinations" if base else DEFAULT_DIR


class MappingError(ValueError):
    """A mapping file that cannot be used: the message names the file and the setting."""


@dataclass(frozen=True)
class Field:
    name: str          # the name at the destination
    column: str        # the source column
    type: str = "text"
    places: int = 2    # money only


@dataclass(frozen=True)
class Children:
    """A list property built from another source: rows whose `join` columns equal the parent's."""

    name: str
    source: str
    join: tuple[tuple[str, str], ...]      # (parent column, child column)
    fields: tuple[Field, ...] = ()         # each child as an object of these fields ...
    value: Field | None = None             # ... or as this one value


@dataclass(frozen=True)
class CustomField:
    """A column computed from a Recurly custom field list (`[{"name": ..., "value": ...}]` JSON):
    the value of the field named `field` in column `source`, or column `otherwise` when the row
    has no such field or it is empty (e.g. a tenant id, else the account code)."""

    name: str
    source: str
    field: str
    otherwise: str | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    type: str                              # object | event
    source: str
    key: str                               # column whose value identifies the object or event
    fields: tuple[Field, ...]
    children: tuple[Children, ...] = ()
    identity: tuple[Field, ...] = ()       # events: who the event is about (sent, not diffed)
    event_name: str | None = None          # events: column holding the warehouse's event name
    event_names: dict = field(default_factory=dict)  # warehouse name -> destination name
    time: str | None = None                # events: column holding when it happened
    group_by: tuple[str, ...] = ()         # records with equal values travel in one request
    max_records: int = 75
    max_bytes: int = 4_000_000
    options: dict = field(default_factory=dict)  # adapter-specific settings of this kind
    custom_fields: tuple[CustomField, ...] = ()  # columns added to each row before mapping
    resync_after_days: int | None = None   # objects: overrides the mapping's (0 = never for this kind)

    @property
    def is_event(self) -> bool:
        return self.type == "event"


@dataclass(frozen=True)
class Mapping:
    destination: str
    adapter: str                           # module recurly_elt.destinations.<adapter>
    connection: str                        # Airflow connection id
    pool: str
    mode: str = "daily_sync"
    event_max_age_days: int = 30           # older events are held back unless the run backfills
    non_idempotent_policy: str = "at_most_once"
    sample_size: int = 5                   # dry run: payloads kept per kind
    # How a Recurly account is named at the destination: the column `account_key` of every source
    # row (account_keys.py): its account code, or <site><separator><account code>, or auto.
    account_key: str = "auto"
    account_key_separator: str = ":"
    # daily_sync: an object last delivered more than N days ago is sent again, whole, even if
    # unchanged (overwrites edits made at the destination); None = only when it changes.
    resync_after_days: int | None = None
    kinds: tuple[Kind, ...] = ()
    options: dict = field(default_factory=dict)
    path: str = ""

    def kind(self, name: str) -> Kind:
        for k in self.kinds:
            if k.name == name:
                return k
        raise KeyError(f"{self.destination} has no kind {name!r}")


def _field(path: str, where: str, name: str, spec) -> Field:
    if isinstance(spec, str):
        spec = {"column": spec}
    if not isinstance(spec, dict) or not spec.get("column"):
        raise MappingError(f"{path}: {where}.{name} needs a column (a name, or {{column: ..., type: ...}})")
    type_ = spec.get("type", "text")
    if type_ not in FIELD_TYPES:
        raise MappingError(f"{path}: {where}.{name} has type {type_!r}; known: {', '.join(FIELD_TYPES)}")
    return Field(name=str(name), column=str(spec["column"]), type=type_, places=int(spec.get("places", 2)))


def _fields(path: str, where: str, specs) -> tuple[Field, ...]:
    if not specs:
        return ()
    if not isinstance(specs, dict):
        raise MappingError(f"{path}: {where} must be a mapping of destination name -> column")
    return tuple(_field(path, where, name, spec) for name, spec in specs.items())


def _kind(path: str, name: str, spec: dict) -> Kind:
    where = f"kinds.{name}"
    missing = [k for k in ("type", "source", "key") if not spec.get(k)]
    if missing:
        raise MappingError(f"{path}: {where} needs {', '.join(missing)}")
    if spec["type"] not in KIND_TYPES:
        raise MappingError(f"{path}: {where}.type is {spec['type']!r}; known: {', '.join(KIND_TYPES)}")
    children = []
    for child_name, c in (spec.get("children") or {}).items():
        cw = f"{where}.children.{child_name}"
        if not c.get("source") or not c.get("join"):
            raise MappingError(f"{path}: {cw} needs source and join")
        value = _field(path, cw, "value", c["value"]) if c.get("value") else None
        children.append(Children(name=str(child_name), source=str(c["source"]),
                                 join=tuple((str(p), str(ch)) for p, ch in c["join"].items()),
                                 fields=_fields(path, f"{cw}.fields", c.get("fields")), value=value))
    custom = []
    for col, c in (spec.get("custom_fields") or {}).items():
        if not isinstance(c, dict) or not c.get("from") or not c.get("field"):
            raise MappingError(f"{path}: {where}.custom_fields.{col} needs from (the JSON column) and field")
        custom.append(CustomField(str(col), str(c["from"]), str(c["field"]), c.get("else")))
    batch = spec.get("batch") or {}
    kind = Kind(
        name=name, type=spec["type"], source=str(spec["source"]), key=str(spec["key"]),
        fields=_fields(path, f"{where}.fields", spec.get("fields")), children=tuple(children),
        identity=_fields(path, f"{where}.identity", spec.get("identity")),
        event_name=spec.get("event_name"), event_names=dict(spec.get("event_names") or {}),
        time=spec.get("time"), group_by=tuple(spec.get("group_by") or ()),
        max_records=int(batch.get("max_records", 75)), max_bytes=int(batch.get("max_bytes", 4_000_000)),
        options=dict(spec.get("options") or {}), custom_fields=tuple(custom),
        resync_after_days=_days(path, f"{where}.resync_after_days", spec.get("resync_after_days")),
    )
    if kind.is_event and kind.resync_after_days:
        raise MappingError(f"{path}: {where} is an event kind: events are sent once, never re-synced")
    if kind.is_event and not (kind.time and kind.event_name and kind.event_names):
        raise MappingError(f"{path}: {where} is an event kind: it needs time, event_name and event_names")
    if kind.max_records < 1 or kind.max_bytes < 1024:
        raise MappingError(f"{path}: {where}.batch limits must be >= 1 record and >= 1024 bytes")
    return kind


def _days(path: str, where: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MappingError(f"{path}: {where} must be a whole number of days >= 0 (0: never), got {value!r}")
    return value


def parse_mapping(doc: dict, path: str = "<mapping>") -> Mapping:
    if not isinstance(doc, dict):
        raise MappingError(f"{path}: expected a YAML mapping at the top level")
    missing = [k for k in ("destination", "adapter", "connection", "kinds") if not doc.get(k)]
    if missing:
        raise MappingError(f"{path}: missing {', '.join(missing)}")
    mode = doc.get("mode", "daily_sync")
    if mode not in MODES:
        raise MappingError(f"{path}: mode {mode!r}; known: {', '.join(MODES)}")
    events = doc.get("events") or {}
    policy = events.get("non_idempotent_policy", "at_most_once")
    if policy not in POLICIES:
        raise MappingError(f"{path}: events.non_idempotent_policy {policy!r}; known: {', '.join(POLICIES)}")
    account_key = doc.get("account_key") or {}
    if not isinstance(account_key, dict):
        raise MappingError(f"{path}: account_key must be a mapping ({{form: ..., separator: ...}})")
    form = account_key.get("form", "auto")
    if form not in ACCOUNT_KEY_FORMS:
        raise MappingError(f"{path}: account_key.form {form!r}; known: {', '.join(ACCOUNT_KEY_FORMS)}")
    separator = str(account_key.get("separator", ":"))
    if not separator:
        raise MappingError(f"{path}: account_key.separator must not be empty")
    return Mapping(
        account_key=form, account_key_separator=separator,
        resync_after_days=_days(path, "resync_after_days", doc.get("resync_after_days")),
        destination=str(doc["destination"]), adapter=str(doc["adapter"]), connection=str(doc["connection"]),
        pool=str(doc.get("pool") or f"recurly_{doc['destination']}"), mode=mode,
        event_max_age_days=int(events.get("max_age_days", 30)), non_idempotent_policy=policy,
        sample_size=int(doc.get("sample_size", 5)),
        kinds=tuple(_kind(path, str(n), s or {}) for n, s in doc["kinds"].items()),
        options=dict(doc.get("options") or {}), path=path,
    )


def load_mapping(name: str, folder: str | Path | None = None) -> Mapping:
    """The mapping of destination `name` (the file <folder>/<name>.yaml)."""
    path = Path(folder) if folder else mappings_dir()
    file = path / f"{name}.yaml"
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = sorted(p.stem for p in path.glob("*.yaml"))
        raise MappingError(f"no mapping {file.name} in {path} (destinations: {', '.join(known) or 'none'})") from None
    return parse_mapping(doc, str(file))


def destination_names(folder: str | Path | None = None) -> list[str]:
    """Every destination with a mapping file, sorted (read without parsing them)."""
    return sorted(p.stem for p in (Path(folder) if folder else mappings_dir()).glob("*.yaml"))
