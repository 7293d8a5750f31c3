"""ActiveCampaign: contacts (v3 REST) and eCommerce recurring payments (GraphQL), ../shared/reference/destinations.md.

- Connection `recurly_activecampaign`: host = the account's API URL (https://<account>.api-us1.com),
  password = the `Api-Token`. The account allows 5 requests per second, shared by every key and
  the GraphQL endpoint; over it, 429 (the transport waits out Retry-After).
- Contacts: `POST /api/3/contact/sync` `{contact: {email, firstName, lastName, fieldValues}}`, one per
  request, keyed by email; the mapped fields whose name is all capitals are custom fields (their
  personalization tags, e.g. RECURLY_ACCOUNT_CODE) sent as `fieldValues` strings.
- Or, for a one-time import (`api: bulk_import`, `max_records: 250`): `POST /api/3/import/bulk_import`
  `{contacts: [{email, first_name, last_name, fields: [{id, value}]}], exclude_automations: true}`,
  custom fields by their numeric ids (`field_ids`); a 400 with failureReasons refuses the whole
  request for any bad contact: split until the bad ones are isolated.
- Recurly as an eCommerce connection: found (`GET /api/3/connections`, by service and externalid)
  or created (`POST /api/3/connections`) before the run's first request; its id is every recurring
  payment's `legacyConnectionId` (a dry run shows 0 there: it looks nothing up).
- Recurring payments: `POST /api/3/ecom/graphql`, mutation bulkUpsertRecurringPayments with the
  batch as a variable (the document stays a few dozen grammar tokens whatever the batch), keyed by
  legacyConnectionId + storeRecurringPaymentId (the subscription id): a status change is an update
  of the same recurring payment. The whole mutation fails with "Validation errors" whose
  `extensions` keys end in `-storeRecurringPaymentId-<id>`: a batch is split until each named
  subscription is alone, and it is then rejected with its own messages; the others go through.
"""

from __future__ import annotations

import re

from recurly_elt.destinations.adapter import Adapter, Answer, BadAnswer, RateHeaders, Rejected, Request, Response
from recurly_elt.destinations.mapping import Kind
from recurly_elt.destinations.records import Record, encode

MUTATION = ("mutation upsert($recurringPayments: [RecurringPaymentInput]) "
            "{ bulkUpsertRecurringPayments(recurringPayments: $recurringPayments) { recordId } }")
NAMED = re.compile(r"-storeRecurringPaymentId-(.+)$")
CUSTOM_FIELD = re.compile(r"^[A-Z][A-Z0-9_]*$")
BULK_NAMES = {"firstName": "first_name", "lastName": "last_name"}


