"""Rate limits, faults, several sites, the request log and the sandbox endpoints."""

from __future__ import annotations

import json
import math
import time

import pytest
import requests

from recurly_elt.sandbox.faults import FaultInjector, FaultSpec
from recurly_elt.sandbox.ratelimit import UNLIMITED, SlidingWindowLimiter
from recurly_elt.sandbox.requestlog import RequestLog

from .http_helpers import Client, make_sites, running
from known_keys import SANDBOX


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sliding_window_counts_reset_and_recovery():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(per_minute=3, window_seconds=120, clock=clock)  # capacity 6
    decisions = []
    for _ in range(6):
        decisions.append(limiter.acquire())
        clock.now += 10
    assert [d.remaining for d in decisions] == [5, 4, 3, 2, 1, 0]
    assert all(d.allowed and d.limit == 6 for d in decisions)
    assert decisions[0].reset == math.ceil(1_000_000 + 120)  # when the oldest request leaves
    refused = limiter.acquire()
    assert not refused.allowed and refused.remaining == 0 and refused.reset == 1_000_120
    clock.now = 1_000_120.5  # the first request has left the window: one slot
    again = limiter.acquire()
    assert again.allowed and again.remaining == 0 and again.reset == math.ceil(1_000_010 + 120)
    assert SlidingWindowLimiter(0).acquire().limit == UNLIMITED


def test_429_headers_and_per_site_budgets_over_http():
    sites = make_sites({"acme": SANDBOX["acme"], "globex": SANDBOX["globex"]}, accounts=5, rate_limit=180, rate_window=1)  # 3/s
    with running(sites) as server:
        acme, globex = Client(server.url, SANDBOX["acme"]), Client(server.url, SANDBOX["globex"])
        seen = [acme.get("/plans") for _ in range(3)]
        assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
        assert all(r.headers["X-RateLimit-Limit"] == "3" for r in seen)
        refused = acme.get("/plans")
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limited"
        assert int(refused.headers["X-RateLimit-Reset"]) >= int(time.time())
        assert int(refused.headers["Retry-After"]) >= 1
        assert globex.get("/plans").status_code == 200  # another site, another budget
        assert requests.get(server.url + "/__sandbox/stats").status_code == 200  # never rate-limited
        time.sleep(max(0.0, int(refused.headers["X-RateLimit-Reset"]) - time.time()) + 0.05)
        assert acme.get("/plans").status_code == 200  # waiting until Reset is enough
        statuses = [e["status"] for e in server.request_log.entries("acme")]
        assert statuses == [200, 200, 200, 429, 200]
        acme.close(), globex.close()


def test_fault_spec_parsing():
    spec = FaultSpec.parse("5xx=0.1,slow=0.05:2.5,drop=0.02,malformed=0.02,storm=30:5")
    assert (spec.server_error, spec.slow, spec.slow_seconds, spec.drop, spec.malformed) == (0.1, 0.05, 2.5, 0.02, 0.02)
    assert (spec.storm_every, spec.storm_seconds) == (30, 5)
    assert FaultSpec.parse(str(spec)) == spec
    assert not FaultSpec.parse("").active
    for bad in ("5xx=2", "fire=0.1", "storm=5:10", "storm=5", "5xx=0.6,drop=0.6", "slow"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)


def test_storms_answer_429_in_the_last_seconds_of_each_period():
    clock = FakeClock(0.0)
    injector = FaultInjector(FaultSpec.parse("storm=10:3"), seed=1, started=0.0, clock=clock)
    kinds = []
    for second in range(20):
        clock.now = second + 0.5
        kinds.append(injector.decide().kind)
    assert [i for i, k in enumerate(kinds) if k == "storm"] == [7, 8, 9, 17, 18, 19]
    clock.now = 8.5
    assert injector.decide().storm_ends == 10.0


def test_a_storm_over_http_answers_429_with_headers_saying_when_it_ends():
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=5, faults="storm=1:0.5")
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        seen = {}
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and len(seen) < 2:
            response = client.get("/plans")
            seen.setdefault(response.status_code, response)
            time.sleep(0.02)
        assert set(seen) == {200, 429}
        storm = seen[429]
        assert storm.json()["error"]["type"] == "rate_limited"
        assert storm.headers["X-RateLimit-Remaining"] == "0" and int(storm.headers["Retry-After"]) >= 1
        assert int(storm.headers["X-RateLimit-Reset"]) <= time.time() + 2
        assert "storm" in {e["fault"] for e in server.request_log.entries()}
        client.close()


def _faulted_run(seed: int, spec: str, requests_count: int = 80) -> list[tuple]:
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=5, seed=seed, faults=spec)
    outcomes = []
    with running(sites) as server:
        client = Client(server.url, SANDBOX["acme"])
        for i in range(requests_count):
            try:
                response = client.get(f"/accounts?limit={i % 5 + 1}")
                try:
                    response.json()
                    outcomes.append(response.status_code)
                except ValueError:
                    outcomes.append("invalid json")
            except requests.exceptions.RequestException:
                outcomes.append("dropped")
                client.close()
                client = Client(server.url, SANDBOX["acme"])
        client.close()
        log = [(e["status"], e["fault"]) for e in server.request_log.entries()]
    return outcomes, log


