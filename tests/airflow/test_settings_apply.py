"""Loading airflow_settings.yaml into a real metadata database through Airflow's CLI: complete and
idempotent (read back here through Airflow's models: the test checks, it does not write)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from recurly_elt.local.settings import apply_to_airflow, load_settings

ROOT = Path(__file__).resolve().parents[2]
# Used only when neither the environment nor airflow.cfg names a key yet.
_SESSION_KEY = Fernet.generate_key().decode()


@pytest.fixture(autouse=True)
def _one_fernet_key(monkeypatch):
    """The CLI (a subprocess) encrypts the passwords it imports and this process decrypts them to
    check: both use the key the metadata database already holds passwords under (the one in
    AIRFLOW_HOME/airflow.cfg, which the CLI wrote on its first run), set in the environment for
    both, whatever this process's Airflow read or cached before."""
    import configparser
    import os

    from airflow.models.crypto import get_fernet

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(Path(os.environ["AIRFLOW_HOME"]) / "airflow.cfg")
    key = (os.environ.get("AIRFLOW__CORE__FERNET_KEY") or cfg.get("core", "fernet_key", fallback="")
           or _SESSION_KEY)
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", key)
    get_fernet.cache_clear()
    yield
    get_fernet.cache_clear()


def _stored():
    from sqlalchemy import select

    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        conns = {c.conn_id: (c.conn_type, c.host, c.password, c.extra_dejson, c.description)
                 for c in session.scalars(select(Connection))}
        pools = {p.pool: (p.slots, p.description) for p in session.scalars(select(Pool))}
        variables = {v.key: v.val for v in session.scalars(select(Variable))}
        descriptions = {v.key: v.description for v in session.scalars(select(Variable))}
    return conns, pools, variables, descriptions


def test_apply_twice_gives_the_same_database(airflow_db):
    settings = load_settings(ROOT / "airflow_settings.yaml")
    report = apply_to_airflow(settings)
    assert set(report.connections) == {c.conn_id for c in settings.connections}
    first = _stored()
    apply_to_airflow(settings)
    assert _stored() == first

    conns, pools, variables, descriptions = first
    conn_type, host, password, extra, description = conns["recurly_default"]
    assert (conn_type, host) == ("http", "http://127.0.0.1:8765")
    assert '{"subdomain": "api_key", ...}' in description  # the UI explains the password's form
    assert descriptions["recurly_elt_sites"].startswith("JSON list of the site subdomains")
    assert set(json.loads(password)) == {"acme", "globex"}
    assert extra == {"region": "sandbox"}
    assert conns["recurly_warehouse"][1] == str(ROOT / ".local" / "warehouse.db")
    assert pools["recurly_acme"] == (3, settings.pools[0].description)
    assert json.loads(variables["recurly_elt_recurly_conn_ids"]) == ["recurly_default"]


def test_apply_updates_changed_values_and_leaves_others_alone(airflow_db):
    from airflow.models import Pool, Variable

    settings = load_settings(ROOT / "airflow_settings.yaml")
    apply_to_airflow(settings)
    Variable.set("made_in_the_ui", "keep me")
    changed = settings.with_connection("recurly_default", host="http://127.0.0.1:9999")
    apply_to_airflow(changed)
    conns, pools, variables, _descriptions = _stored()
    assert conns["recurly_default"][1] == "http://127.0.0.1:9999"
    assert variables["made_in_the_ui"] == "keep me"
    assert "default_pool" in pools and Pool.get_pool("recurly_globex").slots == 3
    apply_to_airflow(settings)
