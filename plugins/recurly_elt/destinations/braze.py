"""Braze `POST /users/track`: user attributes and custom events (../shared/reference/destinations.md).

- Auth `Authorization: Bearer <REST key>`; the instance's REST endpoint is the connection's host
  (https://rest.iad-01.braze.com ...).
- Attribute objects carry `external_id` (the mapping's key) and the mapped attributes; on an update
  only the changed ones (Braze bills every attribute written). Event objects: external_id, name,
  time and the mapped properties (nulls left out).
- Answer: 201/200 `{"message": "success", ...}` with optional `errors` whose `index` points into
  the array as sent: only those objects are rejected. A fatal message (400 "Max Input Length
  Exceeded", 413 over the byte limit, 401/403) refuses the whole batch; 202 "queued" (maintenance)
  is accepted.
- Rate headers `X-RateLimit-Limit/Remaining/Reset` (Reset in epoch seconds).
Braze deduplicates nothing: events are not idempotent (the engine's at-most-once policy applies).
"""

from __future__ import annotations

from recurly_elt.destinations.adapter import Adapter, Answer, BadAnswer, RateHeaders, Rejected, Request, Response
from recurly_elt.destinations.mapping import Kind
from recurly_elt.destinations.records import Record, encode

ARRAYS = {"object": "attributes", "event": "events"}


class Braze(Adapter):
    name = "braze"
    rate_headers = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_delta=False)

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def envelope_bytes(self, kind: Kind) -> int:
        return 64

    def wire(self, kind: Kind, records: list[Record]) -> list[dict]:
        field = kind.options.get("user_field", "external_id")
        if not kind.is_event:
            return [{field: r.key, **(r.changed if r.changed is not None else r.payload)} for r in records]
        out = []
        for r in records:
            obj = {field: str(r.identity.get(field, r.key)), "name": r.name, "time": r.time_text}
            properties = {k: v for k, v in r.payload.items() if v is not None}
            if properties:
                obj["properties"] = properties
            out.append(obj)
        return out

    def build_request(self, kind: Kind, wires: list[dict], records: list[Record], options: dict) -> Request:
        return Request("POST", kind.options.get("endpoint", "/users/track"), encode({ARRAYS[kind.type]: wires}),
                       {"Content-Type": "application/json"})

    def read_answer(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        body = response.json()
        if not isinstance(body, dict):
            raise BadAnswer(f"HTTP {response.status}: expected a JSON object, got {type(body).__name__}")
        message = body.get("message")
        if response.status == 202 and message == "queued":
            return Answer()
        if response.status in (200, 201) and message == "success":
            return Answer(rejected=self._item_errors(kind, body.get("errors"), len(records)))
        reason = f"{message}" if isinstance(message, str) else f"HTTP {response.status}"
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            reason += ": " + "; ".join(str(e)[:200] for e in errors[:3])
        retryable = response.status in (401, 403, 408, 409)  # credentials or permissions fixed later
        return Answer(whole=Rejected(reason[:1000], response.status, retryable))

    def _item_errors(self, kind: Kind, errors, n: int) -> list[Rejected]:
        if errors is None:
            return []
        if not isinstance(errors, list):
            raise BadAnswer("errors is not a list")
        out = []
        for e in errors:
            if not isinstance(e, dict):
                raise BadAnswer("an item of errors is not an object")
            index, array = e.get("index"), e.get("input_array")
            if array != ARRAYS[kind.type]:
                continue  # about an array this request did not send
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
                raise BadAnswer(f"error index {index!r} outside the {n} objects sent")
            out.append(Rejected(str(e.get("type") or "rejected")[:500], None, False, index))
        return out


ADAPTER = Braze
