"""Every sandbox endpoint, GET and HEAD, success and each error status, checked against the Recurly OpenAPI spec.

The body of each response is validated against the schema the spec gives its operation for that
status (or `default`), with openapi-schema-validator's OAS 3.0 read validator and format checker.
Two adjustments to the spec, both about how Recurly's spec is written rather than what it says:
  - the spec marks no property nullable while the API sends null for unset fields (and for
    `next` on the last page), so null values are dropped before validation: a null reads as absent;
  - a few `pattern`s are JavaScript regex literals ("/^[a-z0-9_+-]+$/i"); they are translated.
The spec declares no HEAD operations; a HEAD is checked against its GET's status and headers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import requests
import yaml
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker

from recurly_elt.sandbox.routes import site_object

from .http_helpers import Client, make_sites, running
from known_keys import SANDBOX, WRONG

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = Path(os.environ.get("RECURLY_OPENAPI_SPEC") or ROOT.parent / "shared/reference/recurly-v3-openapi.yaml")
API_VERSION = "recurly.v2021-02-25"


@pytest.fixture(scope="module")
def spec() -> dict:
    if not SPEC_PATH.exists():
        pytest.skip(f"the Recurly OpenAPI spec is not at {SPEC_PATH}; set RECURLY_OPENAPI_SPEC")
    document = yaml.safe_load(SPEC_PATH.read_text())
    _translate_js_patterns(document)
    return document


def _translate_js_patterns(node) -> None:
    if isinstance(node, dict):
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            literal = re.fullmatch(r"/(.*)/([a-z]*)", pattern)
            if literal:
                flags = "(?i)" if "i" in literal.group(2) else ""
                node["pattern"] = flags + literal.group(1)
        for value in node.values():
            _translate_js_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _translate_js_patterns(value)


def _drop_nulls(value):
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _operation(spec: dict, path: str) -> tuple[str, dict]:
    """The spec's GET operation whose path template matches `path` (query string ignored)."""
    path = path.split("?")[0]
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and "get" in item:
            return template, item["get"]
    raise AssertionError(f"no operation in the spec for GET {path}")


def _check(spec: dict, response, path: str, expected_status: int) -> None:
    assert response.status_code == expected_status, (path, response.status_code, response.text[:300])
    assert response.headers["Recurly-Version"] == API_VERSION
    assert response.headers["Content-Type"].startswith("application/vnd.recurly.v2021-02-25+json")
    template, operation = _operation(spec, path)
    responses = operation["responses"]
    declared = responses.get(str(expected_status)) or responses["default"]
    schema = declared["content"]["application/json"]["schema"]
    if response.request.method == "HEAD":
        assert response.content == b""
        return
    validator = OAS30ReadValidator({**schema, "components": spec["components"]},
                                   format_checker=oas30_format_checker)
    errors = sorted(validator.iter_errors(_drop_nulls(response.json())), key=lambda e: list(e.path))
    assert not errors, f"{response.request.method} {path} ({template}, {expected_status}): " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5])


@pytest.fixture(scope="module")
def sandbox():
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=40, embedded_line_items=2)
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        yield server, client, sites[0]
        client.close()


def _ids(site) -> dict[str, object]:
    """One real object per resource, to build the object and per-parent paths from."""
    objects = site.sim.objects
    invoice = max(objects["invoices"].values(), key=lambda i: len(i.get("line_items") or []))
    plan = next(p for p in objects["plans"].values()
                if any(a["plan_id"] == p["id"] for a in objects["add_ons"].values()))
    add_on = next(a for a in objects["add_ons"].values() if a["plan_id"] == plan["id"])
    return {
        "account": next(iter(objects["accounts"].values())),
        "subscription": next(iter(objects["subscriptions"].values())),
        "invoice": invoice,
        "line_item": next(iter(objects["line_items"].values())),
        "transaction": next(iter(objects["transactions"].values())),
        "plan": plan,
        "add_on": add_on,
        # a coupon redemption and an invoice a coupon discounted (the list answers of both)
        "redemption": next(iter(objects["coupon_redemptions"].values())),
        "discounted_invoice": next(iter(site.sim.invoice_redemptions)),
    }