class ActiveCampaign(Adapter):
    name = "activecampaign"
    # ActiveCampaign sends no rate headers: requests are spaced to its documented 5 per second (one
    # delivery per account at a time: the pool), and a 429 is waited out by its Retry-After.
    rate_headers = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_delta=True,
                               requests_per_second=5)
    connection_id: int | None = None

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"Api-Token": secret}

    def envelope_bytes(self, kind: Kind) -> int:
        return len(MUTATION) + 64

    def prepare(self, transport) -> None:
        if self.connection_id is not None or not any(k.options.get("api") == "graphql" for k in self.mapping.kinds):
            return
        service, externalid = self.mapping.options["ecom_service"], self.mapping.options["ecom_externalid"]
        query = f"/api/3/connections?filters[service]={service}&filters[externalid]={externalid}"
        found, _ = transport.retry_read(Request("GET", query), lambda r: self._connection(r, service, externalid))
        if found is None:
            body = {"connection": {"service": service, "externalid": externalid,
                                   "name": self.mapping.options.get("ecom_name", "Recurly"),
                                   "logoUrl": self.mapping.options.get("ecom_logo_url", ""),
                                   "linkUrl": self.mapping.options.get("ecom_link_url", "")}}
            found, _ = transport.retry_read(Request("POST", "/api/3/connections", encode(body),
                                                    {"Content-Type": "application/json"}),
                                            lambda r: self._connection(r, service, externalid))
            if found is None:
                raise RuntimeError("activecampaign: the eCommerce connection could not be created")
        self.connection_id = found

    @staticmethod
    def _connection(response: Response, service: str, externalid: str) -> int | None:
        """The id of the connection with this service and externalid in the answer (an answer is
        untrusted: a filter the API ignored must not hand over another integration's connection)."""
        body = response.json()
        if response.status not in (200, 201) or not isinstance(body, dict):
            raise RuntimeError(f"activecampaign connections: HTTP {response.status}: {str(body)[:300]}")
        items = body.get("connections") if "connections" in body else [body.get("connection")]
        if not isinstance(items, list):
            raise BadAnswer("connections is not a list")
        for item in items:
            if (isinstance(item, dict) and str(item.get("id", "")).isdigit()
                    and (item.get("service"), item.get("externalid")) == (service, externalid)):
                return int(item["id"])
        return None

    def wire(self, kind: Kind, records: list[Record]) -> list[dict]:
        if kind.options.get("api") == "graphql":
            return [{"storeRecurringPaymentId": r.key, **r.payload} for r in records]
        if kind.options.get("api") == "bulk_import":
            return [self._bulk_contact(kind, r) for r in records]
        out = []
        for r in records:
            contact = {"email": r.key}
            values = []
            for name, value in r.payload.items():
                if CUSTOM_FIELD.match(name):
                    values.append({"field": name, "value": "" if value is None else _text(value)})
                elif value is not None:
                    contact[name] = value
            if values:
                contact["fieldValues"] = values
            out.append({"contact": contact})
        return out

    @staticmethod
    def _bulk_contact(kind: Kind, r: Record) -> dict:
        ids = kind.options.get("field_ids") or {}
        contact, fields = {"email": r.key}, []
        for name, value in r.payload.items():
            if CUSTOM_FIELD.match(name):
                if name not in ids:
                    raise ValueError(f"activecampaign {kind.name}: bulk_import needs the numeric id of custom "
                                     f"field {name} in options.field_ids")
                fields.append({"id": int(ids[name]), "value": "" if value is None else _text(value)})
            elif value is not None:
                contact[BULK_NAMES.get(name, name)] = value
        if fields:
            contact["fields"] = fields
        return contact

    def build_request(self, kind: Kind, wires: list[dict], records: list[Record], options: dict) -> Request:
        headers = {"Content-Type": "application/json"}
        if kind.options.get("api") == "bulk_import":  # a one-time import fires no automation
            return Request("POST", "/api/3/import/bulk_import",
                           encode({"contacts": wires, "exclude_automations": True}), headers)
        if kind.options.get("api") == "graphql":
            # the connection id is known only once prepare() ran: the items are made again here
            items = [{"legacyConnectionId": self.connection_id or 0, **w} for w in self.wire(kind, records)]
            body = {"query": MUTATION, "variables": {"recurringPayments": items}}
            return Request("POST", "/api/3/ecom/graphql", encode(body), headers)
        if len(wires) != 1:
            raise ValueError("activecampaign contacts: one contact per contact/sync request (batch.max_records: 1)")
        return Request("POST", "/api/3/contact/sync", encode(wires[0]), headers)

    def read_answer(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        try:
            body = response.json()
        except BadAnswer:
            if response.status < 400:
                raise
            body = None
        retryable = response.status in (401, 403, 408, 409)
        if kind.options.get("api") == "bulk_import":
            if response.status == 200 and isinstance(body, dict) and body.get("queued_contacts") is not None:
                return Answer(job_id=str(body.get("batchId") or "")[:100] or None)
            if response.status < 300:
                raise BadAnswer(f"HTTP {response.status}: no queued_contacts in the bulk_import answer")
            reasons = body.get("failureReasons") if isinstance(body, dict) else None
            reason = "; ".join(map(str, reasons[:5])) if isinstance(reasons, list) and reasons else \
                (body.get("message") if isinstance(body, dict) else None) or f"HTTP {response.status}"
            return Answer(whole=Rejected(str(reason)[:1000], response.status, retryable),
                          split=response.status == 400 and len(records) > 1)
        if kind.options.get("api") != "graphql":
            if response.status in (200, 201) and isinstance(body, dict) and isinstance(body.get("contact"), dict):
                return Answer()
            if response.status < 300:
                raise BadAnswer(f"HTTP {response.status}: no contact in the answer")
            return Answer(whole=Rejected(_errors(body) or f"HTTP {response.status}", response.status, retryable))
        if not isinstance(body, dict):
            if response.status < 300:
                raise BadAnswer("the GraphQL answer is not an object")
            return Answer(whole=Rejected(f"HTTP {response.status}", response.status, retryable))
        errors = body.get("errors")
        if not errors:
            data = body.get("data")
            if response.status == 200 and isinstance(data, dict) and isinstance(data.get("bulkUpsertRecurringPayments"), dict):
                return Answer(job_id=str(data["bulkUpsertRecurringPayments"].get("recordId") or "")[:100] or None)
            if response.status < 300:
                raise BadAnswer("no bulkUpsertRecurringPayments in the answer")
            return Answer(whole=Rejected(f"HTTP {response.status}", response.status, retryable))
        if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
            raise BadAnswer("errors is not a list of objects")
        named = {}
        for error in errors:
            extensions = error.get("extensions") if isinstance(error.get("extensions"), dict) else {}
            for key, messages in extensions.items():
                match = NAMED.search(str(key))
                if match:
                    named[match.group(1)] = "; ".join(map(str, messages if isinstance(messages, list) else [messages]))
        message = "; ".join(str(e.get("message"))[:200] for e in errors[:3])
        mine = {r.key for r in records}
        if len(records) == 1 and records[0].key in named:
            return Answer(whole=Rejected(f"{message}: {named[records[0].key]}"[:1000], response.status, False))
        if named and not set(named) <= mine:
            raise BadAnswer(f"validation errors name subscriptions not in the batch: {sorted(set(named) - mine)[:5]}")
        # The whole mutation failed because of some of them (or it was too big): split and resend.
        return Answer(whole=Rejected(message[:1000] or f"HTTP {response.status}", response.status, retryable),
                      split=len(records) > 1)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _errors(body) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        parts = [": ".join(str(e.get(k)) for k in ("title", "detail") if isinstance(e, dict) and e.get(k))
                 for e in body["errors"][:5]]
        return "; ".join(p for p in parts if p) or None
    return None


ADAPTER = ActiveCampaign
