"""An offline Braze `POST /users/track`, validated against ../shared/reference/contracts/braze-users-track.schema.json.

- `Authorization: Bearer <key>` (401 otherwise); `X-RateLimit-Limit/Remaining/Reset` (epoch s).
- Over 4 MB: 413. Not JSON, or against the schema: 400 with the schema's messages (nothing applied).
  More than `max_objects` (default 75) objects in total: 400 "Max Input Length Exceeded".
- `--reject SHARE`: attribute objects whose (external_id, email) draw falls under the share are
  refused ("Invalid email address"), and so are events whose (external_id, name, time) does:
  listed in `errors` with their index, the rest is processed (Braze's partial failure).
- 201 `{"message": "success", "attributes_processed": n, "events_processed": m[, "errors": [...]]}`.
State: each user's attributes as Braze holds them (null removes one), every event received in order
(duplicates kept, as Braze keeps them), attribute writes (Braze's billed data points).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

from recurly_elt.fakes.contracts import BRAZE, braze_validator, contract_path
from recurly_elt.fakes.http import App, Reply, json_reply
from recurly_elt.fakes.rejects import chosen

MAX_BYTES = 4_000_000
IDENTIFIERS = ("external_id", "user_alias", "braze_id", "email", "phone")
NOT_ATTRIBUTES = {"external_id", "user_alias", "braze_id", "app_id", "_update_existing_only", "push_token_import"}


class BrazeApp(App):
    name = "braze"

    def __init__(self, api_key: str, seed: int = 42, reject: float = 0.0, max_objects: int = 75):
        super().__init__(api_key, seed, reject)
        self.max_objects = max_objects
        self.validator = braze_validator()
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, dict] = {}
        self.events: list[dict] = []
        self.event_counts: Counter[str] = Counter()
        self.data_points = 0
        self.received = Counter()
        self.writes: Counter[str] = Counter()  # accepted attribute objects per user

    def authenticate(self, headers) -> Reply | None:
        scheme, _, key = (headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or key.strip() != self.api_key:
            return json_reply(401, {"message": "Invalid API key"})
        return None

    def rate_headers(self, decision) -> dict[str, str]:
        limit = decision.limit if decision.limit else 250_000
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(decision.remaining, 0)),
                "X-RateLimit-Reset": str(decision.reset)}

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"message": message})

    def handle(self, method, path, query, headers, body) -> Reply:
        if (method, path.rstrip("/")) != ("POST", "/users/track"):
            return json_reply(404, {"message": f"no endpoint {method} {path}"})
        doc, refused = self.json_body(body, MAX_BYTES, "Invalid JSON in request body")
        if refused:
            return refused
        if self.validator is not None:
            problems = sorted(self.validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            if problems:
                return json_reply(400, {"message": "Invalid request",
                                        "errors": [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
                                                   for e in problems[:20]]})
        if not isinstance(doc, dict):
            return json_reply(400, {"message": "Invalid request", "errors": ["the body must be a JSON object"]})
        attributes, events = doc.get("attributes") or [], doc.get("events") or []
        purchases = doc.get("purchases") or []
        if len(attributes) + len(events) + len(purchases) > self.max_objects:
            return json_reply(400, {"message": "Max Input Length Exceeded",
                                    "errors": [f"at most {self.max_objects} objects per request in total"]})
        errors = []
        done_a = done_e = 0
        for i, obj in enumerate(attributes):
            problem = self._attribute_problem(obj)
            if problem:
                errors.append({"type": problem, "input_array": "attributes", "index": i})
                continue
            self._apply_attributes(obj)
            done_a += 1
        for i, obj in enumerate(events):
            problem = self._event_problem(obj)
            if problem:
                errors.append({"type": problem, "input_array": "events", "index": i})
                continue
            self._apply_event(obj)
            done_e += 1
        self.received.update(attributes=len(attributes), events=len(events))
        answer = {"message": "success", "attributes_processed": done_a, "events_processed": done_e}
        if errors:
            answer["errors"] = errors
        return json_reply(201, answer)

    # -- rules ------------------------------------------------------------------------------------
    @staticmethod
    def _user_key(obj: dict) -> str | None:
        for name in IDENTIFIERS:
            if obj.get(name):
                return f"{name}:{json.dumps(obj[name], sort_keys=True)}" if name != "external_id" else obj[name]
        return None

    def _attribute_problem(self, obj) -> str | None:
        if not isinstance(obj, dict) or self._user_key(obj) is None:
            return "Missing user identifier"
        if chosen(self.seed, self.reject, f"{obj.get('external_id')}|{obj.get('email')}"):
            return "Invalid email address"
        return None

    def _event_problem(self, obj) -> str | None:
        if not isinstance(obj, dict) or self._user_key(obj) is None:
            return "Missing user identifier"
        try:
            datetime.fromisoformat(str(obj.get("time")).replace("Z", "+00:00"))
        except ValueError:
            return "Invalid time"
        if chosen(self.seed, self.reject, f"{obj.get('external_id')}|{obj.get('name')}|{obj.get('time')}"):
            return "Invalid event: properties rejected"
        return None

    def _apply_attributes(self, obj: dict) -> None:
        key = self._user_key(obj)
        if obj.get("_update_existing_only") and key not in self.users:
            return
        user = self.users.setdefault(key, {})
        self.writes[key] += 1
        for name, value in obj.items():
            if name in NOT_ATTRIBUTES:
                continue
            self.data_points += 1
            if value is None:
                user.pop(name, None)
            else:
                user[name] = value

    def _apply_event(self, obj: dict) -> None:
        key = self._user_key(obj)
        self.users.setdefault(key, {})
        event = {"user": key, "name": obj["name"], "time": obj["time"], "properties": obj.get("properties") or {}}
        self.events.append(event)
        self.event_counts[json.dumps(event, sort_keys=True)] += 1

    def state(self) -> dict:
        return {"api": "braze", "contract": str(contract_path(BRAZE)) if self.validator else None,
                "users": self.users, "events": self.events,
                "duplicate_events": sum(c - 1 for c in self.event_counts.values() if c > 1),
                "attribute_writes": sum(self.writes.values()),
                "data_points": self.data_points, "received": dict(self.received)}
