"""CustomerSuccessBox server API v1_1: accounts, subscriptions, invoices (../shared/reference/destinations.md).

- Auth `Authorization: Bearer <secret key>` (the secret key: the API key may only POST, and the
  server SDKs csb-php / csb-ts send the secret). The instance URL (https://<domain>.customersuccessbox.com)
  is the connection's host.
- One JSON object per request, as the SDKs send them: `POST /api/v1_1/account` `{account_id, ...}`,
  `/api/v1_1/subscription` `{account_id, subscription_id, ...}`, `/api/v1_1/invoice`
  `{invoice_id, account_id, ...}`: upserts by those ids, attributes open. The kind's option
  `id_field` names the attribute the record's key travels in, `endpoint` the path.
- Every update sends the whole object (partial_updates off in the mapping): that is what makes a
  Daily Sync override values changed by hand; Import Only never sends an object twice (engine).
- Answer: the SDKs check only the status. 2xx: delivered. 401/403: refused, retryable (a key fixed
  later); 404 (the account a subscription or invoice names is not there, e.g. it was refused):
  retryable, it is sent again once the account is. Any other 4xx: the record is rejected with the
  body's message, permanently until it changes.
- Rate headers `X-RateLimit-Limit/Remaining/Reset` (Reset in epoch seconds).
"""

from __future__ import annotations

from recurly_elt.destinations.adapter import Adapter, Answer, BadAnswer, RateHeaders, Rejected, Request, Response
from recurly_elt.destinations.mapping import Kind
from recurly_elt.destinations.records import Record, encode


class CustomerSuccessBox(Adapter):
    name = "customersuccessbox"
    rate_headers = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_delta=False)

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def envelope_bytes(self, kind: Kind) -> int:
        return 0

    def wire(self, kind: Kind, records: list[Record]) -> list[dict]:
        id_field = kind.options["id_field"]
        return [{id_field: r.key, **{k: v for k, v in r.payload.items() if k != id_field}} for r in records]

    def build_request(self, kind: Kind, wires: list[dict], records: list[Record], options: dict) -> Request:
        if len(wires) != 1:
            raise ValueError(f"customersuccessbox {kind.name}: one object per request (batch.max_records: 1)")
        return Request("POST", kind.options["endpoint"], encode(wires[0]), {"Content-Type": "application/json"})

    def read_answer(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        if 200 <= response.status < 300:
            return Answer()
        try:
            body = response.json()
        except BadAnswer:  # an HTML error page: the status says enough
            body = None
        reason = _message(body) or f"HTTP {response.status}"
        return Answer(whole=Rejected(reason[:1000], response.status, retryable=response.status in (401, 403, 404, 408, 409)))


def _message(body) -> str | None:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e)[:300] for e in errors[:5])
        for name in ("message", "error"):
            if isinstance(body.get(name), str):
                return body[name]
    return None


ADAPTER = CustomerSuccessBox
