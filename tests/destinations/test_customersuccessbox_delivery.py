"""CustomerSuccessBox, end to end against the offline fake, on SQLite and PostgreSQL: accounts,
subscriptions and invoices keyed by an immutable account id (a tenant id custom field, else the
account code); after an import and 7 daily syncs the fake equals the warehouse; unchanged runs send
nothing; Import Only keeps values changed by hand, Daily Sync overrides them; faults and refused
records lose and duplicate nothing; several sites share one CustomerSuccessBox; dry run."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from recurly_elt.destinations.engine import deliver

from .daily_syncs import import_then_daily_syncs, import_then_days
from .expected import cents, rejections
from .fakes_running import destination, dry_then_real, running, state, transport
from .warehouse_data import DAYS, IMPORT_DAY, end_of, staged_engine, transform_day
from tests.transform.staging_data import load_objects, simulation
from recurly_elt.transform import pipeline

DEST = "customersuccessbox"
TENANTS = {"acct-000003": "tenant-0003", "acct-000010": "tenant-0010"}


@pytest.fixture
def warehouse(warehouse_url):
    engine = staged_engine(warehouse_url)
    with engine.begin() as c:  # two accounts carry the tenant id of the seed in a custom field
        for code, tenant in TENANTS.items():
            fields = json.loads(c.execute(sa.text("SELECT custom_fields FROM stg_accounts WHERE code = :c"),
                                          {"c": code}).scalar())
            fields.append({"name": "tenant_id", "value": tenant})
            c.execute(sa.text("UPDATE stg_accounts SET custom_fields = :f WHERE code = :c"),
                      {"f": json.dumps(fields), "c": code})
    yield engine
    engine.dispose()


def account_ids(engine, by_site: bool = False) -> dict[tuple[str, str], str]:
    """(site, Recurly account id) -> the CustomerSuccessBox account id, read here on its own."""
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT site, id, code, custom_fields FROM stg_accounts")).all()
    out = {}
    for site, account_id, code, fields in rows:
        tenant = [f["value"] for f in json.loads(fields or "[]") if f.get("name") == "tenant_id"]
        out[(site, account_id)] = tenant[0] if tenant else (f"{site}/{code}" if by_site else code)
    return out


def expected(engine, by_site: bool = False) -> dict[str, dict]:
    ids = account_ids(engine, by_site)
    with engine.connect() as c:
        accounts = c.execute(sa.text(
            "SELECT a.site, a.id, h.account_status, h.mrr, h.total_paid, h.total_due, h.overdue_amount, "
            "h.overdue_invoice_count, h.health_score, h.health_band, h.alert_count, h.plan_names "
            "FROM stg_accounts a LEFT JOIN account_health_daily h ON h.site = a.site AND h.account_id = a.id "
            "AND h.day = (SELECT MAX(l.day) FROM account_health_daily l WHERE l.site = a.site)")).all()
        subs = c.execute(sa.text("SELECT site, subscription_id, account_id, status, mrr, plan_code "
                                 "FROM subscription_overview")).all()
        invoices = c.execute(sa.text("SELECT site, id, account_id, state, total, balance FROM stg_invoices")).all()
    return {
        "accounts": {ids[(s, a)]: {"recurly_site": s, "recurly_account_status": st, "mrr": cents(mrr),
                                   "total_amount_paid": cents(paid), "total_amount_due": cents(due),
                                   "overdue_amount": cents(over), "overdue_invoice_count": n,
                                   "recurly_health_score": None if score is None else float(score),
                                   "recurly_health_band": band, "recurly_alert_count": alerts, "plan_names": plans}
                     for s, a, st, mrr, paid, due, over, n, score, band, alerts, plans in accounts},
        "subscriptions": {sub: {"account_id": ids[(s, a)], "recurly_site": s, "status": st, "mrr": cents(mrr),
                                "plan_code": plan} for s, sub, a, st, mrr, plan in subs},
        "invoices": {i: {"account_id": ids[(s, a)], "recurly_site": s, "status": st, "total": cents(total),
                         "amount_due": cents(balance)} for s, i, a, st, total, balance in invoices},
    }


def assert_csb_equals_warehouse(engine, fake: dict, *, exclude=(), by_site=False) -> None:
    want = expected(engine, by_site)
    for plural, objects in want.items():
        objects = {k: v for k, v in objects.items() if k not in exclude}
        held = {k: v for k, v in fake[plural].items() if k not in exclude}
        assert set(held) == set(objects), plural
        for object_id, attrs in objects.items():
            got = {name: held[object_id].get(name) for name in attrs}
            assert got == attrs, (plural, object_id)


def run(engine, server, *, run_id, day, dest=None, **kw):
    mapping, adapter = dest or destination(DEST)
    return deliver(engine, mapping, adapter, transport(server, adapter), run_id=run_id, now=end_of(day), **kw)


def test_import_then_seven_daily_syncs_leave_csb_equal_to_the_warehouse(warehouse):
    with running(DEST) as server:
        syncs = import_then_daily_syncs(run, warehouse, server, assert_csb_equals_warehouse)
    first, fake = syncs.first, syncs.imported
    assert first.kinds["invoices"].sent > 100 and first.total("requests") == first.total("sent")
    assert fake["contract"] and fake["accounts"]["tenant-0003"]["recurly_account_code"] == "acct-000003"
    assert "acct-000003" not in fake["accounts"]
    assert sum(daily.total("updates") for daily in syncs.dailies) > 0


def _changing_account(engine, server) -> str:
    """An account whose mapped attributes change on the first daily day (found by a dry run)."""
    transform_day(engine, DAYS[0])
    mapping, adapter = destination(DEST)
    mapping = dataclasses.replace(mapping, sample_size=1000)
    dry = deliver(engine, mapping, adapter, None, run_id="find", dry_run=True, now=end_of(DAYS[0]), kinds=["accounts"])
    assert dry.kinds["accounts"].updates > 0
    return dry.sample["accounts"]["account_id"]


def test_import_only_keeps_hand_edits_and_daily_sync_overrides_them(warehouse):
    with running(DEST) as server:
        run(warehouse, server, run_id="import", day=IMPORT_DAY, mode="import_only")
        code = _changing_account(warehouse, server)
        server.app.edit("accounts", code, recurly_health_band="edited by hand", mrr=1.0)
        with warehouse.begin() as c:  # an invoice issued after the import
            c.execute(sa.text("INSERT INTO stg_invoices (site, id, number, account_id, account_code, type, state, "
                              "currency, total, paid, balance, raw_json, _loaded_at) SELECT site, 'inv-new-1', "
                              "'99999', id, code, 'charge', 'pending', 'USD', 10.5, 0, 10.5, '{}', CURRENT_TIMESTAMP "
                              "FROM stg_accounts WHERE code = 'acct-000005'"))
        transform_day(warehouse, DAYS[1])
        later = run(warehouse, server, run_id="import-only-later", day=DAYS[1], mode="import_only")
        fake = state(server)
        assert later.total("updates") == 0 and later.kinds["invoices"].creates >= 1
        assert fake["accounts"][code]["recurly_health_band"] == "edited by hand" and fake["accounts"][code]["mrr"] == 1.0
        assert fake["invoices"]["inv-new-1"]["total"] == 10.5
        daily = run(warehouse, server, run_id="daily", day=DAYS[1], mode="daily_sync")
        assert daily.kinds["accounts"].updates > 0
        fake = state(server)
    want = expected(warehouse)["accounts"][code]
    assert fake["accounts"][code]["recurly_health_band"] == want["recurly_health_band"]
    assert fake["accounts"][code]["mrr"] == want["mrr"]
    assert_csb_equals_warehouse(warehouse, fake)


def _age_deliveries(engine, days: float) -> None:
    """As if the deliveries so far had happened `days` earlier (the re-sync period is wall-clock)."""
    with engine.begin() as c:
        rows = c.execute(sa.text("SELECT kind, object_key, delivered_at FROM load_delivered WHERE destination = :d"),
                         {"d": DEST}).all()
        for kind, key, at in rows:
            at = datetime.fromisoformat(at) if isinstance(at, str) else at
            c.execute(sa.text("UPDATE load_delivered SET delivered_at = :t WHERE destination = :d AND kind = :k "
                              "AND object_key = :o").bindparams(sa.bindparam("t", type_=sa.DateTime())),
                      {"t": at - timedelta(days=days), "d": DEST, "k": kind, "o": key})


def test_daily_sync_re_syncs_unchanged_accounts_after_the_period_and_import_only_never(warehouse):
    mapping, adapter = destination(DEST)
    assert mapping.kind("accounts").resync_after_days == 7  # the mapping's setting
    with running(DEST) as server:
        first = run(warehouse, server, run_id="import", day=IMPORT_DAY)
        accounts = first.kinds["accounts"].sent
        code = sorted(state(server)["accounts"])[0]
        server.app.edit("accounts", code, recurly_health_band="edited by hand")
        # The warehouse does not change from here on. Same day again: nothing sent, the edit stays.
        rerun = run(warehouse, server, run_id="rerun", day=IMPORT_DAY)
        assert rerun.total("requests") == 0
        _age_deliveries(warehouse, 6)  # inside the period: still nothing
        assert run(warehouse, server, run_id="six-days", day=IMPORT_DAY).total("requests") == 0
        _age_deliveries(warehouse, 2)  # 8 days since the last delivery
        kept = run(warehouse, server, run_id="import-only", day=IMPORT_DAY, mode="import_only")
        assert kept.total("requests") == 0  # Import Only never overwrites, whatever the age
        assert state(server)["accounts"][code]["recurly_health_band"] == "edited by hand"
        writes = state(server)["writes"]
        daily = run(warehouse, server, run_id="daily", day=IMPORT_DAY)
        fake = state(server)
        # Every account again, whole (the hand edit overwritten); subscriptions and invoices have
        # no re-sync period: unchanged, not sent.
        assert daily.kinds["accounts"].resynced == daily.kinds["accounts"].updates == accounts
        assert daily.kinds["accounts"].unchanged == 0 and daily.kinds["accounts"].requests == accounts
        assert daily.kinds["subscriptions"].requests == daily.kinds["invoices"].requests == 0
        assert fake["writes"] - writes == accounts
        assert fake["accounts"][code]["recurly_health_band"] == expected(warehouse)["accounts"][code]["recurly_health_band"]
        assert_csb_equals_warehouse(warehouse, fake)
        # Delivered just now: the same day again sends nothing.
        assert run(warehouse, server, run_id="daily-again", day=IMPORT_DAY).total("requests") == 0


def test_faults_and_refused_records_lose_and_duplicate_nothing(warehouse):
    with running(DEST, faults="5xx=0.1,drop=0.05,storm=6:0.5", reject=0.03) as server:
        import_then_days(run, warehouse, server, 2)
        fake = state(server)
        assert fake["server"]["faults"].get("5xx") and fake["server"]["faults"].get("drop")
        rejected = rejections(warehouse, DEST)
    assert rejected
    for kind, key, reason, status, retryable in rejected:
        assert status in (404, 422), (kind, key)
        assert reason.endswith("is invalid") or (reason.endswith("does not exist") and retryable)
    refused = {key for _, key, _, _, _ in rejected}
    # Everything refused is absent; everything else equals the warehouse; no object written twice
    # with the same payload (only updates rewrite).
    assert_csb_equals_warehouse(warehouse, fake, exclude=refused | {
        key for plural in ("subscriptions", "invoices") for key, v in expected(warehouse)[plural].items()
        if v["account_id"] in refused})


def test_subscriptions_and_invoices_of_an_account_staged_later_wait_for_it(warehouse):
    """An extraction up to X meets subscriptions and invoices of an account updated after X: they
    go with the account code staged with them, are answered 404 (no such account), retryable, and
    are delivered by the run after the account is staged."""
    with warehouse.begin() as c:
        account = dict(c.execute(sa.text("SELECT * FROM stg_accounts WHERE code = 'acct-000007'")).mappings().one())
        c.execute(sa.text("DELETE FROM stg_accounts WHERE code = 'acct-000007'"))
        subs = {k for k, in c.execute(sa.text("SELECT id FROM stg_subscriptions WHERE account_code = 'acct-000007'"))}
        invoices = {k for k, in c.execute(sa.text("SELECT id FROM stg_invoices WHERE account_code = 'acct-000007'"))}
    assert subs and invoices
    start = IMPORT_DAY.replace(year=IMPORT_DAY.year - 1)
    pipeline.run(warehouse, start, IMPORT_DAY, health_days=1)
    with running(DEST) as server:
        first = run(warehouse, server, run_id="import", day=IMPORT_DAY)
        refused = rejections(warehouse, DEST)
        assert {(kind, key) for kind, key, *_ in refused} == {("subscriptions", k) for k in subs} | {
            ("invoices", k) for k in invoices}
        assert {(reason, status, retryable) for _, _, reason, status, retryable in refused} == {
            ("account_id acct-000007 does not exist", 404, True)}
        assert first.total("rejected") == len(subs) + len(invoices)
        with warehouse.begin() as c:
            c.execute(sa.table("stg_accounts", *map(sa.column, account)).insert().values(**account))
        pipeline.run(warehouse, start, IMPORT_DAY, health_days=1)
        later = run(warehouse, server, run_id="later", day=IMPORT_DAY)
        fake = state(server)
    assert later.kinds["subscriptions"].sent == len(subs) and later.kinds["invoices"].sent == len(invoices)
    assert later.kinds["accounts"].sent == 1 and not rejections(warehouse, DEST)
    assert_csb_equals_warehouse(warehouse, fake)


def test_several_sites_into_one_customersuccessbox(warehouse):
    load_objects(warehouse, "second", simulation(accounts=12, seed=99, until=DAYS[0], site="second").objects)
    pipeline.run(warehouse, IMPORT_DAY.replace(year=IMPORT_DAY.year - 1), IMPORT_DAY, health_days=1)
    # account_key auto: two sites in the warehouse at the first delivery, so accounts without a
    # tenant id are keyed site/code, the seed's multi-site form.
    with running(DEST) as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY)
        fake = state(server)
    assert result.status == "success"
    assert {a["recurly_site"] for a in fake["accounts"].values()} == {"sandbox", "second"}
    assert "second/acct-000001" in fake["accounts"] and "sandbox/acct-000001" in fake["accounts"]
    assert_csb_equals_warehouse(warehouse, fake, by_site=True)


def test_dry_run_sends_nothing_and_counts_what_the_real_run_sends(warehouse):
    with running(DEST) as server:
        dry, real = dry_then_real(run, warehouse, server, ("creates", "updates", "unchanged", "skipped", "considered"), day=IMPORT_DAY)
    assert dry.total("creates") == real.total("sent")
    assert dry.sample["accounts"]["account_id"] and "test-key" not in json.dumps(dry.sample)


def test_account_codes_repeated_across_sites_are_set_aside_with_plain_account_codes(warehouse):
    load_objects(warehouse, "second", simulation(accounts=12, seed=99, until=DAYS[0], site="second").objects)
    pipeline.run(warehouse, IMPORT_DAY.replace(year=IMPORT_DAY.year - 1), IMPORT_DAY, health_days=1)
    mapping, adapter = destination(DEST)
    mapping = dataclasses.replace(mapping, account_key="account_code")  # chosen against the two sites
    with running(DEST) as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY, kinds=["accounts"], dest=(mapping, adapter))
        fake = state(server)
    # acct-000001 ... acct-000012 exist in both sites; two of them carry a tenant id in the first
    # (the fixture), so their codes are free for the second site's accounts: 10 collide.
    assert result.kinds["accounts"].skipped == 10
    clashing = {f"acct-{n:06d}" for n in range(1, 13)} - set(TENANTS)
    assert {fake["accounts"][code]["recurly_site"] for code in clashing} == {"sandbox"}
    assert {fake["accounts"][code]["recurly_site"] for code in TENANTS} == {"second"}
    with warehouse.connect() as c:
        reasons = c.execute(sa.text("SELECT object_key, reason FROM load_rejections WHERE kind = 'accounts'")).all()
    assert len(reasons) == 10 and all(r.startswith("duplicate key: column csb_account_id") and "site=sandbox" in r
                                      and "site=second" in key for key, r in reasons)
