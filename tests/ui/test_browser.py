"""The plugin in a real browser: headless Chromium against a local Airflow started as `make run`
starts it (sandbox, migrated metadata database, settings loaded, API server, scheduler and DAG
processor, the history imported by recurly_one_time_import through the scheduler), on free ports.

Logs in through Airflow's login page, opens every page inside Airflow's own frame (the nav
entries and the run's "Sync summary" tab), checks that every chart has drawn, that the figures
on the page equal the warehouse views (queried here, independently of the plugin's SQL), that a
click on a waterfall bar lists the accounts behind it, that the browser console has no error,
and saves a screenshot of each page (in RECURLY_ELT_UI_SCREENSHOTS, default a temporary folder).

Skipped, with the reason, where Chromium, chromium-driver or selenium is missing.
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from .browser import missing_browser, start_chromium

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "airflow"))  # the stack of tests/airflow
from sandbox_sites import SANDBOX_KEYS  # noqa: E402
from scheduler_stack import LocalAirflow, use_metadata_db  # noqa: E402

WHY_NOT = missing_browser()
pytestmark = [pytest.mark.slow, pytest.mark.airflow, pytest.mark.browser, pytest.mark.timeout(1800),
              pytest.mark.skipif(WHY_NOT is not None, reason=f"browser test skipped: {WHY_NOT}")]
ACCOUNTS = 60
IMPORT_TIMEOUT = 600
WAIT = 60


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from recurly_elt.local import cli
    from recurly_elt.local.initial_import import IMPORT_DAG_ID

    airflow = LocalAirflow.in_folder(tmp_path_factory.mktemp("local"), keys=SANDBOX_KEYS, accounts=ACCOUNTS)
    with use_metadata_db(airflow.env):
        try:
            airflow.start()
            run_id, ok = cli.run_initial_import(airflow.layout, airflow.env, airflow.window(1), IMPORT_TIMEOUT)
            assert ok, airflow.diagnostics(IMPORT_DAG_ID, [run_id])
            yield airflow, IMPORT_DAG_ID, run_id
        finally:
            airflow.stop()


@pytest.fixture(scope="module")
def warehouse(stack):
    from recurly_elt.warehouse.engine import create_engine_from_url

    engine = create_engine_from_url(stack[0].warehouse_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("RECURLY_ELT_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(stack, tmp_path_factory):
    """Chromium logged in to the stack's Airflow as the generated admin."""
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    airflow = stack[0]
    base = f"http://127.0.0.1:{airflow.layout.api_port}"
    password = json.loads(airflow.layout.passwords_file.read_text())["admin"]
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        driver.get(f"{base}/")
        wait = WebDriverWait(driver, WAIT)
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: d.get_cookie("_token"))
        # The login page's own requests before there is a token (Airflow's UI asks /ui/config and
        # gets 401) are not the plugin's: the console is read from here on.
        driver.get_log("browser")
        driver.base = base
        yield driver
    finally:
        driver.quit()


def q(engine, sql, **params):
    with engine.connect() as c:
        return [tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in c.execute(sa.text(sql), params)]


def number(text: str) -> float:
    return float(text.strip().split()[0].replace(",", ""))


