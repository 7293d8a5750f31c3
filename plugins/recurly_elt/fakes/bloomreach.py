"""An offline Bloomreach Engagement tracking API v2, validated against
../shared/reference/contracts/bloomreach-tracking-v2.schema.json.

- Auth: private access `Authorization: Basic base64(key id:secret)` (401 otherwise); the project
  token in the path must be the fake's (`--project-token`, default "test-project"): 404 otherwise.
- `POST /track/v2/projects/{token}/batch`: checked against BatchRequest (at most 50 commands);
  over 800 KB: 413; not JSON or against the contract: 400 `{"success": false, "message": ...}`,
  nothing applied. Otherwise 200 `{"results": [...], "success": true}`, one result per command in
  request order. `customers` sets properties, each kept with its update_timestamp: a command with
  an older update_timestamp leaves a newer value alone. `customers/events` records the event.
  `POST .../customers` and `.../customers/events` take one command's data.
- `--reject SHARE`: commands whose (customer ids, event type, timestamp) draw falls under the share
  get `{"success": false, "errors": ["Invalid value of property"]}`, reproducibly.
- Rate headers `X-RateLimit-Limit/Remaining/Reset` (epoch seconds); a 429 drops the request.
State: customers by their ids with their properties, every event received (duplicates counted).
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter

from recurly_elt.fakes.contracts import BLOOMREACH, contract_path, defs_validator, problems
from recurly_elt.fakes.http import App, Reply, json_reply
from recurly_elt.fakes.rejects import chosen

MAX_BYTES = 800_000
PREFIX = "/track/v2/projects/"


class BloomreachApp(App):
    name = "bloomreach"

    def __init__(self, api_key: str, seed: int = 42, reject: float = 0.0, key_id: str = "test-key-id",
                 project_token: str = "test-project"):
        super().__init__(api_key, seed, reject)
        self.key_id, self.project_token = key_id, project_token
        self.validators = {name: defs_validator(BLOOMREACH, name)
                           for name in ("BatchRequest", "CustomerCommandData", "EventCommandData")}
        self.reset()

    def reset(self) -> None:
        self.customers: dict[str, dict] = {}
        self.stamps: dict[str, dict[str, float]] = {}
        self.events: list[dict] = []
        self.event_counts: Counter[str] = Counter()
        self.commands = 0

    def authenticate(self, headers) -> Reply | None:
        scheme, _, value = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Basic":
            try:
                key_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
            except ValueError:
                key_id = secret = ""
            if (key_id, secret) == (self.key_id, self.api_key):
                return None
        return json_reply(401, {"success": False, "errors": ["Invalid access key or secret"]})

    def rate_headers(self, decision) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(decision.limit or 6000), "X-RateLimit-Remaining": str(max(decision.remaining, 0)),
                "X-RateLimit-Reset": str(decision.reset)}

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"success": False, "message": message})

    def handle(self, method, path, query, headers, body) -> Reply:
        token, _, route = path[len(PREFIX):].partition("/") if path.startswith(PREFIX) else ("", "", "")
        if method != "POST" or route.rstrip("/") not in ("batch", "customers", "customers/events"):
            return self.error(404, f"no endpoint {method} {path}")
        if token != self.project_token:
            return self.error(404, "Project not found")
        doc, refused = self.json_body(body, MAX_BYTES, "Invalid JSON")
        if refused:
            return refused
        route = route.rstrip("/")
        if route != "batch":
            name = "customers" if route == "customers" else "customers/events"
            found = problems(self.validators["CustomerCommandData" if name == "customers" else "EventCommandData"], doc)
            if found:
                return json_reply(400, {"success": False, "errors": found})
            return json_reply(200, self.command({"name": name, "data": doc}))
        found = problems(self.validators["BatchRequest"], doc)
        if found or not isinstance(doc, dict) or not isinstance(doc.get("commands"), list):
            return json_reply(400, {"success": False, "message": "Invalid request", "errors": found})
        start = time.time()
        results = [self.command(c) for c in doc["commands"]]
        return json_reply(200, {"results": results, "success": True, "start_time": start, "end_time": time.time()})

    def command(self, command: dict) -> dict:
        self.commands += 1
        data = command.get("data") or {}
        ids = data.get("customer_ids") or {}
        if not ids or any(not any(ch.isalnum() for ch in str(v)) or v in ("null", "undefined") for v in ids.values()):
            return {"success": False, "errors": ["Invalid customer ids"]}
        token = f"{json.dumps(ids, sort_keys=True)}|{data.get('event_type')}|{data.get('timestamp')}"
        if chosen(self.seed, self.reject, token):
            return {"success": False, "errors": ["Invalid value of property"]}
        customer = "|".join(f"{k}:{v}" for k, v in sorted(ids.items()))
        if command["name"] == "customers":
            props, stamps = self.customers.setdefault(customer, {}), self.stamps.setdefault(customer, {})
            at = float(data["update_timestamp"]) if data.get("update_timestamp") is not None else time.time()
            for name, value in (data.get("properties") or {}).items():
                if stamps.get(name, float("-inf")) <= at:
                    props[name], stamps[name] = value, at
            return {"success": True}
        if command["name"] == "customers/events":
            self.customers.setdefault(customer, {})
            event = {"customer": customer, "event_type": data["event_type"], "timestamp": data.get("timestamp"),
                     "properties": data.get("properties") or {}}
            self.events.append(event)
            self.event_counts[json.dumps(event, sort_keys=True)] += 1
            return {"success": True}
        return {"success": True, "time": time.time()}  # system/time

    def state(self) -> dict:
        return {"api": "bloomreach",
                "contract": str(contract_path(BLOOMREACH)) if self.validators["BatchRequest"] else None,
                "customers": self.customers, "events": self.events, "commands": self.commands,
                "duplicate_events": sum(c - 1 for c in self.event_counts.values() if c > 1),
                "held": {"objects": sorted(c.split(":", 1)[1] for c, props in self.customers.items() if props),
                         "events": [e["properties"].get("event_id") for e in self.events],
                         "resent": sum(c - 1 for c in self.event_counts.values() if c > 1)}}


APP = BloomreachApp
# What a client needs besides the key to reach this fake (its connection's login and extra).
CONNECTION = {"login": "test-key-id", "extra": {"project_token": "test-project"}}