def _endpoint_paths(site) -> list[str]:
    """Every endpoint once, and each alternative id form."""
    o = _ids(site)
    a, s, i, p = o["account"], o["subscription"], o["invoice"], o["plan"]
    return [
        "/accounts", "/subscriptions", "/invoices", "/line_items", "/transactions", "/plans",
        f"/plans/{p['id']}/add_ons", f"/plans/code-{p['code']}/add_ons",
        f"/accounts/{a['id']}", f"/accounts/code-{a['code']}",
        f"/subscriptions/{s['id']}", f"/subscriptions/uuid-{s['uuid']}",
        f"/invoices/{i['id']}", f"/invoices/number-{i['number']}", f"/invoices/{i['id']}/line_items",
        f"/line_items/{o['line_item']['id']}", f"/transactions/{o['transaction']['id']}",
        f"/plans/{p['id']}", f"/plans/code-{p['code']}", f"/plans/{p['id']}/add_ons/{o['add_on']['id']}",
        f"/accounts/{a['id']}/subscriptions", f"/accounts/{a['id']}/invoices",
        f"/accounts/{a['id']}/line_items", f"/accounts/{a['id']}/transactions",
        "/add_ons", f"/add_ons/{o['add_on']['id']}", "/sites", f"/sites/{site_object(site.name)['id']}",
        f"/sites/subdomain-{site.name}",
        f"/accounts/{o['redemption']['account']['id']}/coupon_redemptions",
        f"/invoices/{o['discounted_invoice']}/coupon_redemptions",
    ]


def _list_paths(site) -> list[str]:
    return [p for p in _endpoint_paths(site)
            if p.rsplit("/", 1)[-1] in ("accounts", "subscriptions", "invoices", "line_items", "transactions",
                                        "plans", "add_ons", "sites", "coupon_redemptions")]


def _success_paths(site) -> list[str]:
    o = _ids(site)
    a, i, p = o["account"], o["invoice"], o["plan"]
    return [
        *_endpoint_paths(site),
        # parameters and filters, each as the spec lists them
        "/accounts?limit=200&order=asc&sort=updated_at&begin_time=2025-03-01T00:00:00Z&end_time=2025-06-01",
        "/accounts?subscriber=true", "/accounts?past_due=true", f"/accounts?email={a.get('email') or ''}",
        *[f"/subscriptions?state={v}" for v in ("active", "canceled", "expired", "future", "in_trial", "live")],
        *[f"/invoices?state={v}" for v in ("pending", "past_due", "paid", "failed")],
        *[f"/invoices?type={v}" for v in ("charge", "credit", "legacy", "non-legacy")],
        "/line_items?original=true&state=invoiced&type=charge", "/line_items?type=credit&limit=3",
        *[f"/transactions?type={v}" for v in ("authorization", "capture", "payment", "purchase", "refund", "verify")],
        "/transactions?success=true", "/plans?state=active", "/add_ons?state=active&limit=2&order=asc", f"/plans/{p['id']}/add_ons?state=inactive",
        f"/accounts?ids={a['id']},nonexistent", f"/accounts/{a['id']}/invoices?type=charge&state=paid",
        f"/invoices/{i['id']}/line_items?limit=1&sort=updated_at&order=asc",
        f"/accounts/{o['redemption']['account']['id']}/coupon_redemptions?state=inactive",
    ]


def test_every_endpoint_answers_as_the_spec_says(spec, sandbox):
    server, client, site = sandbox
    paths = _success_paths(site)
    for path in paths:
        for method in ("GET", "HEAD"):
            response = client.session.request(method, server.url + path, timeout=30)
            _check(spec, response, path, 200)
            if method == "HEAD" and "/add_ons/" not in path and _operation(spec, path)[1]["operationId"].startswith("list_"):
                assert int(response.headers["Recurly-Total-Records"]) >= 0
    # a truncated invoice (two line items embedded here) says so, and its line item list has them all
    invoice = _ids(site)["invoice"]
    assert len(invoice["line_items"]) > 2, "the generator should make some invoice with more than 2 line items"
    served = client.get(f"/invoices/{invoice['id']}").json()
    assert served["has_more_line_items"] is True and len(served["line_items"]) == 2
    assert len(client.read_all(f"/invoices/{invoice['id']}/line_items?limit=1")) == len(invoice["line_items"])


BAD_PARAMETERS = [
    ("/accounts?limit=500", "limit"), ("/accounts?limit=0", "limit"), ("/accounts?limit=x", "limit"),
    ("/subscriptions?sort=foo", "sort"), ("/invoices?order=up", "order"),
    ("/transactions?begin_time=yesterday", "begin_time"), ("/line_items?end_time=2025-13-01", "end_time"),
    ("/subscriptions?state=paused_forever", "state"), ("/invoices?type=debit", "type"),
    ("/accounts?past_due=false", "past_due"), ("/accounts?ids=a,b&limit=10", "ids"),
    ("/accounts?cursor=not-a-cursor", "cursor"), ("/plans?state=retired", "state"),
]


