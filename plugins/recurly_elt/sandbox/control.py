"""Sandbox-only endpoints under /__sandbox/: the clock, the request log, faults and stats.

They need no API key, are never rate-limited or faulted, and are not written to the request
log (reading the log must not change it).

  GET    /__sandbox/clock                      every site's clock and data version
  POST   /__sandbox/clock/advance?days=N[&site=S]   advance every site (or one) by N days
  GET    /__sandbox/requests[?site=S]          the request log;  DELETE clears it
  GET    /__sandbox/faults                     every site's fault spec
  PUT    /__sandbox/faults[?site=S]            body {"spec": "5xx=0.1,..."} (or the spec as text)
  GET    /__sandbox/hostile                    every site's hostile scenario and what it planted
  PUT    /__sandbox/hostile[?site=S]           body {"scenario": NAME} ("" clears); names: hostile.py
  GET    /__sandbox/stats                      per site: objects, requests by status, faults, limits
"""

from __future__ import annotations

import json

from recurly_elt.sandbox.errors import ApiError, bad_parameter
from recurly_elt.sandbox.faults import FaultSpec

PREFIX = "/__sandbox/"
MAX_ADVANCE_DAYS = 3660


def handle(server, method: str, path: str, params: dict[str, str], body: bytes) -> tuple[int, dict]:
    """Answer a sandbox request with (status, JSON payload); ApiError for bad input."""
    route = path[len(PREFIX):].strip("/")
    sites = _chosen_sites(server, params.get("site"))
    if (method, route) == ("GET", "clock"):
        return 200, {"sites": {s.name: s.clock() for s in sites}}
    if (method, route) == ("POST", "clock/advance"):
        days = _days(params.get("days", "1"))
        return 200, {"sites": {s.name: {"changed": s.advance(days), **s.clock()} for s in sites}}
    if route == "requests" and method in ("GET", "DELETE"):
        if method == "DELETE":
            return 200, {"cleared": server.request_log.clear()}
        entries = server.request_log.entries(params.get("site"))
        return 200, {"count": len(entries), "requests": entries}
    if route == "faults" and method in ("GET", "PUT"):
        if method == "PUT":
            spec = _fault_spec(body)
            for site in sites:
                site.set_faults(spec)
        return 200, {"sites": {s.name: str(s.faults.spec) for s in sites}}
    if route == "hostile" and method in ("GET", "PUT"):
        if method == "PUT":
            name = _scenario_name(body)
            for site in sites:
                server.set_hostile(site.name, name)
        return 200, {"sites": {s.name: _hostile_state(server, s.name) for s in sites}}
    if (method, route) == ("GET", "stats"):
        return 200, {"sites": {s.name: s.stats() for s in sites}}
    raise ApiError(404, "not_found", f"no sandbox endpoint {method} {path}")


def _chosen_sites(server, name: str | None) -> list:
    if name is None:
        return list(server.sites_by_name.values())
    if name not in server.sites_by_name:
        raise ApiError(404, "not_found", f"no sandbox site {name!r} (sites: {', '.join(server.sites_by_name)})")
    return [server.sites_by_name[name]]


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_ADVANCE_DAYS:
        raise bad_parameter("days", f"days must be an integer between 1 and {MAX_ADVANCE_DAYS}")
    return days


def _fault_spec(body: bytes) -> FaultSpec:
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            text = json.loads(text).get("spec") or ""
        except (ValueError, AttributeError):
            raise bad_parameter("spec", 'body must be {"spec": "..."} or a fault spec') from None
    try:
        return FaultSpec.parse(text)
    except ValueError as exc:
        raise bad_parameter("spec", str(exc)) from None


def _scenario_name(body: bytes) -> str | None:
    from recurly_elt.sandbox import hostile

    try:
        name = json.loads(body.decode("utf-8") or "{}").get("scenario") or None
    except (ValueError, AttributeError):
        raise bad_parameter("scenario", 'body must be {"scenario": "NAME"}') from None
    if name is not None:
        try:
            hostile.get(name)
        except ValueError as exc:
            raise bad_parameter("scenario", str(exc)) from None
    return name


def _hostile_state(server, site: str) -> dict | None:
    active = server.hostile.get(site)
    if active is None:
        return None
    return {"scenario": active.scenario.name, "calls": active.calls,
            "planted": [{"record_id": p.record_id, "field": p.field, "what": p.what, "source_id": p.source_id,
                         "resource": p.resource} for p in active.planted]}
