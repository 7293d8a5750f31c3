"""`airflow_settings.yaml` (Astro CLI format) into Airflow: connections, pools, variables.

Airflow core never reads that file (only the Astro CLI does), so the project loads it itself:

    settings = load_settings(Path("airflow_settings.yaml"))   # parse and check, no Airflow needed
    apply_to_airflow(settings)                                 # upsert through `airflow ... import`
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
    "conn_description",
}
_POOL_KEYS = {"pool_name", "pool_slot", "pool_description"}
_VARIABLE_KEYS = {"variable_name", "variable_value", "variable_description"}


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
    description: str = ""

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
    description: str = ""


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
        description=str(entry.get("conn_description") or "").strip(),
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
    return VariableSpec(key=str(entry["variable_name"]), value=value,
                        description=str(entry.get("variable_description") or "").strip())


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


def import_documents(settings: Settings) -> dict[str, dict[str, Any]]:
    """The settings in the JSON forms of `airflow connections|pools|variables import`."""
    connections = {}
    for c in settings.connections:
        body: dict[str, Any] = {"conn_type": c.conn_type, "description": c.description or None}
        for key in ("host", "login", "password", "port", "schema"):
            body[key] = getattr(c, key)
        body["extra"] = json.dumps(c.extra) if c.extra else None
        connections[c.conn_id] = body
    pools = {p.name: {"slots": p.slots, "description": p.description, "include_deferred": False}
             for p in settings.pools}
    variables = {v.key: {"value": v.value, "description": v.description or None} for v in settings.variables}
    return {"connections": connections, "pools": pools, "variables": variables}


# `airflow <kind> import <file>` and its flags to replace what exists under the same name.
_IMPORT_COMMANDS = {
    "connections": ["connections", "import", "--overwrite"],
    "pools": ["pools", "import"],
    "variables": ["variables", "import", "--action-on-existing-key", "overwrite"],
}


def apply_to_airflow(settings: Settings, env: Mapping[str, str] | None = None) -> ApplyReport:
    """Upsert the settings into the Airflow that `env` (default: this process's environment)
    configures, through Airflow's own CLI: `airflow connections import --overwrite`, `airflow pools
    import`, `airflow variables import --action-on-existing-key overwrite`.

    The files handed to the CLI hold the connections' passwords: they are written to a private
    folder (mode 0700, files 0600) and removed as soon as the command returns.
    """
    import os
    import sys
    import tempfile

    from recurly_elt.local.airflow_cli import run_airflow_command

    airflow = str(Path(sys.executable).parent / "airflow")
    environment = dict(os.environ if env is None else env)
    documents = import_documents(settings)
    with tempfile.TemporaryDirectory(prefix="recurly-elt-settings-") as folder:
        os.chmod(folder, 0o700)
        for kind, command in _IMPORT_COMMANDS.items():
            if not documents[kind]:
                continue
            path = Path(folder) / f"{kind}.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(documents[kind], fh)
            try:
                run_airflow_command([airflow, *command, str(path)], environment)
            finally:
                path.unlink(missing_ok=True)
    return ApplyReport(
        connections=tuple(c.conn_id for c in settings.connections),
        pools=tuple(p.name for p in settings.pools),
        variables=tuple(v.key for v in settings.variables),
    )
