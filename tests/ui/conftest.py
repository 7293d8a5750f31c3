"""Fixtures of the UI tests: a warehouse built by the real stages (once per backend and module),
the plugin app on a read-only engine, and JWTs from Airflow's own auth manager."""

from __future__ import annotations

import pytest

from .ui_data import build_warehouse


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ui_warehouse_url(request, tmp_path_factory) -> str:
    """A warehouse as the DAGs leave it, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("new_postgres_url")()
    build_warehouse(url).dispose()
    return url


@pytest.fixture(scope="module")
def ui_engine(ui_warehouse_url):
    """The UI's own engine on it: read-only."""
    from recurly_elt.ui.warehouse import read_only_engine

    engine = read_only_engine(ui_warehouse_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def writable_engine(ui_warehouse_url):
    """A normal engine on the same warehouse, for the tests' own queries."""
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(ui_warehouse_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def auth_manager(airflow_db):
    """Airflow's configured auth manager (the simple one), as the API server creates it."""
    from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()


def token_for(auth_manager, role: str | None = "admin", **kwargs) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username=f"ui-test-{role}", role=role), **kwargs)


@pytest.fixture(scope="session")
def admin_headers(auth_manager) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(auth_manager)}"}


@pytest.fixture(scope="module")
def client(ui_engine, auth_manager):
    """The plugin app as the API server mounts it (under /recurly)."""
    from fastapi.testclient import TestClient

    from recurly_elt.ui.app import create_app

    return TestClient(create_app(lambda: ui_engine), root_path="/recurly")
