"""The airflow_settings.yaml loader: parsing, checks and sqlite path resolution (no Airflow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recurly_elt.local.settings import SettingsError, load_settings, parse_settings
from recurly_elt.local.stack import write_private
from known_keys import LOCAL

SITE_KEYS = {"acme": LOCAL["acme"], "globex": LOCAL["globex"]}

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = """
airflow:
  connections:
    - conn_id: recurly_default
      conn_type: http
      conn_host: http://127.0.0.1:8765
      conn_login:
      conn_password: '{SITE_KEYS_JSON}'
      conn_port:
      conn_schema:
      conn_extra:
        region: sandbox
    - conn_id: recurly_warehouse
      conn_type: sqlite
      conn_host: .local/warehouse.db
  pools:
    - pool_name: recurly_acme
      pool_slot: 3
      pool_description: readers of acme
  variables:
    - variable_name: recurly_elt_recurly_conn_ids
      variable_value: '["recurly_default"]'
    - variable_name: as_yaml_list
      variable_value: [a, b]
""".replace("{SITE_KEYS_JSON}", json.dumps(SITE_KEYS))


def _write(folder: Path, text: str) -> Path:
    """The settings file, private as a file holding keys must be (the suite's key check skips such files)."""
    path = folder / "airflow_settings.yaml"
    write_private(path, text)
    return path


def test_parses_connections_pools_and_variables(tmp_path):
    settings = load_settings(_write(tmp_path, SETTINGS))
    conn = settings.connection("recurly_default")
    assert (conn.conn_type, conn.host, conn.login, conn.port) == ("http", "http://127.0.0.1:8765", None, None)
    assert json.loads(conn.password) == SITE_KEYS
    assert conn.extra == {"region": "sandbox"}
    assert [(p.name, p.slots, p.description) for p in settings.pools] == [("recurly_acme", 3, "readers of acme")]
    assert {v.key: v.value for v in settings.variables} == {
        "recurly_elt_recurly_conn_ids": '["recurly_default"]',
        "as_yaml_list": '["a", "b"]',
    }


def test_relative_sqlite_path_resolves_against_the_settings_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(_write(project, SETTINGS))
    assert settings.connection("recurly_warehouse").host == str(project.resolve() / ".local" / "warehouse.db")


def test_absolute_and_memory_sqlite_paths_are_kept(tmp_path):
    text = SETTINGS.replace("conn_host: .local/warehouse.db", f"conn_host: {tmp_path / 'w.db'}")
    assert load_settings(_write(tmp_path, text)).connection("recurly_warehouse").host == str(tmp_path / "w.db")
    text = SETTINGS.replace("conn_host: .local/warehouse.db", "conn_host: ':memory:'")
    assert load_settings(_write(tmp_path, text)).connection("recurly_warehouse").host == ":memory:"


def test_the_project_settings_file_loads():
    settings = load_settings(ROOT / "airflow_settings.yaml")
    assert {c.conn_id for c in settings.connections} >= {"recurly_default", "recurly_warehouse"}
    assert {p.name for p in settings.pools} >= {"recurly_acme", "recurly_globex"}
    warehouse = settings.connection("recurly_warehouse")
    assert warehouse.conn_type == "sqlite" and Path(warehouse.host).is_absolute()
    assert Path(warehouse.host).parent == ROOT / ".local"


def test_environment_form(tmp_path):
    env = load_settings(_write(tmp_path, SETTINGS)).environment()
    conn = json.loads(env["AIRFLOW_CONN_RECURLY_DEFAULT"])
    assert conn == {
        "conn_type": "http",
        "host": "http://127.0.0.1:8765",
        "password": json.dumps(SITE_KEYS),
        "extra": {"region": "sandbox"},
    }
    assert env["AIRFLOW_VAR_RECURLY_ELT_RECURLY_CONN_IDS"] == '["recurly_default"]'


def test_with_connection_changes_one_connection(tmp_path):
    settings = load_settings(_write(tmp_path, SETTINGS))
    moved = settings.with_connection("recurly_default", host="http://127.0.0.1:9999")
    assert moved.connection("recurly_default").host == "http://127.0.0.1:9999"
    assert settings.connection("recurly_default").host == "http://127.0.0.1:8765"  # the original is unchanged
    with pytest.raises(SettingsError, match="no connection 'nope'"):
        settings.with_connection("nope", host="x")


def test_password_is_not_in_repr(tmp_path):
    settings = load_settings(_write(tmp_path, SETTINGS))
    assert LOCAL["acme"] not in repr(settings)


@pytest.mark.parametrize(
    "document, message",
    [
        ({"airflow": {"connections": [{"conn_id": "x", "conn_type": "http", "conn_hots": "h"}]}}, "unknown keys"),
        ({"airflow": {"connections": [{"conn_type": "http"}]}}, r"connections\[0\]: conn_id is missing"),
        ({"airflow": {"connections": [{"conn_id": "x"}]}}, "'x': conn_type is missing"),
        ({"airflow": {"connections": [{"conn_id": "x", "conn_type": "http", "conn_port": "eighty"}]}}, "not a number"),
        ({"airflow": {"connections": [{"conn_id": "x", "conn_type": "http", "conn_extra": "{bad"}]}}, "not valid JSON"),
        ({"airflow": {"connections": [{"conn_id": "x", "conn_type": "a"}, {"conn_id": "x", "conn_type": "b"}]}},
         "connection 'x' is defined twice"),
        ({"airflow": {"pools": [{"pool_name": "p", "pool_slot": "three"}]}}, "pool 'p': pool_slot"),
        ({"airflow": {"pools": [{"pool_name": "p", "pool_slot": -1}]}}, "pool 'p': pool_slot"),
        ({"airflow": {"variables": [{"variable_value": "v"}]}}, "variable_name is missing"),
        ({"airflow": {"pools": {"pool_name": "p"}}}, "airflow.pools must be a list"),
    ],
)
def test_bad_entries_are_named(tmp_path, document, message):
    with pytest.raises(SettingsError, match=message):
        parse_settings(document, tmp_path / "airflow_settings.yaml")


def test_error_messages_never_carry_the_password(tmp_path):
    document = {"airflow": {"connections": [{"conn_id": "x", "conn_type": "http", "conn_password": "s3cret",
                                             "conn_extra": "{bad"}]}}
    with pytest.raises(SettingsError) as err:
        parse_settings(document, tmp_path / "airflow_settings.yaml")
    assert "s3cret" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(_write(tmp_path, "airflow: [unclosed"))


def test_empty_file_means_no_settings(tmp_path):
    settings = load_settings(_write(tmp_path, ""))
    assert (settings.connections, settings.pools, settings.variables) == ((), (), ())
