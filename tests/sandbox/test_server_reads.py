"""What a client reads from the sandbox equals the generator's objects: lists, windows, filters, paging."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from recurly_elt.sandbox.timestamps import to_micros

from .fake_site import FakeSite
from .http_helpers import Client, make_sites, running
from known_keys import SANDBOX

LISTS = ("accounts", "subscriptions", "invoices", "line_items", "transactions", "plans")


@pytest.fixture(scope="module")
def sandbox():
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=60)
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        yield server, client, sites[0]
        client.close()


def _account_id(obj: dict) -> str:
    return obj["account"]["id"]


def test_full_reads_equal_the_generator_and_head_counts_equal_paged_totals(sandbox):
    server, client, site = sandbox
    for resource in LISTS:
        for query in ("limit=200", "limit=7&order=asc&sort=updated_at", "limit=13&order=desc"):
            records = client.read_all(f"/{resource}?{query}")
            assert {r["id"] for r in records} == set(site.sim.objects[resource]), (resource, query)
            assert len(records) == len(site.sim.objects[resource]), f"{resource} {query}: duplicates"
            total = client.head(f"/{resource}?{query}").headers["Recurly-Total-Records"]
            assert int(total) == len(records)
    # served objects are the generator's objects (invoices embed a truncated line item list)
    for record in client.read_all("/subscriptions?limit=200"):
        assert record == site.sim.objects["subscriptions"][record["id"]]


def test_order_and_sort(sandbox):
    server, client, site = sandbox
    for sort in ("created_at", "updated_at"):
        for order in ("asc", "desc"):
            records = client.read_all(f"/invoices?limit=50&sort={sort}&order={order}")
            keys = [(to_micros(r[sort]), r["id"]) for r in records]
            assert keys == sorted(keys, reverse=order == "desc")
    default = client.get("/accounts").json()["data"]
    assert len(default) == 20  # default limit
    keys = [(to_micros(r["created_at"]), r["id"]) for r in default]
    assert keys == sorted(keys, reverse=True)  # default: created_at, desc


def test_an_updated_at_window_returns_exactly_the_objects_changed_in_it(sandbox):
    server, client, site = sandbox
    begin, end = "2025-03-01T00:00:00Z", "2025-04-15T12:00:00Z"
    lo, hi = to_micros(begin), to_micros(end)
    for resource in LISTS:
        expected = {i for i, o in site.sim.objects[resource].items() if lo <= to_micros(o["updated_at"]) <= hi}
        path = f"/{resource}?limit=200&sort=updated_at&order=asc&begin_time={begin}&end_time={end}"
        assert {r["id"] for r in client.read_all(path)} == expected, resource
        assert int(client.head(path).headers["Recurly-Total-Records"]) == len(expected)
    # bounds are inclusive: a window of exactly one object's updated_at returns it
    some = next(iter(site.sim.objects["accounts"].values()))
    stamp = some["updated_at"]
    same = client.read_all(f"/accounts?sort=updated_at&begin_time={stamp}&end_time={stamp}")
    assert some["id"] in {r["id"] for r in same}
    assert all(r["updated_at"] == stamp for r in same)


def test_after_an_advance_a_daily_window_holds_exactly_that_days_changes():
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=150)
    site = sites[0]
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        changed_total = 0
        for _ in range(4):
            day_start = site.sim.now
            assert client.session.post(server.url + "/__sandbox/clock/advance?days=1").status_code == 200
            begin = day_start.strftime("%Y-%m-%dT%H:%M:%SZ")
            end_micros = to_micros(site.sim.now) - 1  # the half-open day [start, next midnight)
            end = datetime.fromtimestamp(end_micros / 1e6, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            for resource in LISTS:
                changed = {i for i, o in site.sim.objects[resource].items()
                           if to_micros(begin) <= to_micros(o["updated_at"]) <= end_micros}
                changed_total += len(changed)
                path = f"/{resource}?limit=200&sort=updated_at&order=asc&begin_time={begin}&end_time={end}"
                assert {r["id"] for r in client.read_all(path)} == changed, resource
        assert changed_total > 0, "four simulated days changed nothing"
        client.close()


def test_paging_while_the_clock_advances_skips_nothing():
    """Ascending updated_at with a position cursor: changed records move behind the cursor and are read again."""
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=60)
    site = sites[0]
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        for resource in ("accounts", "subscriptions", "invoices"):
            last_seen: dict[str, dict] = {}
            url = f"/{resource}?limit=5&sort=updated_at&order=asc"
            pages = advances = 0
            while url:
                body = client.get(url).json()
                for record in body["data"]:
                    last_seen[record["id"]] = record
                pages += 1
                if pages in (2, 4) and body["has_more"]:  # the clock moves mid-read
                    client.session.post(server.url + "/__sandbox/clock/advance?days=3")
                    advances += 1
                url = body["next"] if body["has_more"] else None
            assert advances == 2
            final = site.sim.objects[resource]
            assert set(last_seen) == set(final), resource
            stale = [i for i, r in last_seen.items() if r["updated_at"] != final[i]["updated_at"]]
            assert not stale, f"{resource}: {len(stale)} records last read in an old version"
        client.close()


def test_filters_match_the_generator(sandbox):
    server, client, site = sandbox
    objects = site.sim.objects
    now = to_micros(site.sim.now)

    def ids(path):
        return {r["id"] for r in client.read_all(path)}

    def where(resource, predicate):
        return {i for i, o in objects[resource].items() if predicate(o)}

    for state in ("active", "canceled", "expired", "future"):
        assert ids(f"/subscriptions?limit=200&state={state}") == where("subscriptions", lambda o: o["state"] == state)

    def in_trial(o):
        return bool(o.get("trial_started_at") and o.get("trial_ends_at")
                    and to_micros(o["trial_started_at"]) < now < to_micros(o["trial_ends_at"]))

    assert ids("/subscriptions?limit=200&state=in_trial") == where("subscriptions", in_trial)
    assert ids("/subscriptions?limit=200&state=live") == where(
        "subscriptions", lambda o: o["state"] in ("active", "canceled", "future") or in_trial(o))
    for state in ("pending", "past_due", "paid", "failed"):
        assert ids(f"/invoices?limit=200&state={state}") == where("invoices", lambda o: o["state"] == state)
    assert ids("/invoices?limit=200&type=non-legacy") == where("invoices", lambda o: o["type"] in ("charge", "credit"))
    assert ids("/invoices?limit=200&type=credit") == where("invoices", lambda o: o["type"] == "credit")
    assert ids("/transactions?limit=200&type=payment") == where(
        "transactions", lambda o: o["type"] in ("purchase", "capture"))
    assert ids("/transactions?limit=200&success=true") == where("transactions", lambda o: o["success"] is True)
    assert ids("/line_items?limit=200&type=credit&state=invoiced") == where(
        "line_items", lambda o: o["type"] == "credit" and o["state"] == "invoiced")
    assert ids("/line_items?limit=200&original=true") == where("line_items", lambda o: not o.get("refund"))
    subscribers = {_account_id(s) for s in objects["subscriptions"].values()
                   if s["state"] in ("active", "canceled", "future")}
    assert ids("/accounts?limit=200&subscriber=true") == subscribers
    assert ids("/accounts?limit=200&subscriber=false") == set(objects["accounts"]) - subscribers
    assert ids("/accounts?limit=200&past_due=true") == {
        _account_id(i) for i in objects["invoices"].values() if i["state"] == "past_due"}
    email = next(a["email"] for a in objects["accounts"].values() if a.get("email"))
    assert ids(f"/accounts?email={email}") == where("accounts", lambda o: o.get("email") == email)
    # the filters survive paging: `next` repeats them
    first = client.get("/invoices?limit=2&state=paid&order=asc").json()
    assert "state=paid" in first["next"] and "order=asc" in first["next"]


def test_per_parent_lists_and_alternative_ids(sandbox):
    server, client, site = sandbox
    objects = site.sim.objects
    account = max(objects["accounts"].values(),
                  key=lambda a: sum(_account_id(i) == a["id"] for i in objects["invoices"].values()))
    for child in ("subscriptions", "invoices", "line_items", "transactions"):
        expected = {i for i, o in objects[child].items() if _account_id(o) == account["id"]}
        for ident in (account["id"], f"code-{account['code']}"):
            path = f"/accounts/{ident}/{child}?limit=3"
            assert {r["id"] for r in client.read_all(path)} == expected, child
            assert int(client.head(path).headers["Recurly-Total-Records"]) == len(expected)
    invoice = next(iter(objects["invoices"].values()))
    assert client.get(f"/invoices/number-{invoice['number']}").json()["id"] == invoice["id"]
    lines = client.read_all(f"/invoices/{invoice['id']}/line_items?limit=200")
    assert [r["id"] for r in sorted(lines, key=lambda r: r["id"])] == sorted(li["id"] for li in invoice["line_items"])
    plan = next(iter(objects["plans"].values()))
    add_ons = {i for i, a in objects["add_ons"].items() if a["plan_id"] == plan["id"]}
    assert {r["id"] for r in client.read_all(f"/plans/code-{plan['code']}/add_ons")} == add_ons
    sub = next(iter(objects["subscriptions"].values()))
    assert client.get(f"/subscriptions/uuid-{sub['uuid']}").json()["id"] == sub["id"]
    # ids: only the named ones, unknown ids ignored, one page
    some = list(objects["transactions"])[:5]
    body = client.get(f"/transactions?ids={','.join(some)},unknown").json()
    assert {r["id"] for r in body["data"]} == set(some) and body["has_more"] is False and body["next"] is None


def test_a_cursor_is_bound_to_its_sort_and_order(sandbox):
    server, client, site = sandbox
    first = client.get("/accounts?limit=2&sort=updated_at&order=asc").json()
    cursor = first["next"].split("cursor=")[1].split("&")[0]
    response = client.get(f"/accounts?limit=2&sort=created_at&order=asc&cursor={cursor}")
    assert response.status_code == 400 and response.json()["error"]["params"][0]["param"] == "cursor"


def test_served_objects_stay_equal_to_the_generators_across_advances():
    """Cached bytes are reused by (id, updated_at): this fails if any object changes without updated_at moving."""
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=100, embedded_line_items=1000)
    site = sites[0]
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        for _ in range(3):
            client.session.post(server.url + "/__sandbox/clock/advance?days=5")
            for resource in LISTS:
                served = {r["id"]: r for r in client.read_all(f"/{resource}?limit=200")}
                source = json.loads(json.dumps(site.sim.objects[resource]))
                if resource == "invoices":
                    source = {i: {**o, "has_more_line_items": False} for i, o in source.items()}
                stale = [i for i in source if served.get(i) != source[i]]
                assert not stale, f"{resource}: {len(stale)} served objects differ, e.g. {stale[0]}"
        client.close()


def test_cursors_on_tied_timestamps_serve_every_record_once():
    """The cursor is (sort value, id): records sharing a timestamp are neither repeated nor skipped."""
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=30, simulation_factory=FakeSite)
    site = sites[0]
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        for resource in ("accounts", "subscriptions", "line_items"):
            stamps = [o["updated_at"] for o in site.sim.objects[resource].values()]
            assert len(set(stamps)) < len(stamps) / 1.5  # the fixture really ties
            for limit in (1, 2, 3):
                for order in ("asc", "desc"):
                    for sort in ("created_at", "updated_at"):
                        ids = [r["id"] for r in client.read_all(f"/{resource}?limit={limit}&order={order}&sort={sort}")]
                        assert sorted(ids) == sorted(site.sim.objects[resource]), (resource, limit, order, sort)
        client.close()
