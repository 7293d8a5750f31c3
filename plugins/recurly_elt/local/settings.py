"""`airflow_settings.yaml` (Astro CLI format) into Airflow: connections, pools, variables.

Airflow core never reads that file (only the Astro CLI does), so the project loads it itself:

    settings = load_settings(Path("airflow_settings.yaml"))   # parse and check, no Airflow needed
    apply_to_airflow(settings)                                 # upsert into the metadata database
    settings.environment()                                     # or AIRFLOW_CONN_* / AIRFLOW_VAR_* (tests)

Loading is an upsert keyed by connection id, pool name and variable name: running it twice
changes nothing, and connections, pools or variables made in the UI under other names are
left alone. A relative sqlite path (the local warehouse) is resolved against the folder of the
settings file, so it points at the same file whatever the working directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

_CONNECTION_KEYS = {
    "conn_id", "conn_type", "conn_host", "conn_login", "conn_password", "conn_port", "conn_schema", "conn_extra",
}
_POOL_KEYS = {"pool_name", "pool_slot", "pool_description"}
_VARIABLE_KEYS = {"variable_name", "variable_value"}


class SettingsError(ValueError):
    """The settings file is not usable; the message names the file and the entry, never a secret."""


@dataclass(frozen=True)
class ConnectionSpec:
    conn_id: str
    conn_type: str
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        """As on Airflow's Connection, so code reading connections accepts a spec too."""
        return dict(self.extra)

    def as_json(self) -> str:
        """The JSON form Airflow accepts in an `AIRFLOW_CONN_<ID>` environment variable."""
        body: dict[str, Any] = {"conn_type": self.conn_type}
        for key in ("host", "login", "password", "port", "schema"):
            value = getattr(self, key)
            if value not in (None, ""):
                body[key] = value
        if self.extra:
            body["extra"] = self.extra
        return json.dumps(body)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    description: str = ""


