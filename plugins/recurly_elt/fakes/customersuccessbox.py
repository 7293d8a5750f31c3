"""An offline CustomerSuccessBox server API v1_1, validated against
../shared/reference/contracts/customersuccessbox-server-api.schema.json.

- Auth: `Authorization: Bearer <secret>` or HTTP Basic with the secret as user name (401 otherwise).
- `POST /api/v1_1/account | user | subscription | invoice`: one JSON object, checked against the
  contract's Account / User / Subscription / Invoice; an upsert by its id (attributes merged,
  null clears one). Not JSON or against the contract: 400 `{"errors": [...]}`, nothing applied.
  A subscription or invoice naming an account it does not hold: 404 (CustomerSuccessBox keys
  everything by the account).
- `--reject SHARE`: objects whose (endpoint, id) draw falls under the share are refused with 422
  `{"errors": ["<attribute> is invalid"]}`, reproducibly.
- 200 `{"success": true}`; rate headers `X-RateLimit-Limit/Remaining/Reset` (epoch seconds).
State: accounts, users, subscriptions and invoices by id as CustomerSuccessBox holds them, and per
object how many writes it received. `edit()` changes a value as a person would in the UI (tests).
"""

from __future__ import annotations

import base64
from collections import Counter

from recurly_elt.fakes.contracts import CUSTOMERSUCCESSBOX, contract_path, defs_validator, problems
from recurly_elt.fakes.http import App, Reply, json_reply
from recurly_elt.fakes.rejects import chosen

ENDPOINTS = {"account": ("Account", "account_id", "accounts"), "user": ("User", "user_id", "users"),
             "subscription": ("Subscription", "subscription_id", "subscriptions"),
             "invoice": ("Invoice", "invoice_id", "invoices")}
PREFIX = "/api/v1_1/"
MAX_BYTES = 1_000_000


class CustomerSuccessBoxApp(App):
    name = "customersuccessbox"

    def __init__(self, api_key: str, seed: int = 42, reject: float = 0.0):
        super().__init__(api_key, seed, reject)
        self.validators = {e: defs_validator(CUSTOMERSUCCESSBOX, d) for e, (d, _, _) in ENDPOINTS.items()}
        self.reset()

    def reset(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {plural: {} for _, _, plural in ENDPOINTS.values()}
        self.writes: Counter[str] = Counter()

    def authenticate(self, headers) -> Reply | None:
        scheme, _, value = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Bearer" and value.strip() == self.api_key:
            return None
        if scheme == "Basic":
            try:
                user, _, _ = base64.b64decode(value.strip()).decode().partition(":")
            except ValueError:
                user = ""
            if user == self.api_key:
                return None
        return json_reply(401, {"errors": ["Unauthorized: invalid secret key"]})

    def rate_headers(self, decision) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(decision.limit or 1000), "X-RateLimit-Remaining": str(max(decision.remaining, 0)),
                "X-RateLimit-Reset": str(decision.reset)}

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"errors": [message]})

    def handle(self, method, path, query, headers, body) -> Reply:
        endpoint = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else None
        if method != "POST" or endpoint not in ENDPOINTS:
            return self.error(404, f"no endpoint {method} {path}")
        doc, refused = self.json_body(body, MAX_BYTES, "the body is not JSON")
        if refused:
            return refused
        found = problems(self.validators[endpoint], doc)
        if found:
            return json_reply(400, {"errors": found})
        _, id_field, plural = ENDPOINTS[endpoint]
        if not isinstance(doc, dict) or not isinstance(doc.get(id_field), str) or not doc[id_field]:
            return self.error(400, f"{id_field} is required")
        if endpoint != "account" and doc.get("account_id") and doc["account_id"] not in self.objects["accounts"]:
            return self.error(404, f"account_id {doc['account_id']} does not exist")
        if chosen(self.seed, self.reject, f"{endpoint}|{doc[id_field]}"):
            bad = next((k for k in sorted(doc) if k != id_field), id_field)
            return self.error(422, f"{bad} is invalid")
        self.upsert(plural, doc[id_field], doc)
        return json_reply(200, {"success": True})

    def upsert(self, plural: str, object_id: str, attributes: dict) -> None:
        held = self.objects[plural].setdefault(object_id, {})
        for name, value in attributes.items():
            if value is None:
                held.pop(name, None)
            else:
                held[name] = value
        self.writes[f"{plural}/{object_id}"] += 1

    def edit(self, plural: str, object_id: str, **attributes) -> None:
        """A change made by hand in CustomerSuccessBox (not counted as an API write)."""
        with self.lock:
            self.objects[plural][object_id].update(attributes)

    def state(self) -> dict:
        return {"api": "customersuccessbox",
                "contract": str(contract_path(CUSTOMERSUCCESSBOX)) if self.validators["account"] else None,
                **self.objects, "writes": sum(self.writes.values()),
                "rewritten": sum(1 for n in self.writes.values() if n > 1),
                # what `bench load` compares with the warehouse: object keys, event ids, resent
                "held": {"objects": sorted({k for plural in ("accounts", "subscriptions", "invoices")
                                            for k in self.objects[plural]}), "events": [],
                         "resent": sum(n - 1 for n in self.writes.values())}}


APP = CustomerSuccessBoxApp