def open_in_airflow(driver, path: str, screenshots: Path, name: str):
    """Open an Airflow UI page that frames a plugin page; wait for every chart; screenshot; leave
    the driver inside the frame."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.switch_to.default_content()
    driver.get(driver.base + path)
    wait = WebDriverWait(driver, WAIT)
    wait.until(ec.frame_to_be_available_and_switch_to_it((By.CSS_SELECTOR, "iframe")))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete"
               and d.find_elements(By.CSS_SELECTOR, "h1"))
    charts = driver.find_elements(By.CSS_SELECTOR, ".chart[data-figure]")
    wait.until(lambda d: all(c.get_attribute("data-drawn") == "true" for c in charts))
    for chart in charts:  # drawn, and not empty: plotly's SVG holds at least one trace
        traces = chart.find_elements(By.CSS_SELECTOR, "g.trace, g.scatterlayer path.js-line")
        assert traces, f"{name}: chart {chart.get_attribute('data-figure')} has no trace"
    driver.switch_to.default_content()
    driver.save_screenshot(str(screenshots / f"{name}.png"))
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe"))
    return charts


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def metric(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_revenue_page(browser, warehouse, screenshots):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    charts = open_in_airflow(browser, "/plugin/recurly-revenue", screenshots, "revenue")
    assert {c.get_attribute("data-figure") for c in charts} == {"mrr", "waterfall", "plans"}
    cells = metric(browser, "[data-metric=last-mrr]")
    assert {c.get_attribute("data-site") for c in cells} == set(SANDBOX_KEYS)
    for cell in cells:
        site, day = cell.get_attribute("data-site"), cell.get_attribute("data-day")
        [(last_day, mrr)] = q(warehouse, "SELECT MAX(day), NULL FROM v_mrr_account_daily WHERE site = :s", s=site)
        assert str(last_day)[:10] == day
        [(mrr,)] = q(warehouse, "SELECT SUM(mrr) FROM v_mrr_account_daily WHERE site = :s AND day = :d", s=site, d=day)
        assert number(cell.text) == pytest.approx(mrr, abs=0.005)
    # The waterfall of the site and month shown equals the monthly view, step by step.
    chart = browser.find_element(By.ID, "chart-waterfall")
    site, month = chart.get_attribute("data-site"), chart.get_attribute("data-month")
    [row] = q(warehouse, """SELECT opening_mrr, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr,
                                   churn_mrr, closing_mrr, new_accounts
                            FROM v_mrr_movements_by_month WHERE site = :s AND month = :m""", s=site, m=month)
    shown = {c.get_attribute("data-step"): number(c.text) for c in metric(browser, "[data-metric=movement]")}
    expected = dict(zip(("opening", "new", "expansion", "reactivation", "contraction", "churn", "closing"), row))
    assert shown == pytest.approx(expected, abs=0.005)
    # A click on the "new" bar lists the accounts behind it.
    from selenium.webdriver.common.action_chains import ActionChains

    bars = chart.find_elements(By.CSS_SELECTOR, "g.waterfalllayer g.point path")
    assert len(bars) >= 7, f"{len(bars)} waterfall bars"
    ActionChains(browser).move_to_element(bars[1]).pause(0.5).click().perform()
    title = WebDriverWait(browser, WAIT).until(lambda d: d.find_element(By.ID, "drill-title"))
    assert int(title.get_attribute("data-count")) == row[7]
    assert float(title.get_attribute("data-total")) == pytest.approx(row[1], abs=0.005)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#drill-accounts tbody tr")) == row[7]
    browser.switch_to.default_content()
    browser.save_screenshot(str(screenshots / "revenue-drill.png"))
    assert console_errors(browser) == []


def test_health_and_account_pages(browser, warehouse, screenshots):
    from selenium.webdriver.common.by import By

    open_in_airflow(browser, "/plugin/recurly-health", screenshots, "health")
    view = {(s, b): n for s, b, n in q(warehouse, "SELECT site, health_band, COUNT(*) FROM v_account_health "
                                                  "GROUP BY site, health_band")}
    shown = {(c.get_attribute("data-site"), c.get_attribute("data-band")): int(c.text)
             for c in metric(browser, "[data-metric=band]")}
    assert {k: v for k, v in shown.items() if v} == view
    [(at_risk,)] = q(warehouse, "SELECT SUM(mrr) FROM v_account_health WHERE alert_count > 0")
    assert number(metric(browser, "[data-metric=mrr-at-risk]")[0].text) == pytest.approx(at_risk or 0, abs=0.005)
    # The largest account at risk: its link opens the account's page (here outside Airflow's frame,
    # as a link shared by a colleague opens).
    from selenium.webdriver.support.ui import WebDriverWait

    href = browser.find_element(By.CSS_SELECTOR, "#at-risk tbody tr a").get_attribute("href")
    browser.switch_to.default_content()
    browser.get(href)
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".chart[data-drawn=true]"))
    browser.save_screenshot(str(screenshots / "account.png"))
    from urllib.parse import parse_qs, urlparse

    query = parse_qs(urlparse(href).query)
    site, account = query["site"][0], query["account"][0]
    [(mrr,)] = q(warehouse, "SELECT mrr FROM v_account_health WHERE site = :s AND account_id = :a", s=site, a=account)
    assert number(metric(browser, "[data-metric=account-mrr]")[0].text) == pytest.approx(mrr, abs=0.005)
    assert console_errors(browser) == []


def test_runs_page(browser, warehouse, screenshots):
    open_in_airflow(browser, "/plugin/recurly-runs", screenshots, "runs")
    log = {(r, s, res): n for r, s, res, n in q(warehouse, "SELECT run_id, site, resource, records "
                                                          "FROM extract_run_log")}
    rows = metric(browser, "#extraction tbody tr")
    shown = {(tr.get_attribute("data-run"), tr.get_attribute("data-site"), tr.get_attribute("data-resource")):
             int(number(tr.find_element("css selector", "[data-metric=records]").text)) for tr in rows}
    assert shown == log
    assert metric(browser, "#checks tbody tr") and metric(browser, "#freshness tbody tr")
    assert console_errors(browser) == []


def test_sync_summary_tab_of_the_run(browser, stack, warehouse, screenshots):
    _airflow, dag_id, run_id = stack
    from urllib.parse import quote

    open_in_airflow(browser, f"/dags/{dag_id}/runs/{quote(run_id, safe='')}/plugin/recurly-sync-summary",
                    screenshots, "sync-summary")
    [(records,)] = q(warehouse, "SELECT SUM(records) FROM extract_run_log WHERE run_id = :r", r=run_id)
    assert number(metric(browser, "#run-totals")[0].text) == records > 0
    assert console_errors(browser) == []


def test_the_live_server_refuses_every_plugin_route_without_airflows_token(browser):
    """The same routes as tests/ui/test_security.py, against the real API server this time."""
    import requests

    from .routes import plugin_routes

    token = browser.get_cookie("_token")["value"]
    for method, url in plugin_routes():
        plain = requests.request(method, browser.base + "/recurly" + url, allow_redirects=False, timeout=30)
        assert plain.status_code == 401, f"{method} {url}: {plain.status_code}"
        forged = requests.request(method, browser.base + "/recurly" + url, allow_redirects=False, timeout=30,
                                  headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        assert forged.status_code in (401, 403), f"{method} {url}: {forged.status_code}"
    served = requests.get(browser.base + "/recurly/api/sites", cookies={"_token": token}, timeout=30)
    assert served.status_code == 200 and served.json()["sites"] == sorted(SANDBOX_KEYS)


def test_the_import_form_offers_the_sites_and_refuses_an_unknown_one(browser, screenshots):
    """The trigger form of recurly_one_time_import draws the sites and resources as multi-selects,
    not required; the API server refuses a run naming an unknown site before it exists."""
    import requests
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import StaleElementReferenceException

    def clicked(find):
        """Click what `find` returns once the page has stopped re-rendering it."""
        def attempt(d):
            try:
                found = find(d)
                if found:
                    found[0].click()
                    return True
            except StaleElementReferenceException:
                pass
            return False
        return attempt

    browser.switch_to.default_content()
    browser.get(browser.base + "/dags/recurly_one_time_import")
    wait = WebDriverWait(browser, WAIT)
    wait.until(clicked(lambda d: [b for b in d.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Trigger"]))
    wait.until(clicked(lambda d: d.find_elements(By.ID, "element_sites")))
    options = wait.until(lambda d: [o.text for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")])
    assert set(SANDBOX_KEYS) <= set(options), options
    browser.save_screenshot(str(screenshots / "import-form.png"))
    token = browser.get_cookie("_token")["value"]
    refused = requests.post(f"{browser.base}/api/v2/dags/recurly_one_time_import/dagRuns", timeout=30,
                            headers={"Authorization": f"Bearer {token}"},
                            json={"logical_date": None, "conf": {"sites": ["acmee"]}})
    assert refused.status_code == 400 and "sites" in refused.text, refused.text[:300]