def test_coupon_redemptions_are_listed_per_account_and_per_invoice(spec, sandbox):
    server, client, site = sandbox
    objects = site.sim.objects
    redemptions = objects["coupon_redemptions"]
    account = next(iter(redemptions.values()))["account"]["id"]
    listed = client.read_all(f"/accounts/{account}/coupon_redemptions")
    assert sorted(r["id"] for r in listed) == sorted(r["id"] for r in redemptions.values() if r["account"]["id"] == account)
    for invoice_id, applied in list(site.sim.invoice_redemptions.items())[:20]:
        assert sorted(r["id"] for r in client.read_all(f"/invoices/{invoice_id}/coupon_redemptions")) == sorted(applied)
    plain = next(i for i in objects["invoices"] if i not in site.sim.invoice_redemptions)
    assert client.read_all(f"/invoices/{plain}/coupon_redemptions") == []


@pytest.mark.parametrize("path,param", BAD_PARAMETERS)
def test_bad_parameters_answer_400_naming_the_parameter(spec, sandbox, path, param):
    server, client, site = sandbox
    for method in ("GET", "HEAD"):
        response = client.session.request(method, server.url + path, timeout=30)
        _check(spec, response, path, 400)
    error = client.get(path).json()["error"]
    assert error["type"] == "bad_request"
    assert error["params"][0]["param"] == param


def test_not_found_answers_404(spec, sandbox):
    server, client, site = sandbox
    for path in ("/accounts/nope", "/accounts/code-nobody", "/subscriptions/uuid-0", "/invoices/number-1",
                 "/accounts/nope/invoices", "/invoices/nope/line_items", "/plans/code-none/add_ons",
                 "/line_items/nope", "/transactions/nope"):
        for method in ("GET", "HEAD"):
            _check(spec, client.session.request(method, server.url + path, timeout=30), path, 404)
        assert client.get(path).json()["error"]["type"] == "not_found"


def test_every_endpoint_answers_401_406_and_5xx_in_the_error_envelope(spec, sandbox):
    server, client, site = sandbox
    anonymous, wrong = Client(server.url, None), Client(server.url, WRONG)
    for path in _endpoint_paths(site):
        for method in ("GET", "HEAD"):
            _check(spec, anonymous.session.request(method, server.url + path), path, 401)
            _check(spec, wrong.session.request(method, server.url + path), path, 401)
            for accept in ("application/vnd.recurly.v2019-10-10", "application/json", ""):
                response = client.session.request(method, server.url + path, headers={"Accept": accept})
                _check(spec, response, path, 406)
    assert anonymous.get("/accounts").json()["error"]["type"] == "unauthorized"
    body = wrong.get("/accounts").text
    assert "invalid_api_key" in body and WRONG not in body  # the key is never echoed
    assert client.get("/plans", headers={"Accept": "application/vnd.recurly.v2019-10-10"}).json()[
        "error"]["type"] == "invalid_api_version"
    assert client.get("/plans", headers={"Accept": "application/vnd.recurly.latest"}).status_code == 200
    requests.put(server.url + "/__sandbox/faults", data="5xx=1")
    try:
        seen = set()
        for path in _endpoint_paths(site):
            for method in ("GET", "HEAD"):
                response = client.session.request(method, server.url + path)
                seen.add(response.status_code)
                assert response.status_code in (500, 502, 503)
                _check(spec, response, path, response.status_code)
                if method == "GET":
                    expected = "internal_server_error" if response.status_code == 500 else "service_not_available"
                    assert response.json()["error"]["type"] == expected
        assert seen == {500, 502, 503}
    finally:
        requests.put(server.url + "/__sandbox/faults", data="")
    anonymous.close(), wrong.close()


def test_bad_parameters_on_scoped_lists(spec, sandbox):
    server, client, site = sandbox
    for path in _list_paths(site):
        for query, param in (("limit=201", "limit"), ("sort=id", "sort"), ("end_time=soon", "end_time")):
            for method in ("GET", "HEAD"):
                _check(spec, client.session.request(method, f"{server.url}{path}?{query}"), path, 400)
            assert client.get(f"{path}?{query}").json()["error"]["params"][0]["param"] == param


def test_every_endpoint_answers_429_when_over_the_budget(spec):
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=40, rate_limit=1, rate_window=60)
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        _check(spec, client.get("/accounts"), "/accounts", 200)  # the window's one request
        for path in _endpoint_paths(sites[0]):
            for method in ("GET", "HEAD"):
                response = client.session.request(method, server.url + path)
                _check(spec, response, path, 429)
                assert response.headers["X-RateLimit-Remaining"] == "0"
                assert int(response.headers["Retry-After"]) >= 1
        assert client.get("/plans").json()["error"]["type"] == "rate_limited"
        client.close()
