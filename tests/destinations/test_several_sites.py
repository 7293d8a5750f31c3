"""Several Recurly sites with the same account codes into one destination, on SQLite and PostgreSQL:
with the default `account_key: auto` every site's customers arrive under <site>:<code> (CustomerSuccessBox:
site/code), none set aside; a destination first delivered from one site keeps its plain codes when a
second site appears (no silent re-keying: the run warns, the new site's equal codes are set aside)
until the mapping asks for site-qualified keys."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import sqlalchemy as sa

from recurly_elt.destinations.engine import deliver
from recurly_elt.transform import pipeline
from recurly_elt.warehouse.engine import create_engine_from_url

from tests.transform.staging_data import load_objects, simulation

from .fakes_running import destination, running, state, transport
from .warehouse_data import IMPORT_DAY, UNTIL, end_of

SITES = {"acme": 11, "globex": 23}  # site -> simulation seed: other customers, the same account codes
ACCOUNTS = 20
HISTORY = IMPORT_DAY.replace(year=IMPORT_DAY.year - 1)


def stage(engine, site: str) -> None:
    load_objects(engine, site, simulation(accounts=ACCOUNTS, seed=SITES[site], until=UNTIL, site=site).objects)
    pipeline.run(engine, HISTORY, IMPORT_DAY, health_days=1)


@pytest.fixture
def engine(warehouse_url):
    engine = create_engine_from_url(warehouse_url)
    yield engine
    engine.dispose()


def accounts(engine, name: str = "bloomreach") -> set[tuple[str, str]]:
    """(site, code) of the accounts a destination gets: Braze and Klaviyo those of the health view."""
    sql = ("SELECT site, account_code FROM v_account_health" if name in ("braze", "klaviyo")
           else "SELECT site, code FROM stg_accounts")
    with engine.connect() as c:
        return {(s, code) for s, code in c.execute(sa.text(sql))}


def keys_held(name: str, fake: dict) -> set[str]:
    """The account keys the fake holds customers under."""
    if name == "braze":
        return set(fake["users"])
    if name == "klaviyo":
        return set(fake["profiles"])
    if name == "bloomreach":
        return {k.removeprefix("registered:") for k in fake["customers"]}
    return set(fake["accounts"])


def deliver_to(engine, server, name: str, run_id: str, mapping=None, kinds=None):
    default_mapping, adapter = destination(name)
    if name == "bloomreach":
        adapter.connect("test-key-id", {"project_token": "test-project"})
    return deliver(engine, mapping or default_mapping, adapter, transport(server, adapter), run_id=run_id,
                   now=end_of(IMPORT_DAY), kinds=kinds)


OBJECT_KIND = {"braze": "users", "klaviyo": "profiles", "bloomreach": "customers", "customersuccessbox": "accounts"}


@pytest.mark.parametrize("name", list(OBJECT_KIND))
def test_two_sites_with_the_same_codes_deliver_both_sites_customers(engine, name):
    for site in SITES:
        stage(engine, site)
    both = accounts(engine, name)
    codes = {code for _, code in both}
    assert len(both) == 2 * len(codes) > 30  # every code exists on both sites
    kind = OBJECT_KIND[name]
    with running(name) as server:
        result = deliver_to(engine, server, name, "import", kinds=[kind])
        fake = state(server)
    assert result.status == "success" and result.kinds[kind].skipped == 0
    separator = "/" if name == "customersuccessbox" else ":"
    assert keys_held(name, fake) == {f"{site}{separator}{code}" for site, code in both}
    with engine.connect() as c:
        duplicates = c.execute(sa.text("SELECT COUNT(*) FROM load_rejections WHERE reason LIKE 'duplicate key%'")).scalar()
        setting = c.execute(sa.text("SELECT value FROM load_settings WHERE destination = :d AND name = 'account_key'"),
                            {"d": name}).scalar()
    assert duplicates == 0 and setting == f"site_account_code {separator!r}"


def test_braze_events_of_two_sites_name_the_site_qualified_user(engine):
    for site in SITES:
        stage(engine, site)
    with running("braze") as server:
        mapping, adapter = destination("braze")
        result = deliver(engine, mapping, adapter, transport(server, adapter), run_id="import", now=end_of(IMPORT_DAY),
                         backfill=True)
        fake = state(server)
    assert result.status == "success" and result.total("skipped") == 0
    with engine.connect() as c:
        want = {(f"{s}:{code}", event_id) for s, code, event_id in
                c.execute(sa.text("SELECT site, account_code, event_id FROM lifecycle_events"))}
    assert {(e["user"], e["properties"]["event_id"]) for e in fake["events"]} == want
    assert {e["user"] for e in fake["events"]} <= set(fake["users"])


def test_a_single_site_keeps_plain_codes_and_a_later_second_site_does_not_re_key(engine, caplog):
    stage(engine, "acme")
    with running("braze") as server:
        first = deliver_to(engine, server, "braze", "one-site", kinds=["users"])
        codes = {code for _, code in accounts(engine, "braze")}
        assert first.kinds["users"].sent == len(codes)
        assert set(state(server)["users"]) == codes  # plain account codes

        stage(engine, "globex")
        with caplog.at_level(logging.WARNING):
            second = deliver_to(engine, server, "braze", "two-sites", kinds=["users"])
        # Kept as first delivered: the second site's equal codes are set aside, the run says why.
        assert second.kinds["users"].skipped == len(codes & {c for s, c in accounts(engine, "braze") if s == "globex"})
        assert "first delivered with plain account codes" in caplog.text
        assert set(state(server)["users"]) == {code for _, code in accounts(engine, "braze")}

        # Asked for on purpose: every account under its site-qualified key.
        mapping, _ = destination("braze")
        qualified = dataclasses.replace(mapping, account_key="site_account_code")
        third = deliver_to(engine, server, "braze", "re-keyed", mapping=qualified, kinds=["users"])
        fake = state(server)
    assert third.kinds["users"].skipped == 0 and third.kinds["users"].creates == len(accounts(engine, "braze"))
    assert {f"{s}:{c}" for s, c in accounts(engine, "braze")} <= set(fake["users"])
    with engine.connect() as c:
        setting = c.execute(sa.text("SELECT value, run_id FROM load_settings WHERE destination = 'braze'")).one()
    assert tuple(setting) == ("site_account_code ':'", "re-keyed")
