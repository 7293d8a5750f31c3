"""An offline ActiveCampaign (v3 REST contacts and connections, eCommerce GraphQL recurring payments),
validated against ../shared/reference/contracts/activecampaign-v3-rest.schema.json and, through
graphql-core, activecampaign-ecom-recurring-payments.graphql.

- Auth `Api-Token: <key>` (403 `{"message": "No Result found for Subscriber with id 0"}` otherwise,
  as ActiveCampaign answers); the account's 5 requests/s is `--rate-limit 5/1` (429, Retry-After).
- `GET /api/3/connections?filters[service]=&filters[externalid]=`, `POST /api/3/connections`.
- `POST /api/3/contact/sync`: ContactSyncRequest; an upsert by email, fieldValues by field;
  `--reject`: chosen emails get 422 `{"errors": [{"title": "Email address is invalid", ...}]}`.
- `POST /api/3/import/bulk_import`: BulkImportRequest (at most 250); one chosen email refuses the
  whole request (400 `{"success": 0, "failureReasons": [...]}`), else 200 with queued_contacts and
  the contacts applied at once (custom fields kept by their numeric id).
- `POST /api/3/ecom/graphql`: the document is parsed and validated against the SDL; over 15,000
  grammar tokens it is refused ("More than 15000 grammar tokens"). bulkUpsertRecurringPayments
  coerces every item against RecurringPaymentInput; an item that does not coerce, names an unknown
  legacyConnectionId, or is chosen by `--reject`, fails the whole mutation with "Validation errors"
  and `extensions` keyed `recurringPayments-storeRecurringPaymentId-<id>` (nothing applied).
  Otherwise each item is upserted by (legacyConnectionId, storeRecurringPaymentId) and its
  normalizedStatus transitions recorded as ActiveCampaign's triggers see them ("created",
  "updated from X to Y").
State: connections, contacts, recurring payments with their status history, the triggers fired.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from recurly_elt.fakes.contracts import (ACTIVECAMPAIGN_GRAPHQL, ACTIVECAMPAIGN_REST, contract_path, defs_validator,
                                         problems)
from recurly_elt.fakes.http import App, Reply, json_reply
from recurly_elt.fakes.rejects import chosen

MAX_TOKENS = 15_000


def _schema():
    path = contract_path(ACTIVECAMPAIGN_GRAPHQL)
    if path is None:
        return None
    from graphql import GraphQLScalarType, build_schema

    schema = build_schema(path.read_text(encoding="utf-8"))
    decimal = schema.type_map["BigDecimal"]
    assert isinstance(decimal, GraphQLScalarType)

    def parse(value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise ValueError(f"BigDecimal cannot represent {value!r}")
        return Decimal(str(value))

    decimal.parse_value = parse
    return schema


def _tokens(query: str) -> int:
    from graphql.language import Lexer, Source, TokenKind

    lexer, n = Lexer(Source(query)), 0
    while lexer.advance().kind != TokenKind.EOF:
        n += 1
    return n


def _jsonable(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class ActiveCampaignApp(App):
    name = "activecampaign"

    def __init__(self, api_key: str, seed: int = 42, reject: float = 0.0):
        super().__init__(api_key, seed, reject)
        self.contact_validator = defs_validator(ACTIVECAMPAIGN_REST, "ContactSyncRequest")
        self.bulk_validator = defs_validator(ACTIVECAMPAIGN_REST, "BulkImportRequest")
        self.schema = _schema()
        self.reset()

    def reset(self) -> None:
        self.connections: dict[int, dict] = {}
        self.contacts: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}
        self.history: dict[str, list] = {}
        self.triggers: list[str] = []
        self.upserts = 0
        self.bulk_imports = 0

    def authenticate(self, headers) -> Reply | None:
        if (headers.get("Api-Token") or "").strip() != self.api_key:
            return json_reply(403, {"message": "No Result found for Subscriber with id 0"})
        return None

    def rate_headers(self, decision) -> dict[str, str]:
        return {}  # ActiveCampaign sends none; a 429 carries Retry-After (fakes/http.py)

    def error(self, status: int, message: str) -> Reply:
        return json_reply(status, {"message": message})

    def handle(self, method, path, query, headers, body) -> Reply:
        route = path.rstrip("/")
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            return self.error(400, "the body is not JSON")
        if route == "/api/3/connections" and method == "GET":
            want = (query.get("filters[service]"), query.get("filters[externalid]"))
            return json_reply(200, {"connections": [c for c in self.connections.values()
                                                    if (c["service"], c["externalid"]) == want]})
        if route == "/api/3/connections" and method == "POST":
            c = (doc or {}).get("connection") if isinstance(doc, dict) else None
            if not isinstance(c, dict) or not all(isinstance(c.get(k), str) and c[k] for k in ("service", "externalid", "name")):
                return json_reply(422, {"errors": [{"title": "service, externalid and name are required"}]})
            if any((o["service"], o["externalid"]) == (c["service"], c["externalid"]) for o in self.connections.values()):
                return json_reply(422, {"errors": [{"title": "The integration and service already exist"}]})
            new = {**c, "id": str(len(self.connections) + 1)}
            self.connections[int(new["id"])] = new
            return json_reply(201, {"connection": new})
        if route == "/api/3/contact/sync" and method == "POST":
            return self.contact_sync(doc)
        if route == "/api/3/import/bulk_import" and method == "POST":
            return self.bulk_import(doc)
        if route == "/api/3/ecom/graphql" and method == "POST":
            return self.graphql(doc)
        return self.error(404, f"no endpoint {method} {path}")

    def contact_sync(self, doc) -> Reply:
        found = problems(self.contact_validator, doc)
        if found:
            return json_reply(422, {"errors": [{"title": p} for p in found]})
        contact = doc["contact"]
        email = contact["email"].lower()
        if chosen(self.seed, self.reject, email):
            return json_reply(422, {"errors": [{"title": "Email address is invalid", "code": "email_invalid",
                                                "source": {"pointer": "/data/attributes/email"}}]})
        held = self.contacts.setdefault(email, {"id": str(len(self.contacts) + 1), "fields": {}})
        for name in ("firstName", "lastName", "phone"):
            if name in contact:
                held[name] = contact[name]
        for fv in contact.get("fieldValues") or []:
            held["fields"][fv["field"]] = fv["value"]
        return json_reply(200, {"contact": {"id": held["id"], "email": email}, "fieldValues": [
            {"contact": held["id"], "field": k, "value": v} for k, v in held["fields"].items()]})

    def bulk_import(self, doc) -> Reply:
        found = problems(self.bulk_validator, doc)
        if found:
            return json_reply(400, {"success": 0, "message": "Invalid request", "failureReasons": found})
        bad = [c["email"] for c in doc["contacts"] if chosen(self.seed, self.reject, c["email"].lower())]
        if bad:  # the whole request is refused, nothing queued
            return json_reply(400, {"success": 0, "message": "Contact validation failed",
                                    "failureReasons": [f"{e}: Email address is invalid" for e in bad]})
        for c in doc["contacts"]:
            held = self.contacts.setdefault(c["email"].lower(), {"id": str(len(self.contacts) + 1), "fields": {}})
            for name, to in (("first_name", "firstName"), ("last_name", "lastName"), ("phone", "phone")):
                if name in c:
                    held[to] = c[name]
            for f in c.get("fields") or []:
                held["fields"][str(f["id"])] = f["value"]
        self.bulk_imports += 1
        return json_reply(200, {"Success": 1, "queued_contacts": len(doc["contacts"]), "batchId": uuid.uuid4().hex,
                                "message": "Contact import queued"})

    def graphql(self, doc) -> Reply:
        from graphql import GraphQLError, parse, validate
        from graphql.utilities import coerce_input_value, validate_input_value

        if not isinstance(doc, dict) or not isinstance(doc.get("query"), str):
            return json_reply(400, {"errors": [{"message": "Must provide query string."}]})
        if self.schema is None:
            return json_reply(500, {"errors": [{"message": "the fake has no GraphQL contract"}]})
        if _tokens(doc["query"]) > MAX_TOKENS:
            return json_reply(200, {"errors": [{"message": f"More than {MAX_TOKENS} grammar tokens"}]})
        try:
            document = parse(doc["query"])
        except GraphQLError as exc:
            return json_reply(200, {"errors": [{"message": exc.message}]})
        invalid = validate(self.schema, document)
        if invalid:
            return json_reply(200, {"errors": [{"message": e.message} for e in invalid[:10]]})
        variables = doc.get("variables") or {}
        items = variables.get("recurringPayments") if isinstance(variables, dict) else None
        if not isinstance(items, list):
            return json_reply(200, {"errors": [{"message": "variable recurringPayments: a list is required"}]})
        item_type = self.schema.type_map["RecurringPaymentInput"]
        coerced, extensions = [], {}
        for i, item in enumerate(items):
            messages: list[str] = []

            def on_error(error, path, messages=messages):
                messages.append(f"{'.'.join(map(str, path)) or 'item'}: {error.message}")

            validate_input_value(item, item_type, on_error)
            value = None if messages else coerce_input_value(item, item_type)
            rid = str(item.get("storeRecurringPaymentId") if isinstance(item, dict) else i)
            if not messages and value["legacyConnectionId"] not in self.connections:
                messages.append(f"legacyConnectionId {value['legacyConnectionId']} does not exist")
            if not messages and chosen(self.seed, self.reject, f"rp|{rid}"):
                messages.append("email is not a valid email address")
            if messages:
                extensions[f"recurringPayments-storeRecurringPaymentId-{rid}"] = messages
            coerced.append(value)
        if extensions:
            return json_reply(200, {"errors": [{"message": "Validation errors", "extensions": extensions}],
                                    "data": {"bulkUpsertRecurringPayments": None}})
        for value in coerced:
            self.upsert(_jsonable(value))
        return json_reply(200, {"data": {"bulkUpsertRecurringPayments": {"recordId": uuid.uuid4().hex}}})

    def upsert(self, value: dict) -> None:
        self.upserts += 1
        rid = value["storeRecurringPaymentId"]
        key = f"{value['legacyConnectionId']}:{rid}"
        before = self.payments.get(key)
        status = value.get("normalizedStatus")
        if before is None:
            self.triggers.append(f"{rid}: recurring payment created")
            self.history[key] = [status]
        elif before.get("normalizedStatus") != status:
            self.triggers.append(f"{rid}: recurring payment updated (from {before.get('normalizedStatus')} to {status})")
            self.history[key].append(status)
        self.payments[key] = value

    def state(self) -> dict:
        validated = self.schema is not None and self.contact_validator is not None and self.bulk_validator is not None
        return {"api": "activecampaign",
                "contract": str(contract_path(ACTIVECAMPAIGN_GRAPHQL)) if validated else None,
                "connections": self.connections, "contacts": self.contacts, "recurring_payments": self.payments,
                "status_history": self.history, "triggers": self.triggers, "upserts": self.upserts, "bulk_imports": self.bulk_imports,
                "held": {"objects": sorted([*self.contacts, *(k.split(":", 1)[1] for k in self.payments)]),
                         "events": [], "resent": 0}}


APP = ActiveCampaignApp
