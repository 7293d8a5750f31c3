"""The JSON endpoints' figures against the warehouse views they summarise (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from .ui_data import DAILY_RUN, IMPORT_RUN, KEYS


def q(engine, sql, **params):
    """Rows of the test's own query; PostgreSQL's NUMERIC sums as floats, like the JSON."""
    with engine.connect() as c:
        return [tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in c.execute(sa.text(sql), params)]


def get(client, headers, url):
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def test_mrr_per_site_equals_the_daily_view_on_every_day_shown(client, admin_headers, writable_engine):
    body = get(client, admin_headers, "/api/revenue/mrr")
    assert [s["site"] for s in body["sites"]] == sorted(KEYS)
    for series in body["sites"]:
        view = dict(q(writable_engine, "SELECT CAST(day AS TEXT), SUM(mrr) FROM v_mrr_account_daily WHERE site = :s "
                                       "GROUP BY day", s=series["site"]))
        view = {k[:10]: v for k, v in view.items()}
        assert series["last_day"] == max(view)
        assert series["last_mrr"] == pytest.approx(view[series["last_day"]], abs=0.01)
        assert series["last_mrr"] > 0
        for day, value in zip(series["days"], series["mrr"]):
            assert value == pytest.approx(view.get(day, 0.0), abs=0.01), (series["site"], day)


def test_movements_equal_the_monthly_view_and_reconcile(client, admin_headers, writable_engine):
    for site in KEYS:
        body = get(client, admin_headers, f"/api/revenue/movements?site={site}")
        view = {str(r[0])[:10]: r[1:] for r in q(writable_engine, """
            SELECT month, opening_mrr, new_mrr, expansion_mrr, contraction_mrr, churn_mrr, reactivation_mrr, closing_mrr
            FROM v_mrr_movements_by_month WHERE site = :s""", s=site)}
        assert [m["month"] for m in body["months"]] == sorted(view, reverse=True)
        for month, wf in zip(body["months"], body["waterfalls"]):
            opening, new, expansion, contraction, churn, reactivation, closing = view[month["month"]]
            assert (month["opening_mrr"], month["new_mrr"], month["churn_mrr"], month["closing_mrr"]) == \
                pytest.approx((opening, new, churn, closing), abs=0.01)
            assert month["reconciles"] and wf["measure"][0] == "absolute" and wf["measure"][-1] == "total"
            assert sum(wf["values"][:-1]) == pytest.approx(wf["values"][-1], abs=0.05)


def test_the_accounts_behind_a_bar_add_up_to_the_bar(client, admin_headers, writable_engine):
    site = "acme"
    month = get(client, admin_headers, f"/api/revenue/movements?site={site}")["months"][1]  # a closed month
    assert month["new_accounts"] > 0
    for kind in ("new", "expansion", "contraction", "churn", "reactivation"):
        body = get(client, admin_headers, f"/api/revenue/movements/accounts?site={site}&month={month['month']}"
                                          f"&movement_type={kind}")
        assert body["total"] == pytest.approx(month[f"{kind}_mrr"], abs=0.01)
        assert body["count"] == len(body["accounts"])
        ids = {a["account_id"] for a in body["accounts"]}
        expected = {r[0] for r in q(writable_engine, "SELECT account_id FROM mrr_movements_monthly WHERE site = :s "
                                                     "AND month = :m AND movement_type = :t",
                                    s=site, m=month["month"], t=kind)}
        assert ids == expected
        if kind == "new":
            assert body["count"] == month["new_accounts"]
            assert all(a["account_code"] for a in body["accounts"])  # named from staging


def test_an_unknown_movement_type_or_month_is_refused(client, admin_headers):
    assert client.get("/api/revenue/movements/accounts?site=acme&month=2025-08-01&movement_type=bogus",
                      headers=admin_headers).status_code == 422
    assert client.get("/api/revenue/movements/accounts?site=acme&month=not-a-date&movement_type=new",
                      headers=admin_headers).status_code == 422
    assert client.get("/revenue?site=nowhere", headers=admin_headers).status_code == 404


def test_plan_segments_add_up_to_the_overview(client, admin_headers, writable_engine):
    body = get(client, admin_headers, "/api/revenue/segments?site=globex")
    [(total, subs)] = q(writable_engine, "SELECT SUM(mrr_reporting), COUNT(*) FROM v_subscription_overview "
                                         "WHERE site = 'globex'")
    assert sum(p["mrr_reporting"] for p in body["plans"]) == pytest.approx(total, abs=0.05)
    assert sum(p["subscriptions"] for p in body["plans"]) == subs
    assert [p["mrr_reporting"] for p in body["plans"]] == sorted((p["mrr_reporting"] for p in body["plans"]),
                                                                  reverse=True)


def test_band_counts_equal_the_health_view(client, admin_headers, writable_engine):
    body = get(client, admin_headers, "/api/health/bands")
    view = q(writable_engine, "SELECT site, health_band, COUNT(*) FROM v_account_health GROUP BY site, health_band")
    got = {(s["site"], band): n for s in body["sites"] for band, n in s["accounts"].items() if n}
    assert got == {(site, band): n for site, band, n in view}
    assert set(body["bands"]) == {band for _s, band, _n in view}


def test_bands_follow_the_configuration_and_keep_unknown_ones():
    from recurly_elt.ui.health import configured_band_order, ordered_bands

    assert configured_band_order()[:1] == ["Good"]  # the best band of health.yaml first
    assert ordered_bands({"Poor", "Good", "Not a customer", "Churned"}) == ["Good", "Poor", "Churned",
                                                                            "Not a customer"]


def test_at_risk_is_every_alerted_account_by_mrr(client, admin_headers, writable_engine):
    body = get(client, admin_headers, "/api/health/at-risk")
    [(count, mrr)] = q(writable_engine, "SELECT COUNT(*), SUM(mrr) FROM v_account_health WHERE alert_count > 0")
    assert body["count"] == count > 0 and body["mrr_at_risk"] == pytest.approx(mrr, abs=0.05)
    values = [a["mrr"] for a in body["accounts"]]
    assert values == sorted(values, reverse=True)
    assert all(a["alerts"] and len(a["alerts"]) == a["alert_count"] for a in body["accounts"])
    one_site = get(client, admin_headers, "/api/health/at-risk?site=acme")
    assert {a["site"] for a in one_site["accounts"]} == {"acme"}


def test_one_account_over_time(client, admin_headers, writable_engine):
    [(site, account_id, code)] = q(writable_engine, """SELECT site, account_id, account_code FROM v_account_health
                                                      ORDER BY mrr DESC, account_id LIMIT 1""")
    body = get(client, admin_headers, f"/api/health/account?site={site}&account={code}")
    assert body["account_id"] == account_id
    [(days,)] = q(writable_engine, "SELECT COUNT(*) FROM account_health_daily WHERE site = :s AND account_id = :a",
                  s=site, a=account_id)
    [(events,)] = q(writable_engine, "SELECT COUNT(*) FROM lifecycle_events WHERE site = :s AND account_id = :a",
                    s=site, a=account_id)
    assert len(body["health"]) == days > 0 and len(body["events"]) == events > 0
    assert body["mrr"] and body["mrr"][-1]["mrr"] == pytest.approx(body["latest"]["mrr"], abs=0.01)
    assert client.get(f"/api/health/account?site={site}&account=nobody", headers=admin_headers).status_code == 404


def test_extraction_per_run_site_and_resource_equals_the_run_log(client, admin_headers, writable_engine):
    body = get(client, admin_headers, "/api/runs/extraction")
    log = q(writable_engine, "SELECT run_id, site, resource, records, requests FROM extract_run_log")
    assert sorted((r["run_id"], r["site"], r["resource"], r["records"], r["requests"]) for r in body["rows"]) == \
        sorted(log)
    assert [r["run_id"] for r in body["runs"]] == [DAILY_RUN, IMPORT_RUN]  # newest first
    imported = body["runs"][1]
    assert sum(imported["records"].values()) == sum(r[3] for r in log if r[0] == IMPORT_RUN)


def test_freshness_checks_transform_and_quarantine(client, admin_headers, writable_engine):
    fresh = get(client, admin_headers, "/api/runs/freshness")
    assert len(fresh["rows"]) == q(writable_engine, "SELECT COUNT(*) FROM extract_watermarks")[0][0] > 0
    assert all(r["last_success"] for r in fresh["rows"])
    checks = get(client, admin_headers, "/api/runs/checks")
    assert {r["check_name"] for r in checks["rows"]} >= {"mrr_reconciles", "no_negative_mrr"}
    assert all(r["status"] == "pass" and r["offending_rows"] == 0 and r["checked_rows"] > 0 for r in checks["rows"])
    transform = get(client, admin_headers, "/api/runs/transform")
    assert {r["site"] for r in transform["rows"]} == set(KEYS)
    quarantine = get(client, admin_headers, "/api/runs/quarantine")
    assert quarantine["transform"]["available"] and quarantine["extract"]["available"]
    staged_aside = q(writable_engine, "SELECT COUNT(*) FROM extract_quarantine")[0][0]
    assert quarantine["extract"]["count"] == staged_aside == len(quarantine["extract"]["rows"])


def test_deliveries_are_absent_until_the_load_ledger_exists(client, admin_headers):
    body = get(client, admin_headers, "/api/runs/deliveries")
    assert body["available"] is False and body["runs"]["table"] == "load_run_log"


def test_the_run_summary_is_that_runs_rows(client, admin_headers):
    body = get(client, admin_headers, f"/api/dags/recurly_daily_sync/runs/{DAILY_RUN}/summary")
    assert body["extraction"]["rows"] and {r["run_id"] for r in body["extraction"]["rows"]} == {DAILY_RUN}
    assert {r["run_id"] for r in body["checks"]["rows"]} == {DAILY_RUN}
    other = client.get(f"/api/dags/some_other_dag/runs/{DAILY_RUN}/summary", headers=admin_headers)
    assert other.status_code == 404 and "not a Recurly DAG" in other.json()["detail"]
    page = client.get(f"/sync-summary/some_other_dag/{DAILY_RUN}", headers=admin_headers)
    assert page.status_code == 404 and 'id="error"' in page.text and "not a Recurly DAG" in page.text


def test_the_load_ledger_is_shown_as_it_is(warehouse_url, auth_manager):
    """A ledger in the shape the load stage writes: runs, rejections, a dry-run preview."""
    from fastapi.testclient import TestClient

    from recurly_elt.ui.app import create_app
    from recurly_elt.ui.warehouse import read_only_engine
    from recurly_elt.warehouse.engine import create_engine_from_url

    from .conftest import token_for

    engine = create_engine_from_url(warehouse_url)
    with engine.begin() as c:
        c.execute(sa.text("""CREATE TABLE load_run_log (run_id TEXT, destination TEXT, mode TEXT, dry_run BOOLEAN,
            status TEXT, considered INTEGER, sent INTEGER, rejected INTEGER, sample TEXT, started_at TIMESTAMP,
            finished_at TIMESTAMP)"""))
        c.execute(sa.text("""INSERT INTO load_run_log VALUES ('r1', 'braze', 'daily', :t, 'success', 10, 0, 0,
            '{"attributes": [{"external_id": "a1"}]}', '2025-08-31 01:00:00', '2025-08-31 01:01:00'),
            ('r2', 'klaviyo', 'daily', :f, 'success', 7, 6, 1, NULL, '2025-08-31 02:00:00', '2025-08-31 02:01:00')"""),
                  {"t": True, "f": False})
        c.execute(sa.text("""CREATE TABLE load_rejections (destination TEXT, kind TEXT, object_key TEXT, reason TEXT,
            http_status INTEGER, run_id TEXT, last_seen_at TIMESTAMP)"""))
        c.execute(sa.text("""INSERT INTO load_rejections VALUES ('klaviyo', 'profile', 'a9', 'invalid email', 400,
            'r2', '2025-08-31 02:01:00')"""))
    engine.dispose()
    ro = read_only_engine(warehouse_url)
    client = TestClient(create_app(lambda: ro), root_path="/recurly")
    headers = {"Authorization": f"Bearer {token_for(auth_manager)}"}
    body = client.get("/api/runs/deliveries", headers=headers).json()
    assert body["available"] and [r["destination"] for r in body["runs"]["rows"]] == ["klaviyo", "braze"]
    assert body["rejections"]["rows"][0]["reason"] == "invalid email"
    assert body["previews"][0]["destination"] == "braze" and '"external_id": "a1"' in body["previews"][0]["sample"]
    page = client.get("/runs", headers=headers).text
    assert "invalid email" in page and "Dry-run previews" in page
    summary = client.get("/api/dags/recurly_daily_sync/runs/r2/summary", headers=headers).json()
    assert [r["destination"] for r in summary["deliveries"]["runs"]["rows"]] == ["klaviyo"]
    ro.dispose()


def test_sites_and_the_reporting_currency_of_the_transform(client, admin_headers):
    from recurly_elt.transform.config import TransformConfig

    body = get(client, admin_headers, "/api/sites")
    assert body == {"sites": sorted(KEYS), "reporting_currency": TransformConfig.load().reporting_currency}
    assert f"MRR per site over time ({body['reporting_currency']})" in client.get("/revenue",
                                                                                   headers=admin_headers).text


def test_timestamps_read_the_same_on_both_databases(client, admin_headers):
    import re

    rows = get(client, admin_headers, "/api/runs/extraction")["rows"]
    stamps = [r["started_at"] for r in rows] + [r["window_end"] for r in rows if r["window_end"]]
    assert stamps and all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", s) for s in stamps), stamps[:3]
    order = [(r["run_id"], r["site"], r["resource"]) for r in rows]
    assert order == sorted(order, key=lambda k: (k[0] != DAILY_RUN, k[1], k[2]))  # newest run first


def test_an_unreachable_warehouse_is_a_503_naming_the_connection_not_its_url(auth_manager, tmp_path):
    from fastapi.testclient import TestClient

    from recurly_elt.ui.app import create_app
    from recurly_elt.ui.warehouse import read_only_engine

    from .conftest import token_for

    missing = read_only_engine("postgresql://reader:s3cret-pw@127.0.0.1:1/nowhere")
    client = TestClient(create_app(lambda: missing), root_path="/recurly")
    headers = {"Authorization": f"Bearer {token_for(auth_manager)}"}
    for url in ("/api/sites", "/revenue"):
        response = client.get(url, headers=headers)
        assert response.status_code == 503 and "recurly_warehouse" in response.text
        assert "s3cret-pw" not in response.text and "127.0.0.1" not in response.text