def test_faults_are_reproducible_by_seed_and_logged():
    spec = "5xx=0.2,drop=0.1,malformed=0.1,slow=0.05:0.01"
    outcomes, log = _faulted_run(3, spec)
    again_outcomes, again_log = _faulted_run(3, spec)
    other_outcomes, _ = _faulted_run(4, spec)
    assert outcomes == again_outcomes and log == again_log
    assert outcomes != other_outcomes
    kinds = {fault.split("+")[-1] for _, fault in log if fault}
    assert {"drop", "malformed", "slow"} <= kinds
    assert {"dropped", "invalid json"} <= set(outcomes)
    assert {500, 502, 503} & set(outcomes)
    # every faulted request is in the log with its fault, and the client saw exactly that
    for outcome, (status, fault) in zip(outcomes, log):
        if outcome == "dropped":
            assert fault.endswith("drop")
        elif outcome == "invalid json":
            assert fault.endswith("malformed") and status == 200
        elif outcome in (500, 502, 503):
            assert fault.endswith(str(outcome)) and status == outcome
        else:
            assert fault in (None, "slow")


def test_faults_change_at_run_time_and_sandbox_endpoints_are_never_faulted():
    sites = make_sites({"acme": SANDBOX["acme"], "globex": SANDBOX["globex"]}, accounts=5)
    with running(sites) as server:
        acme, globex = Client(server.url, SANDBOX["acme"]), Client(server.url, SANDBOX["globex"])
        put = requests.put(server.url + "/__sandbox/faults?site=acme", json={"spec": "5xx=1"})
        assert put.status_code == 200 and put.json()["sites"] == {"acme": "5xx=1"}
        assert acme.get("/plans").status_code in (500, 502, 503)
        assert globex.get("/plans").status_code == 200
        assert requests.get(server.url + "/__sandbox/stats").status_code == 200  # not faulted
        assert requests.get(server.url + "/__sandbox/faults").json()["sites"] == {"acme": "5xx=1", "globex": ""}
        bad = requests.put(server.url + "/__sandbox/faults", data="5xx=7")
        assert bad.status_code == 400 and bad.json()["error"]["params"][0]["param"] == "spec"
        requests.put(server.url + "/__sandbox/faults", data="")
        assert acme.get("/plans").status_code == 200
        stats = requests.get(server.url + "/__sandbox/stats").json()["sites"]["acme"]
        assert stats["requests"] == 2 and sum(stats["faults"].values()) == 1
        acme.close(), globex.close()


def test_each_key_sees_only_its_own_site():
    sites = make_sites({"acme": SANDBOX["acme"], "globex": SANDBOX["globex"]}, accounts=20)
    acme_site, globex_site = sites
    with running(sites) as server:
        acme, globex = Client(server.url, SANDBOX["acme"]), Client(server.url, SANDBOX["globex"])
        acme_ids = {r["id"] for r in acme.read_all("/accounts?limit=200")}
        globex_ids = {r["id"] for r in globex.read_all("/accounts?limit=200")}
        assert acme_ids == set(acme_site.sim.objects["accounts"])
        assert globex_ids == set(globex_site.sim.objects["accounts"])
        assert not acme_ids & globex_ids  # different derived seeds, different data
        some_globex = next(iter(globex_ids))
        assert acme.get(f"/accounts/{some_globex}").status_code == 404
        requests.post(server.url + "/__sandbox/clock/advance?days=2&site=globex")
        clock = requests.get(server.url + "/__sandbox/clock").json()["sites"]
        assert clock["acme"]["now"] == "2025-07-01T00:00:00Z" and clock["globex"]["now"] == "2025-07-03T00:00:00Z"
        assert clock["acme"]["version"] == 0 and clock["globex"]["version"] > 0
        assert [e["site"] for e in server.request_log.entries()] == ["acme", "globex", "acme"]
        acme.close(), globex.close()


def test_request_log_over_http_and_as_json_lines(tmp_path):
    log_file = tmp_path / "requests.jsonl"
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=5)
    with running(sites, request_log=RequestLog(log_file)) as server:
        client = Client(server.url, SANDBOX["acme"])
        client.get("/accounts?limit=2&order=asc")
        client.head("/plans")
        client.get("/accounts/nope")
        Client(server.url, "wrong").get("/accounts")
        requests.get(server.url + "/__sandbox/clock")  # sandbox endpoints are not logged
        entries = requests.get(server.url + "/__sandbox/requests").json()["requests"]
        assert [(e["method"], e["path"], e["site"], e["status"]) for e in entries] == [
            ("GET", "/accounts?limit=2&order=asc", "acme", 200),
            ("HEAD", "/plans", "acme", 200),
            ("GET", "/accounts/nope", "acme", 404),
            ("GET", "/accounts", None, 401),
        ]
        assert all(abs(e["time"] - time.time()) < 60 for e in entries)
        assert requests.delete(server.url + "/__sandbox/requests").json() == {"cleared": 4}
        assert requests.get(server.url + "/__sandbox/requests").json()["requests"] == []
        client.close()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [e["status"] for e in lines] == [200, 200, 404, 401]  # the file keeps what was cleared
    assert "wrong" not in log_file.read_text()


def test_sandbox_endpoint_errors():
    sites = make_sites({"acme": SANDBOX["acme"]}, accounts=5)
    with running(sites) as server:
        assert requests.post(server.url + "/__sandbox/clock/advance?days=0").status_code == 400
        assert requests.post(server.url + "/__sandbox/clock/advance?site=nope").status_code == 404
        assert requests.get(server.url + "/__sandbox/nothing").status_code == 404
        response = Client(server.url, SANDBOX["acme"]).session.post(server.url + "/accounts")
        assert response.status_code == 405 and response.json()["error"]["type"] == "bad_request"
