"""Klaviyo (JSON:API): profiles through bulk import jobs, events through bulk event jobs.

- Auth `Authorization: Klaviyo-API-Key <private key>`, `revision: <YYYY-MM-DD>` (the mapping's
  `options.revision`), content type application/vnd.api+json.
- Profiles (object kinds): `POST /api/profile-bulk-import-jobs/` with up to 10,000 profiles; the
  identity fields (`options.identity_fields`, default email and external_id) are always sent, the
  other standard attributes (`options.attributes`) at the top, the rest under `properties`; on an
  update only what changed. 202 gives a job, polled at `/api/profile-bulk-import-jobs/{id}/` until
  `complete`; its `failed_count` rows are read at `/import-errors/` and rejected by their email /
  external_id; a `cancelled` job rejects its batch (retryable).
- Events (event kinds): `POST /api/event-bulk-create-jobs/`, one entry per profile with its
  events; the record key is the event's `unique_id` (Klaviyo records the first only, so resending is
  harmless: these kinds are idempotent); `backfill: true` on historical events (the engine's
  backfill); fields named in `options.event_attributes` (value, value_currency) go to the event
  itself, the rest to its properties. 202 with an empty body accepts the whole job.
- A 400 refuses the whole request; its errors' `source.pointer` name the offending rows (a bad
  email): those are rejected and the rest sent again (the engine's split); without pointers the
  batch is split in halves until the bad rows are isolated.
- Rate headers `RateLimit-Limit/Remaining/Reset` (Reset in seconds from now).
"""

from __future__ import annotations

import re

from recurly_elt.destinations.adapter import (Adapter, Answer, BadAnswer, Job, RateHeaders, Rejected, Request,
                                              Response)
from recurly_elt.destinations.mapping import Kind
from recurly_elt.destinations.records import Record, encode

JSONAPI = "application/vnd.api+json"
PROFILE_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)(/|$)")
EVENT_POINTER = re.compile(r"^/data/attributes/events-bulk-create/data/(\d+)(/|$)")
JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
STANDARD = ("email", "phone_number", "external_id", "first_name", "last_name", "organization", "title", "locale")


