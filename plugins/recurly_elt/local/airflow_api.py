"""Airflow's public REST API (/api/v2) for `make run`: pause and unpause DAGs, find and cancel
backfills, as the UI does, instead of writing the metadata database.

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


class AirflowApiError(RuntimeError):
    """An API call failed: the message has the method, path, status and Airflow's detail."""


def password_from_file(passwords_file: Path, user: str) -> str:
    """The simple auth manager's generated password of `user`."""
    try:
        return json.loads(Path(passwords_file).read_text())[user]
    except (OSError, ValueError, KeyError):
        raise AirflowApiError(f"no password for {user!r} in {passwords_file} (has the API server started?)") from None


def login(http: Any, base_url: str, user: str, password: str) -> str:
    """A JWT for user/password from the simple auth manager's login endpoint."""
    response = http.request("POST", f"{base_url}/auth/token", json={"username": user, "password": password},
                            timeout=30)
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
        response = self.http.request(method, f"{self.base_url}/api/v2{path}", timeout=60,
                                     headers={"Authorization": f"Bearer {self._cached}"}, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            raise AirflowApiError(f"{method} /api/v2{path}: HTTP {response.status_code}: {detail}")
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
        return latest["id"], _time(latest["from_date"]), _time(latest["to_date"])

    def latest_backfill_id(self, dag_id: str) -> int | None:
        return max((b["id"] for b in self.backfills(dag_id)), default=None)

    def cancel_backfill(self, backfill_id: int) -> None:
        """What the UI's cancel does: no new runs, queued runs failed, the backfill completed."""
        self.call("PUT", f"/backfills/{backfill_id}/cancel")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
