"""Airflow's public REST API (/api/v2) for `make run`: pause and unpause DAGs, find and cancel
backfills, read runs, task instances, parse state and import errors, as the UI does. Nothing in
the project reads or writes Airflow's metadata database directly.

A JWT comes from the API server's own login endpoint (`POST /auth/token` of the simple auth
manager) with the generated admin password; it is kept in memory only. `http` is anything with
`requests.Session.request`'s signature (tests pass FastAPI's TestClient of Airflow's own app).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote


class AirflowApiError(RuntimeError):
    """An API call failed: the message has the method, path, status and Airflow's detail."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def password_from_file(passwords_file: Path, user: str) -> str:
    """The simple auth manager's generated password of `user`."""
    try:
        return json.loads(Path(passwords_file).read_text())[user]
    except (OSError, ValueError, KeyError):
        raise AirflowApiError(f"no password for {user!r} in {passwords_file} (has the API server started?)") from None


def login(http: Any, base_url: str, user: str, password: str) -> str:
    """A JWT for user/password from the simple auth manager's login endpoint."""
    try:
        response = http.request("POST", f"{base_url}/auth/token", json={"username": user, "password": password},
                                timeout=30)
    except OSError as exc:
        raise AirflowApiError(f"login at {base_url}: the Airflow API server did not answer "
                              f"({type(exc).__name__}); is it running (`make run`)?") from None
    if response.status_code not in (200, 201):
        raise AirflowApiError(f"login as {user!r} failed: HTTP {response.status_code}")
    return response.json()["access_token"]


@dataclass
class AirflowApi:
    base_url: str
    token: Callable[[], str]
    http: Any = None
    _cached: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.http is None:
            import requests

            self.http = requests.Session()

    @classmethod
    def for_local(cls, base_url: str, user: str, passwords_file: Path) -> "AirflowApi":
        import requests

        http = requests.Session()
        return cls(base_url, lambda: login(http, base_url, user, password_from_file(passwords_file, user)), http)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._cached is None:
            self._cached = self.token()
        try:
            response = self.http.request(method, f"{self.base_url}/api/v2{path}", timeout=60,
                                         headers={"Authorization": f"Bearer {self._cached}"}, **kwargs)
        except OSError as exc:  # requests' ConnectionError and timeouts are OSErrors
            raise AirflowApiError(f"{method} /api/v2{path}: the Airflow API server at {self.base_url} "
                                  f"did not answer ({type(exc).__name__}); is it running (`make run`)?") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            raise AirflowApiError(f"{method} /api/v2{path}: HTTP {response.status_code}: {detail}",
                                  response.status_code)
        return response.json() if response.content else None

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def is_paused(self, dag_id: str) -> bool:
        return bool(self.call("GET", f"/dags/{dag_id}")["is_paused"])

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        return self.call("GET", "/backfills", params={"dag_id": dag_id, "limit": 100})["backfills"]

    def active_backfill(self, dag_id: str) -> tuple[int, datetime, datetime] | None:
        """(id, from_date, to_date) of the DAG's backfill still running (Airflow allows one), or None."""
        running = [b for b in self.backfills(dag_id) if not b.get("completed_at")]
        if not running:
            return None
        latest = max(running, key=lambda b: b["id"])
        return latest["id"], api_time(latest["from_date"]), api_time(latest["to_date"])

    def latest_backfill_id(self, dag_id: str) -> int | None:
        return max((b["id"] for b in self.backfills(dag_id)), default=None)

    def cancel_backfill(self, backfill_id: int) -> None:
        """What the UI's cancel does: no new runs, queued runs failed, the backfill completed."""
        self.call("PUT", f"/backfills/{backfill_id}/cancel")

    def backfill_completed(self, backfill_id: int) -> bool:
        return self.call("GET", f"/backfills/{backfill_id}").get("completed_at") is not None

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        """The DAG as the API knows it (parsed and serialized), or None when it is not (yet) known."""
        try:
            return self.call("GET", f"/dags/{dag_id}")
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise

    def import_errors(self) -> dict[str, str]:
        """{file: stack trace}: what `airflow dags list-import-errors` prints."""
        return {e["filename"]: e["stack_trace"]
                for e in self._pages("GET", "/importErrors", "import_errors", params={})}

    def dag_runs(self, dag_id: str, *, from_date: datetime | None = None, to_date: datetime | None = None,
                 run_ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The DAG's runs whose logical date lies in [from_date, to_date] (both optional), oldest
        first; only those of `run_ids` when given."""
        params: dict[str, Any] = {"order_by": "logical_date"}
        if from_date is not None:
            params["logical_date_gte"] = from_date.isoformat()
        if to_date is not None:
            params["logical_date_lte"] = to_date.isoformat()
        runs = self._pages("GET", f"/dags/{dag_id}/dagRuns", "dag_runs", params=params)
        return runs if run_ids is None else [r for r in runs if r["dag_run_id"] in set(run_ids)]

    def task_instances(self, dag_id: str, run_ids: list[str], states: list[str] | None = None) -> list[dict[str, Any]]:
        """Task instances of those runs (every map index), optionally only in `states`.

        One GET per run: the batch endpoint (`POST .../taskInstances/list`) writes an audit-log row
        per call, a write that competes with the scheduler's on a SQLite metadata database."""
        params: dict[str, Any] = {"state": list(states)} if states is not None else {}
        return [ti for run_id in run_ids
                for ti in self._pages("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                                      "task_instances", params=params)]

    def _pages(self, method: str, path: str, key: str, *, params: dict[str, Any], page: int = 100) -> list[dict[str, Any]]:
        """Every item of a collection endpoint, page by page (offset/limit), until `total_entries`
        are read."""
        items: list[dict[str, Any]] = []
        while True:
            answer = self.call(method, path, params={**params, "offset": len(items), "limit": page})
            batch = list(answer[key])
            items.extend(batch)
            if not batch or len(items) >= answer["total_entries"]:
                return items


def api_time(value: str | None) -> datetime | None:
    """A timestamp of an API answer (ISO 8601, `Z` or an offset), or None."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