@dataclass(frozen=True)
class VariableSpec:
    key: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    source: Path
    connections: tuple[ConnectionSpec, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    variables: tuple[VariableSpec, ...] = ()

    def connection(self, conn_id: str) -> ConnectionSpec:
        for conn in self.connections:
            if conn.conn_id == conn_id:
                return conn
        raise SettingsError(f"{self.source.name}: no connection {conn_id!r}")

    def with_connection(self, conn_id: str, **changes: Any) -> "Settings":
        """A copy with one connection changed (tests point `recurly_default` at their own sandbox)."""
        self.connection(conn_id)  # raises if unknown
        conns = tuple(replace(c, **changes) if c.conn_id == conn_id else c for c in self.connections)
        return replace(self, connections=conns)

    def environment(self) -> dict[str, str]:
        """`AIRFLOW_CONN_*` and `AIRFLOW_VAR_*` variables: the same settings without a database.

        Pools have no environment form; `dag.test()` ignores pools anyway.
        """
        env = {f"AIRFLOW_CONN_{c.conn_id.upper()}": c.as_json() for c in self.connections}
        env.update({f"AIRFLOW_VAR_{v.key.upper()}": v.value for v in self.variables})
        return env


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _check_keys(source: Path, kind: str, index: int, entry: Any, allowed: set[str], required: str) -> dict:
    where = f"{source.name}: airflow.{kind}[{index}]"
    if not isinstance(entry, dict):
        raise SettingsError(f"{where} is not a mapping")
    unknown = set(entry) - allowed
    if unknown:
        raise SettingsError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    if not entry.get(required):
        raise SettingsError(f"{where}: {required} is missing")
    return entry


def _extra(source: Path, conn_id: str, raw: Any) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise SettingsError(f"{source.name}: connection {conn_id!r}: conn_extra is not valid JSON") from None
        if isinstance(parsed, dict):
            return parsed
    raise SettingsError(f"{source.name}: connection {conn_id!r}: conn_extra must be a mapping")


def _resolve_sqlite_path(host: str | None, base_dir: Path) -> str | None:
    """A sqlite connection's host is a file path: make a relative one absolute against base_dir."""
    if not host or host == ":memory:" or Path(host).is_absolute():
        return host
    return str((base_dir / host).resolve())


def _connection(source: Path, index: int, entry: Any) -> ConnectionSpec:
    entry = _check_keys(source, "connections", index, entry, _CONNECTION_KEYS, "conn_id")
    conn_id = str(entry["conn_id"])
    conn_type = entry.get("conn_type")
    if not conn_type:
        raise SettingsError(f"{source.name}: connection {conn_id!r}: conn_type is missing")
    host = _blank_to_none(entry.get("conn_host"))
    if conn_type == "sqlite":
        host = _resolve_sqlite_path(host, source.parent)
    port = _blank_to_none(entry.get("conn_port"))
    try:
        port = int(port) if port is not None else None
    except (TypeError, ValueError):
        raise SettingsError(f"{source.name}: connection {conn_id!r}: conn_port {port!r} is not a number") from None
    password = _blank_to_none(entry.get("conn_password"))
    return ConnectionSpec(
        conn_id=conn_id,
        conn_type=str(conn_type),
        host=host,
        login=_blank_to_none(entry.get("conn_login")),
        password=None if password is None else str(password),
        port=port,
        schema=_blank_to_none(entry.get("conn_schema")),
        extra=_extra(source, conn_id, entry.get("conn_extra")),
    )


def _pool(source: Path, index: int, entry: Any) -> PoolSpec:
    entry = _check_keys(source, "pools", index, entry, _POOL_KEYS, "pool_name")
    name = str(entry["pool_name"])
    slots = entry.get("pool_slot")
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 0:
        raise SettingsError(f"{source.name}: pool {name!r}: pool_slot must be a whole number >= 0, got {slots!r}")
    return PoolSpec(name=name, slots=slots, description=str(entry.get("pool_description") or ""))


def _variable(source: Path, index: int, entry: Any) -> VariableSpec:
    entry = _check_keys(source, "variables", index, entry, _VARIABLE_KEYS, "variable_name")
    value = entry.get("variable_value")
    if value is None:
        value = ""
    elif not isinstance(value, str):  # a YAML list/map/number: store its JSON text, as Airflow would
        value = json.dumps(value)
    return VariableSpec(key=str(entry["variable_name"]), value=value)


def _unique(source: Path, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SettingsError(f"{source.name}: {kind} {name!r} is defined twice")
        seen.add(name)


def parse_settings(data: Mapping[str, Any] | None, source: Path) -> Settings:
    """Settings from the already-parsed YAML document of `source` (used for error messages and paths)."""
    source = Path(source).resolve()
    airflow = (data or {}).get("airflow") or {}
    if not isinstance(airflow, dict):
        raise SettingsError(f"{source.name}: the top-level 'airflow' key must be a mapping")
    sections = {}
    for kind in ("connections", "pools", "variables"):
        entries = airflow.get(kind) or []
        if not isinstance(entries, list):
            raise SettingsError(f"{source.name}: airflow.{kind} must be a list")
        sections[kind] = entries
    settings = Settings(
        source=source,
        connections=tuple(_connection(source, i, e) for i, e in enumerate(sections["connections"])),
        pools=tuple(_pool(source, i, e) for i, e in enumerate(sections["pools"])),
        variables=tuple(_variable(source, i, e) for i, e in enumerate(sections["variables"])),
    )
    _unique(source, "connection", [c.conn_id for c in settings.connections])
    _unique(source, "pool", [p.name for p in settings.pools])
    _unique(source, "variable", [v.key for v in settings.variables])
    return settings


def load_settings(path: Path) -> Settings:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {path}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path.name} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise SettingsError(f"{path.name}: expected a mapping with an 'airflow' key")
    return parse_settings(data, path)


@dataclass(frozen=True)
class ApplyReport:
    connections: tuple[str, ...]
    pools: tuple[str, ...]
    variables: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"{len(self.connections)} connections ({', '.join(self.connections)}), "
            f"{len(self.pools)} pools ({', '.join(self.pools)}), "
            f"{len(self.variables)} variables ({', '.join(self.variables)})"
        )


def apply_to_airflow(settings: Settings) -> ApplyReport:
    """Upsert the settings into the metadata database of the Airflow this process is configured for.

    Needs a migrated database and the Airflow environment already in `os.environ`
    (see `airflow_env.apply_to_process`). One transaction: all or nothing.
    """
    from sqlalchemy import select

    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        for spec in settings.connections:
            conn = session.scalar(select(Connection).where(Connection.conn_id == spec.conn_id))
            if conn is None:
                conn = Connection(conn_id=spec.conn_id)
                session.add(conn)
            conn.conn_type = spec.conn_type
            conn.host = spec.host
            conn.login = spec.login
            conn.password = spec.password
            conn.port = spec.port
            conn.schema = spec.schema
            conn.extra = json.dumps(spec.extra) if spec.extra else None
        for pool in settings.pools:
            Pool.create_or_update_pool(
                name=pool.name,
                slots=pool.slots,
                description=pool.description,
                include_deferred=False,
                session=session,
            )
        for var in settings.variables:
            Variable.set(var.key, var.value, session=session)
    return ApplyReport(
        connections=tuple(c.conn_id for c in settings.connections),
        pools=tuple(p.name for p in settings.pools),
        variables=tuple(v.key for v in settings.variables),
    )
