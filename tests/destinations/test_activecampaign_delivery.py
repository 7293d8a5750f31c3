"""ActiveCampaign, end to end against the offline fake, on SQLite and PostgreSQL: contacts by email
with Recurly custom fields; one eCommerce connection found or created once; one recurring payment
per subscription through GraphQL, each status change an update of the same one; "Validation
errors" mapped back to the subscriptions they name; the seed's table 003 entirely accounted for."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from recurly_elt.destinations.engine import deliver

from .daily_syncs import import_then_daily_syncs
from .expected import cents
from .fakes_running import destination, dry_then_real, running, state, transport
from .warehouse_data import IMPORT_DAY, end_of

DEST = "activecampaign"
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seeds" / "003_c202336104a7a0ed.txt"
STATUS = {"expired": "EXPIRED", "canceled": "CANCELLED", "paused": "PAUSED", "future": "PENDING"}


def expected_payments(engine) -> dict[str, dict]:
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT s.id, s.state, s.total, s.account_code, a.has_past_due_invoice FROM "
                                 "stg_subscriptions s JOIN stg_accounts a ON a.site = s.site AND a.id = s.account_id")).all()
    return {sid: {"storeStatus": st, "storeCustomerId": code, "paymentAmount": cents(total),
                  "normalizedStatus": STATUS.get(st, "PAYMENT_FAILED" if past_due else "ACTIVE")}
            for sid, st, total, code, past_due in rows}


def expected_contacts(engine) -> dict[str, str]:
    with engine.connect() as c:
        return {email.lower(): code for email, code in c.execute(sa.text("SELECT email, code FROM stg_accounts")).all()}


def assert_activecampaign_equals_warehouse(engine, fake, *, exclude=()):
    (connection_id,) = [int(i) for i in fake["connections"]]
    want = {k: v for k, v in expected_payments(engine).items() if k not in exclude}
    held = {key.split(":", 1)[1]: v for key, v in fake["recurring_payments"].items()}
    assert set(held) == set(want)
    for sid, attrs in want.items():
        assert {k: held[sid].get(k) for k in attrs} == attrs, sid
        assert held[sid]["legacyConnectionId"] == connection_id
    contacts = expected_contacts(engine)
    assert {e: c["fields"]["RECURLY_ACCOUNT_CODE"] for e, c in fake["contacts"].items()} == contacts


def run(engine, server, *, run_id, day, **kw):
    mapping, adapter = destination(DEST)
    return deliver(engine, mapping, adapter, transport(server, adapter), run_id=run_id, now=end_of(day), **kw)


def test_import_then_seven_daily_syncs_deliver_every_status_change_as_an_update(warehouse):
    seen = {sid: [v["normalizedStatus"]] for sid, v in expected_payments(warehouse).items()}

    def record_statuses(day, daily, fake):
        for sid, v in expected_payments(warehouse).items():
            if seen.setdefault(sid, [])[-1:] != [v["normalizedStatus"]]:
                seen[sid].append(v["normalizedStatus"])

    with running(DEST) as server:
        # the connection lookup and creation come on top of the delivery requests
        syncs = import_then_daily_syncs(run, warehouse, server, assert_activecampaign_equals_warehouse,
                                        each_day=record_statuses)
    assert syncs.imported["contract"]
    history = {key.split(":", 1)[1]: h for key, h in syncs.fake["status_history"].items()}
    assert history == seen
    created = Counter(t.split(": ", 1)[0] for t in syncs.fake["triggers"] if t.endswith("created"))
    assert set(created) == set(seen) and max(created.values()) == 1  # one recurring payment each
    updates = [t for t in syncs.fake["triggers"] if "updated (from" in t]
    assert len(updates) == sum(len(h) - 1 for h in seen.values())


def test_validation_errors_reject_only_the_subscriptions_they_name(warehouse):
    with running(DEST, reject=0.08) as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY)
        fake = state(server)
    with warehouse.connect() as c:
        rows = c.execute(sa.text("SELECT kind, object_key, reason, retryable FROM load_rejections")).all()
    refused = {key for kind, key, _, _ in rows if kind == "recurring_payments"}
    assert refused and result.kinds["recurring_payments"].rejected == len(refused)
    assert all(re.fullmatch(r"Validation errors: email is not a valid email address", reason) and not retry
               for kind, _, reason, retry in rows if kind == "recurring_payments")
    contacts_refused = {key for kind, key, _, _ in rows if kind == "contacts"}
    for email in contacts_refused:
        fake["contacts"][email] = {"fields": {"RECURLY_ACCOUNT_CODE": expected_contacts(warehouse)[email]}}
    assert_activecampaign_equals_warehouse(warehouse, fake, exclude=refused)


def test_faults_under_the_five_requests_a_second_limit_lose_nothing_and_are_paced(warehouse):
    with running(DEST, faults="5xx=0.1,drop=0.05", rate_limit="5/1") as server:
        result = run(warehouse, server, run_id="import", day=IMPORT_DAY, kinds=["recurring_payments"])
        fake = state(server)
    assert result.status == "success" and fake["server"]["statuses"].get("429", 0) <= 1  # paced, not refused
    held = {key.split(":", 1)[1]: v for key, v in fake["recurring_payments"].items()}
    assert set(held) == set(expected_payments(warehouse)) and len(fake["connections"]) == 1


def test_dry_run_sends_nothing_and_counts_what_the_real_run_sends(warehouse):
    with running(DEST) as server:
        dry, real = dry_then_real(run, warehouse, server, ("creates", "updates", "unchanged", "skipped", "considered"), day=IMPORT_DAY)
    items = dry.sample["recurring_payments"]["variables"]["recurringPayments"]
    assert len(items) == 5 and items[0]["legacyConnectionId"] == 0 and items[0]["storeRecurringPaymentId"]


def test_one_time_import_of_contacts_through_bulk_import(warehouse):
    import dataclasses

    mapping, adapter = destination(DEST)
    contacts = mapping.kind("contacts")
    bulk = dataclasses.replace(contacts, max_records=250, options={**contacts.options, "api": "bulk_import"})
    mapping = dataclasses.replace(mapping, kinds=(bulk,))
    with running(DEST, reject=0.05) as server:
        result = deliver(warehouse, mapping, adapter, transport(server, adapter), run_id="import",
                         now=end_of(IMPORT_DAY))
        fake = state(server)
    with warehouse.connect() as c:
        refused = dict(c.execute(sa.text("SELECT object_key, reason FROM load_rejections WHERE kind = 'contacts'")).all())
    want = {e: code for e, code in expected_contacts(warehouse).items() if e not in refused}
    assert refused and all(r.endswith("Email address is invalid") for r in refused.values())
    code_id = str(contacts.options["field_ids"]["RECURLY_ACCOUNT_CODE"])
    assert {e: c["fields"][code_id] for e, c in fake["contacts"].items()} == want
    assert result.kinds["contacts"].sent == len(want) and fake["bulk_imports"] >= 1


def _seed_fields() -> list[str]:
    text = SEED.read_text(encoding="utf-8")
    table = text.split("Champ des paiements récurrents", 1)[1]
    cells = [c.strip() for c in table.split("|")]
    fields = []
    for cell in cells[1:]:
        if not cell:
            continue
        if "\n" in cell:  # the table ends where prose starts
            fields.append(cell.split("\n", 1)[0].strip())
            break
        fields.append(cell)
    return fields


@pytest.mark.skipif(not SEED.is_file(), reason="../shared/seeds is not beside the repository")
def test_every_field_of_the_seeds_table_is_mapped_or_marked_unmapped_with_a_reason():
    doc = yaml.safe_load((ROOT / "include/mappings/destinations/activecampaign.yaml").read_text(encoding="utf-8"))
    kind = doc["kinds"]["recurring_payments"]
    table = kind["table_003"]
    sent = set(kind["fields"]) | set(kind["children"]) | {"legacyConnectionId", "storeRecurringPaymentId"}
    fields = [f for f in _seed_fields() if not f.startswith("Conditions de segment")]
    assert len(fields) >= 55
    for name in fields:
        # exact, or a group entry (e.g. every "Adresse de livraison ..." field) covers it
        entry = table.get(name) or next((v for k, v in table.items() if name.startswith(k) and k not in fields), None)
        if name.startswith("Adresse d'expédition"):
            entry = table["Adresse de livraison"]
        assert entry is not None, name
        if "sent_as" in entry:
            assert entry["sent_as"] in sent, (name, entry)
        else:
            assert isinstance(entry["unmapped"], str) and len(entry["unmapped"]) > 20, name
