"""What `make run` prints at the end besides the run table (recurly_elt/run_table.py): the runs
and failed tasks read from Airflow's REST API, the log tail of any failed task, and how to log in
to the UI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from recurly_elt.local.airflow_api import api_time
from recurly_elt.run_table import RunRow

if TYPE_CHECKING:
    from recurly_elt.local.airflow_api import AirflowApi


# --- task logs -------------------------------------------------------------------------------------


def _render_log_line(line: str) -> str:
    """Airflow 3 task logs are JSON lines; show them as `time level message` (+ the exception)."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    text = f"{record.get('timestamp', '')} {str(record.get('level', '')).upper():7} {record.get('event', '')}"
    for error in record.get("error_detail") or []:
        if isinstance(error, dict):
            text += f"\n    {error.get('exc_type', '')}: {error.get('exc_value', '')}"
    return text.strip()


def render_log_tail(path: Path, lines: int = 25) -> str:
    try:
        raw = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(log not found: {path})"
    return "\n".join(_render_log_line(line) for line in raw[-lines:])


def task_log_path(logs_folder: Path, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> Path:
    """Airflow 3's default log file name template."""
    folder = Path(logs_folder) / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    if map_index >= 0:
        folder = folder / f"map_index={map_index}"
    return folder / f"attempt={try_number}.log"


# --- Airflow's REST API (local/airflow_api.py) -----------------------------------------------------


def collect_runs(api: "AirflowApi", dag_id: str, from_date: datetime, to_date: datetime) -> list[RunRow]:
    """The DAG's runs whose logical date lies in [from_date, to_date], oldest first."""
    return [
        RunRow(
            run_id=r["dag_run_id"],
            interval_start=api_time(r.get("data_interval_start")),
            interval_end=api_time(r.get("data_interval_end")),
            state=str(r["state"]),
            started=api_time(r.get("start_date")),
            ended=api_time(r.get("end_date")),
        )
        for r in api.dag_runs(dag_id, from_date=from_date, to_date=to_date)
    ]


@dataclass(frozen=True)
class FailedTask:
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: str
    log_file: Path

    @property
    def label(self) -> str:
        return f"{self.task_id}[{self.map_index}]" if self.map_index >= 0 else self.task_id


def failed_tasks(api: "AirflowApi", dag_id: str, run_ids: Sequence[str], logs_folder: Path) -> list[FailedTask]:
    rows = api.task_instances(dag_id, list(run_ids), states=["failed", "upstream_failed"])
    return [
        FailedTask(
            run_id=r["dag_run_id"],
            task_id=r["task_id"],
            map_index=r["map_index"],
            try_number=r["try_number"],
            state=str(r["state"]),
            log_file=task_log_path(logs_folder, dag_id, r["dag_run_id"], r["task_id"], r["map_index"], r["try_number"]),
        )
        for r in sorted(rows, key=lambda r: (r["dag_run_id"], r["task_id"], r["map_index"]))
    ]


def login_lines(ui_url: str, user: str, passwords_file: Path) -> list[str]:
    """How to open the UI; the password is the one the simple auth manager generated locally."""
    try:
        password = json.loads(Path(passwords_file).read_text()).get(user)
    except (OSError, ValueError):
        password = None
    shown = password if password else f"(see {passwords_file})"
    from recurly_elt.ui.plugin import EXTERNAL_VIEWS

    pages = [v for v in EXTERNAL_VIEWS if v["destination"] == "nav"]
    return [f"Airflow UI: {ui_url}", f"  login: {user} / {shown}",
            f"Recurly pages (plugin recurly): {ui_url}/plugin/{pages[0]['url_route']}",
            "  " + ", ".join(f"{v['name']}: {ui_url}/plugin/{v['url_route']}" for v in pages[1:]),
            "  and on each DAG run's page, the tab \"Sync summary\""]
