"""Every plugin route requires Airflow's authentication and authorisation; nothing leaks a secret;
the UI's engine cannot write."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from .conftest import token_for
from .routes import plugin_routes
from .ui_data import KEYS

ROUTES = plugin_routes()


def test_the_app_has_the_routes_the_docs_list():
    urls = {url.split("?")[0] for _m, url in ROUTES}
    assert {"/revenue", "/health", "/runs", "/api/revenue/mrr", "/api/health/bands", "/api/runs/extraction",
            "/static/plotly.min.js"} <= urls
    assert not any(u.startswith(("/docs", "/openapi", "/redoc")) for u in urls)  # unprotected by FastAPI


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_a_missing_or_wrong_token_is_refused(client, auth_manager, method, url):
    expired = token_for(auth_manager, expiration_time_in_seconds=-60)
    forged = _forged_token()
    attempts = {
        "no credential": {},
        "garbage bearer": {"headers": {"Authorization": "Bearer not-a-jwt"}},
        "forged bearer": {"headers": {"Authorization": f"Bearer {forged}"}},
        "expired bearer": {"headers": {"Authorization": f"Bearer {expired}"}},
        "forged cookie": {"cookies": {"_token": forged}},
    }
    for what, kwargs in attempts.items():
        client.cookies.clear()
        response = client.request(method, url, follow_redirects=False, **kwargs)
        assert response.status_code in (401, 403), f"{what}: {method} {url} answered {response.status_code}"
    client.cookies.clear()


@pytest.mark.parametrize(("method", "url"), ROUTES)
def test_a_user_without_a_role_is_forbidden_and_an_admin_is_served(client, auth_manager, method, url):
    nobody = client.request(method, url, headers={"Authorization": f"Bearer {token_for(auth_manager, None)}"},
                            follow_redirects=False)
    assert nobody.status_code == 403
    admin = client.request(method, url, headers={"Authorization": f"Bearer {token_for(auth_manager)}"},
                           follow_redirects=False)
    expected = 404 if "no-such-account" in url else (307 if url == "/" else 200)
    assert admin.status_code == expected, admin.text[:500]


def test_the_airflow_ui_cookie_is_accepted(client, auth_manager):
    client.cookies.set("_token", token_for(auth_manager))
    try:
        assert client.get("/api/sites").status_code == 200
    finally:
        client.cookies.clear()


def test_no_answer_carries_a_secret(client, admin_headers):
    from airflow.configuration import conf

    secrets = [*KEYS.values(), conf.get("api_auth", "jwt_secret", fallback=""), conf.get("core", "fernet_key")]
    secrets = [s for s in secrets if s]
    for method, url in ROUTES:
        body = client.request(method, url, headers=admin_headers).text
        for secret in secrets:
            assert secret not in body, f"{url} answered a secret"


def test_the_ui_engine_cannot_write(ui_engine):
    with pytest.raises(sa.exc.DBAPIError), ui_engine.connect() as conn:
        conn.execute(sa.text("DELETE FROM transform_run_log"))
        conn.commit()


def _forged_token() -> str:
    """A well-formed token for an admin, signed with a key that is not the server's."""
    import jwt

    return jwt.encode({"sub": "admin", "role": "admin", "aud": "apache-airflow", "exp": 4102444800},
                      "not-the-server-secret-" * 4, algorithm="HS512")