class Klaviyo(Adapter):
    name = "klaviyo"
    rate_headers = RateHeaders("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", reset_is_delta=True)

    def auth_headers(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Klaviyo-API-Key {secret}", "revision": self.mapping.options.get("revision", "2026-07-15"),
                "Accept": JSONAPI}

    def idempotent(self, kind: Kind) -> bool:
        return True  # profiles are upserts; events carry unique_id, recorded once

    def envelope_bytes(self, kind: Kind) -> int:
        return 256

    # -- profiles ---------------------------------------------------------------------------------
    def _identity_fields(self) -> tuple[str, ...]:
        return tuple(self.mapping.options.get("identity_fields", ("email", "external_id")))

    def _profile(self, kind: Kind, r: Record) -> dict:
        values = r.changed if r.changed is not None else r.payload
        values = {**{k: r.payload.get(k) for k in self._identity_fields()}, **values}
        attributes = {k: v for k, v in values.items() if k in STANDARD}
        properties = {k: v for k, v in values.items() if k not in STANDARD}
        if properties:
            attributes["properties"] = properties
        return {"type": "profile", "attributes": attributes}

    # -- events -----------------------------------------------------------------------------------
    def _entries(self, kind: Kind, records: list[Record]) -> list[tuple[dict, list[int]]]:
        """One entry per (profile, backfill) in first-appearance order, with the record indices."""
        moved = tuple(self.mapping.options.get("event_attributes", ("value", "value_currency")))
        entries: dict[tuple, tuple[dict, list[int]]] = {}
        for i, r in enumerate(records):
            who = {k: v for k, v in r.identity.items() if v is not None}
            key = (encode(who), r.backfill)
            if key not in entries:
                attrs = {"profile": {"data": {"type": "profile", "attributes": who}}, "events": {"data": []}}
                if r.backfill:
                    attrs["backfill"] = True
                entries[key] = ({"type": "event-bulk-create", "attributes": attrs}, [])
            event = {"properties": {k: v for k, v in r.payload.items() if k not in moved and v is not None},
                     "metric": {"data": {"type": "metric", "attributes": {"name": r.name}}},
                     "time": r.time_text, "unique_id": r.key}
            event.update({k: r.payload[k] for k in moved if r.payload.get(k) is not None})
            entry, indices = entries[key]
            entry["attributes"]["events"]["data"].append({"type": "event", "attributes": event})
            indices.append(i)
        return list(entries.values())

    # -- the interface ----------------------------------------------------------------------------
    def wire(self, kind: Kind, records: list[Record]) -> list[dict]:
        if kind.is_event:
            return [entry for entry, _ in self._entries(kind, records)]
        return [self._profile(kind, r) for r in records]

    def build_request(self, kind: Kind, wires: list[dict], records: list[Record], options: dict) -> Request:
        headers = {"Content-Type": JSONAPI}  # wires: the entries / profiles wire() made, encoded once
        if kind.is_event:
            body = {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": wires}}}}
            return Request("POST", "/api/event-bulk-create-jobs/", encode(body), headers)
        body = {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": wires}}}}
        return Request("POST", "/api/profile-bulk-import-jobs/", encode(body), headers)

    def read_answer(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        if response.status == 202:
            if kind.is_event:
                return Answer()
            job_id = self._job_id(response.json())
            return Answer(job=self._poll(job_id, 0), job_id=job_id)
        return self._refusal(kind, records, response)

    def read_job(self, kind: Kind, records: list[Record], job: Job, response: Response) -> Answer:
        job_id, polls, phase = job.state
        if response.status != 200:
            if response.status == 404:
                return Answer(whole=Rejected(f"import job {job_id} vanished (404)", 404, True), job_id=job_id)
            raise BadAnswer(f"HTTP {response.status} reading import job {job_id}")
        body = response.json()
        if phase == "errors":
            return Answer(rejected=self._import_errors(records, body), job_id=job_id)
        try:
            attributes = body["data"]["attributes"]
            status, failed = attributes["status"], attributes.get("failed_count") or 0
        except (KeyError, TypeError):
            raise BadAnswer(f"import job {job_id}: no status in the answer") from None
        if status in ("queued", "processing"):
            return Answer(job=self._poll(job_id, polls + 1), job_id=job_id)
        if status == "cancelled":
            return Answer(whole=Rejected(f"import job {job_id} was cancelled", 200, True), job_id=job_id)
        if status != "complete":
            raise BadAnswer(f"import job {job_id}: unknown status {str(status)[:40]!r}")
        if not isinstance(failed, int) or failed < 0:
            raise BadAnswer(f"import job {job_id}: failed_count {failed!r}")
        if failed:
            request = Request("GET", f"/api/profile-bulk-import-jobs/{job_id}/import-errors/?page[size]=100")
            return Answer(job=Job(request, (job_id, polls, "errors"), wait=0.0), job_id=job_id)
        return Answer(job_id=job_id)

    # -- reading answers --------------------------------------------------------------------------
    def _poll(self, job_id: str, polls: int) -> Job:
        wait = min(5.0, 0.05 * 2 ** polls) * float(self.mapping.options.get("poll_scale", 1.0))
        return Job(Request("GET", f"/api/profile-bulk-import-jobs/{job_id}/"), (job_id, polls, "status"), wait)

    @staticmethod
    def _job_id(body) -> str:
        try:
            job_id = body["data"]["id"]
        except (KeyError, TypeError):
            raise BadAnswer("a 202 without the job's id") from None
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise BadAnswer(f"an import job id that is not an id: {str(job_id)[:40]!r}")
        return job_id

    def _import_errors(self, records: list[Record], body) -> list[Rejected]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise BadAnswer("import errors: no data list")
        by_identity = {}
        for i, r in enumerate(records):
            for name in self._identity_fields():
                if r.payload.get(name):
                    by_identity.setdefault((name, str(r.payload[name])), i)
        out = []
        for item in body["data"]:
            attrs = (item or {}).get("attributes") or {}
            original = attrs.get("original_payload") or {}
            index = next((by_identity[(n, str(original[n]))] for n in self._identity_fields()
                          if original.get(n) and (n, str(original[n])) in by_identity), None)
            if index is None:
                continue  # an error about a row this batch did not send
            out.append(Rejected(f"{attrs.get('title', 'import error')}: {attrs.get('detail', '')}"[:1000], 200, False, index))
        return out

    def _refusal(self, kind: Kind, records: list[Record], response: Response) -> Answer:
        body = response.json()
        errors = body.get("errors") if isinstance(body, dict) else None
        if not isinstance(errors, list):
            raise BadAnswer(f"HTTP {response.status} without JSON:API errors")
        details = "; ".join(str((e or {}).get("detail") or (e or {}).get("title") or e)[:200] for e in errors[:3])
        retryable = response.status in (401, 403)
        if response.status != 400:
            return Answer(whole=Rejected(details or f"HTTP {response.status}", response.status, retryable))
        indices: dict[int, str] = {}
        entries = self._entries(kind, records) if kind.is_event else []
        for e in errors:
            pointer = (((e or {}).get("source") or {}).get("pointer")) or ""
            match = (EVENT_POINTER if kind.is_event else PROFILE_POINTER).match(pointer)
            if not match:
                continue
            position = int(match.group(1))
            if kind.is_event:
                targets = entries[position][1] if position < len(entries) else []
            else:
                targets = [position] if position < len(records) else []
            for i in targets:
                indices.setdefault(i, str(e.get("detail") or e.get("title"))[:1000])
        rejected = [Rejected(reason, 400, False, i) for i, reason in sorted(indices.items())]
        return Answer(whole=Rejected(details, 400, False), split=True, rejected=rejected)


ADAPTER = Klaviyo
