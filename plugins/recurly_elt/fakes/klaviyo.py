"""An offline Klaviyo (JSON:API), validated against ../shared/reference/contracts/klaviyo-openapi-2026-07-15.json.

  POST /api/event-bulk-create-jobs/               202, empty body; up to 1,000 events, 5 MB
  POST /api/profile-bulk-import-jobs/             202 with the job; up to 10,000 profiles, 5 MB
  GET  /api/profile-bulk-import-jobs/{id}/        the job: queued -> processing -> complete
  GET  /api/profile-bulk-import-jobs/{id}/import-errors/   rows that failed inside a job

Checked on every request: `Authorization: Klaviyo-API-Key <key>` (401), the `revision` header
(present, a date from 2023-01-01 to today; openapi-core would fill it in from the spec's default,
so the fake checks it itself; `backfill` needs 2026-04-15 or later), the body against the spec
(openapi-core), then Klaviyo's own rules, each refusing the whole request with JSON:API errors
whose `source.pointer` names the offending value (nothing of it is applied):
  - an invalid email (and, under `--reject SHARE`, emails whose draw falls under the share);
  - a `unique_id` repeated for the same profile and metric inside one events job;
  - an event time before 1990 or more than a year ahead.
A unique_id already recorded for that profile and metric is ignored (counted, not stored twice).
Profiles over 100 KB fail inside their job and are listed at /import-errors.
Rate headers RateLimit-Limit/Remaining/Reset (Reset in seconds from now); 429 with Retry-After.
State: profiles keyed by external_id (else email) with their attributes and properties, every
event recorded, the duplicates ignored, and each import job.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone

from recurly_elt.fakes.contracts import KLAVIYO, contract_path, klaviyo_openapi
from recurly_elt.fakes.http import App, Reply, json_reply
from recurly_elt.fakes.rejects import chosen

JSONAPI = "application/vnd.api+json"
MAX_BYTES = 5_000_000
MAX_EVENTS = 1_000
MAX_PROFILES = 10_000
MAX_PROFILE_BYTES = 100_000
BACKFILL_REVISION = "2026-04-15"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HOST = "https://a.klaviyo.com"
STANDARD = ("email", "phone_number", "external_id", "first_name", "last_name", "organization", "title", "locale")


def _error(status: int, code: str, detail: str, pointer: str = "/data/") -> dict:
    return {"id": str(uuid.uuid4()), "status": status, "code": code, "title": detail.split(":")[0][:80],
            "detail": detail, "source": {"pointer": pointer}}


class KlaviyoApp(App):
    name = "klaviyo"

    def __init__(self, api_key: str, seed: int = 42, reject: float = 0.0, polls_to_complete: int = 2,
                 pointers: bool = True):
        super().__init__(api_key, seed, reject)
        self.pointers = pointers  # False: errors without source.pointer (clients must split to find the rows)
        self.openapi = klaviyo_openapi()
        self.polls_to_complete = polls_to_complete
        self.reset()

    def reset(self) -> None:
        self.profiles: dict[str, dict] = {}
        self.events: list[dict] = []
        self.unique_ids: set[tuple] = set()
        self.ignored_duplicates = 0
        self.jobs: dict[str, dict] = {}
        self.received = Counter()
        self.imports: Counter[str] = Counter()  # profiles accepted per profile key

    # -- the shared HTTP side ---------------------------------------------------------------------
    def authenticate(self, headers) -> Reply | None:
        scheme, _, key = (headers.get("Authorization") or "").partition(" ")
        if scheme != "Klaviyo-API-Key" or key.strip() != self.api_key:
            return self._errors(401, [_error(401, "not_authenticated", "Missing or invalid private key.")])
        return None

    def rate_headers(self, decision) -> dict[str, str]:
        import time

        limit = decision.limit if decision.limit else 1_000_000
        return {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(decision.remaining, 0)),
                "RateLimit-Reset": str(max(0, decision.reset - int(time.time())))}

    def error(self, status: int, message: str) -> Reply:
        code = "throttled" if status == 429 else "error"
        return self._errors(status, [_error(status, code, message)])

    def _errors(self, status: int, errors: list[dict]) -> Reply:
        if not self.pointers:
            errors = [{k: v for k, v in e.items() if k != "source"} for e in errors]
        return json_reply(status, {"errors": errors}, content_type=JSONAPI)

    # -- routing ----------------------------------------------------------------------------------
    def handle(self, method, path, query, headers, body) -> Reply:
        path = path.rstrip("/")
        revision = headers.get("revision")
        problem = self._revision_problem(revision)
        if problem:
            return self._errors(400, [_error(400, "invalid", problem, "/headers/revision")])
        if len(body) > MAX_BYTES:
            return self._errors(413, [_error(413, "payload_too_large", "Request body exceeds 5 MB.")])
        invalid = self._against_contract(method, path, query, headers, body)
        if invalid:
            return invalid
        try:
            if (method, path) == ("POST", "/api/event-bulk-create-jobs"):
                return self._events(json.loads(body), revision)
            if (method, path) == ("POST", "/api/profile-bulk-import-jobs"):
                return self._import(json.loads(body))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # without the contract
            return self._errors(400, [_error(400, "invalid", f"Invalid input: {type(exc).__name__} {exc}"[:300])])
        parts = path.split("/")
        if method == "GET" and len(parts) in (4, 5) and parts[:3] == ["", "api", "profile-bulk-import-jobs"]:
            job = self.jobs.get(parts[3]) if JOB_ID.match(parts[3]) else None
            if job is None:
                return self._errors(404, [_error(404, "not_found", f"No job {parts[3][:64]!r}.")])
            if len(parts) == 4:
                return self._job(job)
            if parts[4] == "import-errors":
                return json_reply(200, {"data": job["errors"], "links": {"self": f"{HOST}{path}/", "next": None}},
                                  content_type=JSONAPI)
        return self._errors(404, [_error(404, "not_found", f"No endpoint {method} {path}.")])

    @staticmethod
    def _revision_problem(revision: str | None) -> str | None:
        if not revision:
            return "Missing revision header: send revision: YYYY-MM-DD."
        try:
            day = date.fromisoformat(revision.split(".")[0])
        except ValueError:
            return f"Invalid revision {revision[:40]!r}: expected YYYY-MM-DD."
        if not date(2023, 1, 1) <= day <= datetime.now(timezone.utc).date():
            return f"Unknown revision {revision[:40]!r}."
        return None

    def _against_contract(self, method, path, query, headers, body) -> Reply | None:
        if self.openapi is None:
            return None
        from openapi_core.testing import MockRequest

        request = MockRequest(HOST, method.lower(), path, headers=dict(headers.items()), args=query,
                              data=body.decode("utf-8", "replace") if body else None,
                              content_type=(headers.get("Content-Type") or JSONAPI).split(";")[0])
        try:
            self.openapi.validate_request(request)
        except Exception as exc:  # openapi-core's validation errors: refuse, naming the problem
            cause = exc.__cause__
            details = [getattr(e, "message", str(e)) for e in getattr(cause, "schema_errors", [])][:10]
            if not details:
                details = [str(exc)[:300]]
            if "not found" in str(exc).lower() and "path" in type(exc).__name__.lower():
                return self._errors(404, [_error(404, "not_found", f"No endpoint {method} {path}.")])
            return self._errors(400, [_error(400, "invalid", f"Invalid input: {d[:300]}") for d in details])
        return None

    # -- rules ------------------------------------------------------------------------------------
    def _email_problem(self, email) -> str | None:
        if email is None:
            return None
        if not isinstance(email, str) or not EMAIL.match(email) or chosen(self.seed, self.reject, email):
            return f"Invalid email address {str(email)[:80]!r}."
        return None

    @staticmethod
    def _profile_key(attrs: dict) -> str | None:
        return attrs.get("external_id") or attrs.get("email") or attrs.get("phone_number")

    def _upsert_profile(self, attrs: dict) -> str:
        key = self._profile_key(attrs)
        profile = self.profiles.setdefault(key, {"properties": {}})
        for name in STANDARD:
            if name in attrs:
                if attrs[name] is None:
                    profile.pop(name, None)
                else:
                    profile[name] = attrs[name]
        for name, value in (attrs.get("properties") or {}).items():
            if value is None:
                profile["properties"].pop(name, None)
            else:
                profile["properties"][name] = value
        return key

    def _events(self, doc: dict, revision: str) -> Reply:
        entries = doc["data"]["attributes"]["events-bulk-create"]["data"]
        total = sum(len(e["attributes"]["events"]["data"]) for e in entries)
        if total > MAX_EVENTS:
            return self._errors(400, [_error(400, "invalid", f"At most {MAX_EVENTS} events per job; got {total}.",
                                             "/data/attributes/events-bulk-create/data")])
        errors, seen = [], set()
        now = datetime.now(timezone.utc)
        for i, entry in enumerate(entries):
            attrs = entry["attributes"]
            base = f"/data/attributes/events-bulk-create/data/{i}/attributes"
            who = attrs["profile"]["data"]["attributes"]
            problem = self._email_problem(who.get("email"))
            if problem:
                errors.append(_error(400, "invalid", problem, f"{base}/profile/data/attributes/email"))
            if self._profile_key(who) is None:
                errors.append(_error(400, "invalid", "A profile needs an email, phone_number or external_id.",
                                     f"{base}/profile/data/attributes"))
            if attrs.get("backfill") and revision.split(".")[0] < BACKFILL_REVISION:
                errors.append(_error(400, "invalid", f"backfill needs revision {BACKFILL_REVISION} or later.",
                                     f"{base}/backfill"))
            for j, event in enumerate(attrs["events"]["data"]):
                ev = event["attributes"]
                metric = ev["metric"]["data"]["attributes"].get("name")
                key = (self._profile_key(who), metric, ev.get("unique_id"))
                if ev.get("unique_id") is not None:
                    if key in seen:
                        errors.append(_error(400, "duplicate_unique_id", "unique_id repeated for the same profile "
                                             "and metric in one job.", f"{base}/events/data/{j}/attributes/unique_id"))
                    seen.add(key)
                when = ev.get("time")
                if when is not None:
                    at = datetime.fromisoformat(when.replace("Z", "+00:00"))
                    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
                    if at.year < 1990 or at > now + timedelta(days=365):
                        errors.append(_error(400, "invalid", "time must be after 1990 and at most a year ahead.",
                                             f"{base}/events/data/{j}/attributes/time"))
        self.received.update(event_jobs=1, events=total)
        if errors:
            return self._errors(400, errors)
        for entry in entries:
            attrs = entry["attributes"]
            key = self._upsert_profile(attrs["profile"]["data"]["attributes"])
            for event in attrs["events"]["data"]:
                ev = event["attributes"]
                metric = ev["metric"]["data"]["attributes"]["name"]
                uid = ev.get("unique_id") or f"{key}|{metric}|{(ev.get('time') or '')[:19]}"  # Klaviyo: the second
                if (key, metric, uid) in self.unique_ids:
                    self.ignored_duplicates += 1
                    continue
                self.unique_ids.add((key, metric, uid))
                self.events.append({"profile": key, "metric": metric, "time": ev.get("time"), "unique_id": uid,
                                    "value": ev.get("value"), "value_currency": ev.get("value_currency"),
                                    "properties": ev.get("properties") or {}, "backfill": bool(attrs.get("backfill"))})
        return Reply(202)

    def _import(self, doc: dict) -> Reply:
        profiles = doc["data"]["attributes"]["profiles"]["data"]
        if len(profiles) > MAX_PROFILES:
            return self._errors(400, [_error(400, "invalid", f"At most {MAX_PROFILES} profiles per job.",
                                             "/data/attributes/profiles/data")])
        errors = []
        for i, p in enumerate(profiles):
            problem = self._email_problem(p["attributes"].get("email"))
            if problem:
                errors.append(_error(400, "invalid", problem, f"/data/attributes/profiles/data/{i}/attributes/email"))
        self.received.update(profile_jobs=1, profiles=len(profiles))
        if errors:  # Klaviyo validates the whole request at once: one bad email refuses it all
            return self._errors(400, errors)
        job_id = uuid.uuid4().hex
        failed = []
        for i, p in enumerate(profiles):
            if len(json.dumps(p)) > MAX_PROFILE_BYTES:
                failed.append({"type": "import-error", "id": str(uuid.uuid4()), "attributes": {
                    "code": "invalid", "title": "Profile too large", "detail": "A profile is at most 100 KB.",
                    "source": {"pointer": f"/data/attributes/profiles/data/{i}"},
                    "original_payload": {k: p["attributes"].get(k) for k in ("email", "external_id")}}})
                continue
            self.imports[self._upsert_profile(p["attributes"])] += 1
        created = datetime.now(timezone.utc).isoformat()
        self.jobs[job_id] = {"id": job_id, "created_at": created, "total": len(profiles), "failed": len(failed),
                             "errors": failed, "polls": 0}
        return self._job(self.jobs[job_id], status=202, poll=False)

    def _job(self, job: dict, status: int = 200, poll: bool = True) -> Reply:
        if poll:
            job["polls"] += 1
        done = job["polls"] >= self.polls_to_complete
        state = "complete" if done else ("processing" if job["polls"] else "queued")
        now = datetime.now(timezone.utc).isoformat()
        attributes = {"status": state, "created_at": job["created_at"], "total_count": job["total"],
                      "completed_count": job["total"] - job["failed"] if done else 0,
                      "failed_count": job["failed"] if done else 0, "completed_at": now if done else None,
                      "expires_at": None, "started_at": job["created_at"] if job["polls"] else None}
        return json_reply(status, {"data": {"type": "profile-bulk-import-job", "id": job["id"], "attributes": attributes,
                                            "links": {"self": f"{HOST}/api/profile-bulk-import-jobs/{job['id']}/"}}},
                          content_type=JSONAPI)

    def state(self) -> dict:
        return {"api": "klaviyo", "contract": str(contract_path(KLAVIYO)) if self.openapi else None,
                "profiles": self.profiles, "events": self.events, "ignored_duplicates": self.ignored_duplicates,
                "profile_imports": sum(self.imports.values()),
                "jobs": {k: {kk: v for kk, v in j.items() if kk != "errors"} for k, j in self.jobs.items()},
                "received": dict(self.received)}
