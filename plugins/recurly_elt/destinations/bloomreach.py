"""Bloomreach Engagement tracking API v2: customer properties and events, through
`POST /track/v2/projects/{project token}/batch` (../shared/reference/destinations.md).

- Connection `recurly_bloomreach`: host = the instance's API base URL (https://api.exponea.com or
  the instance's own), login = the private API key id, password = its secret (sent as
  `Authorization: Basic base64(key id:secret)`), extra `{"project_token": "..."}` (it is part of
  every path, not a secret).
- Objects become `customers` commands `{customer_ids: {<customer_id>: key}, properties,
  update_timestamp}`: the kind's identity field `update_timestamp` (when the warehouse's value
  holds, not diffed) lets Bloomreach keep a newer value when commands arrive out of order.
- Events become `customers/events` commands `{customer_ids, event_type, timestamp, properties}`:
  the destination name of an event is `<event_type>:<status>` (e.g. `subscription:canceled`); the
  status goes into the properties, the timestamp is the event's own (UNIX seconds), and the mapped
  properties carry the warehouse's deterministic `event_id`. The identity fields are the
  customer ids (e.g. `registered`).
- Answer: 200 `{"results": [...], "success": true}`, one result per command in request order; a
  result with `success: false` rejects that record with Bloomreach's errors (not retried: the
  vendor says so). A 400 refuses the whole batch (split to isolate the bad command); 401/403
  refuse it retryably. 429 means the data was dropped: the transport waits and resends.
Bloomreach deduplicates no event: events are not idempotent (the engine's at-most-once policy).
"""

from __future__ import annotations

import base64
from recurly_elt.destinations.adapter import Adapter, Answer, BadAnswer, RateHeaders, Rejected, Request, Response
from recurly_elt.destinations.mapping import Kind
from recurly_elt.destinations.records import Record, encode, unix_utc

UPDATE_TIMESTAMP = "update_timestamp"


class Bloomreach(Adapter):
    name = "bloomreach"
    rate_headers = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_delta=False)
    key_id: str | None = None
    project_token: str | None = None

    def connect(self, login: str | None, extra: dict) -> None:
        token = extra.get("project_token")
        if not login:
            raise ValueError("no API key id in its login (Bloomreach private access: key id + secret)")
        if not isinstance(token, str) or not token.strip():
            raise ValueError('no project token in its extra ({"project_token": "..."})')
        self.key_id, self.project_token = login, token.strip()

    def auth_headers(self, secret: str) -> dict[str, str]:
        if self.key_id is None:
            raise ValueError("bloomreach: connect() first (the key id comes from the connection's login)")
        return {"Authorization": "Basic " + base64.b64encode(f"{self.key_id}:{secret}".encode()).decode()}

    def wire(self, kind: Kind, records: list[Record]) -> list[dict]:
        out = []
        for r in records:
            if kind.is_event:
                event_type, _, status = r.name.partition(":")
                properties = {k: v for k, v in r.payload.items() if v is not None}
                if status:
                    properties["status"] = status
                data = {"customer_ids": {k: str(v) for k, v in r.identity.items()}, "event_type": event_type,
                        "timestamp": unix_utc(r.time), "properties": properties}
                out.append({"name": "customers/events", "data": data, "command_id": r.key})
                continue
            data = {"customer_ids": {kind.options.get("customer_id", "registered"): r.key},
                    "properties": r.changed if r.changed is not None else r.payload}
            at = r.identity.get(UPDATE_TIMESTAMP)
            if at is not None:
                data[UPDATE_TIMESTAMP] = unix_utc(at)
            out.append({"name": "customers", "data": data, "command_id": r.key})
        return out

    def build_request(self, kind: Kind, wires: list[dict], records: list[Record], options: dict) -> Request:
        # connect() sets the token before any request is sent; a dry run without a connection
        # builds its sample bodies with a placeholder in the path it never sends.
        token = self.project_token or "{project_token}"
        return Request("POST", f"/track/v2/projects/{token}/batch", encode({"commands": wires}),
                       {"Content-Type": "application/json"})

    def envelope_bytes(self, kind: Kind) -> int:
        return 32

    def read_answer(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        body = response.json()
        if not isinstance(body, dict):
            raise BadAnswer(f"HTTP {response.status}: expected a JSON object, got {type(body).__name__}")
        if response.status == 200 and body.get("success") is True:
            results = body.get("results")
            if not isinstance(results, list) or len(results) != len(records):
                raise BadAnswer(f"{len(records)} commands sent, results: "
                                f"{len(results) if isinstance(results, list) else type(results).__name__}")
            rejected = []
            for i, result in enumerate(results):
                if not isinstance(result, dict) or not isinstance(result.get("success"), bool):
                    raise BadAnswer(f"result {i} has no boolean success")
                if not result["success"]:
                    errors = result.get("errors")
                    reason = "; ".join(map(str, errors[:5])) if isinstance(errors, list) and errors else "refused"
                    rejected.append(Rejected(reason[:1000], None, False, i))
            return Answer(rejected=rejected)
        message = body.get("message") if isinstance(body.get("message"), str) else None
        errors = body.get("errors")
        reason = message or (str(errors)[:500] if errors else f"HTTP {response.status}")
        status = response.status
        return Answer(whole=Rejected(reason[:1000], status, retryable=status in (401, 403, 404, 408, 409)),
                      split=status in (400, 413))


ADAPTER = Bloomreach
