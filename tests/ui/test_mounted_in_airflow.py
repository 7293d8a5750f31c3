"""The plugin as Airflow's own API server loads it: found in plugins/, mounted at /recurly,
listed with its views by the core API, protected, and reading the `recurly_warehouse` connection."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def airflow_app(airflow_db, ui_warehouse_url):
    if not ui_warehouse_url.startswith("sqlite"):
        pytest.skip("the mount does not depend on the warehouse's database")
    from unittest import mock

    from fastapi.testclient import TestClient

    conn = json.dumps({"conn_type": "sqlite", "host": ui_warehouse_url.removeprefix("sqlite:///")})
    with mock.patch.dict("os.environ", {"AIRFLOW_CONN_RECURLY_WAREHOUSE": conn}):
        from airflow.api_fastapi.app import create_app

        yield TestClient(create_app())


def test_the_core_api_lists_the_plugin_and_its_views(airflow_app, admin_headers):
    body = airflow_app.get("/api/v2/plugins", headers=admin_headers).json()
    plugin = next(p for p in body["plugins"] if p["name"] == "recurly")
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/recurly"]
    views = {v["name"]: v for v in plugin["external_views"]}
    assert views["Sync summary"]["destination"] == "dag_run"
    assert views["Sync summary"]["href"] == "recurly/sync-summary/{DAG_ID}/{RUN_ID}"
    # Relative to the UI's base URL, so a path prefix behind a proxy is kept; each names a page of the app.
    assert all(not v["href"].startswith("/") and v["url_route"] for v in views.values())
    assert {"Recurly revenue", "Recurly health", "Recurly runs"} <= set(views)
    assert not body.get("import_errors")


def test_the_mount_is_protected_and_serves_the_warehouse(airflow_app, admin_headers, writable_engine):
    import sqlalchemy as sa

    assert airflow_app.get("/recurly/api/sites").status_code == 401
    assert airflow_app.get("/recurly/revenue").status_code == 401
    sites = airflow_app.get("/recurly/api/sites", headers=admin_headers).json()["sites"]
    with writable_engine.connect() as c:
        assert sites == sorted(c.execute(sa.text("SELECT DISTINCT site FROM mrr_account_runs")).scalars())
    page = airflow_app.get("/recurly/revenue", headers=admin_headers)
    assert page.status_code == 200 and 'src="/recurly/static/plotly.min.js"' in page.text
