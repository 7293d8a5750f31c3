"""Run history for the UI: extraction per run, site and resource; freshness; transform runs;
data-quality checks; quarantined rows; deliveries (once the load stage has written its ledger).

Tables of other stages are read only when they exist, and those still taking shape (the load
ledger, extraction quarantine) are read as they are: all their columns, newest first, so a column
added later shows without a change here.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from recurly_elt.ui.warehouse import Reader

RUNS_SHOWN = 20
ROWS_SHOWN = 200

EXTRACT_COLUMNS = ("run_id", "site", "resource", "mode", "window_start", "window_end", "status", "attempts",
                   "pages", "records", "inserted", "updated", "unchanged", "requests", "status_429", "retries",
                   "seconds", "started_at", "finished_at", "error")
# Tables read as they are, newest first by the first of these columns they have.
NEWEST_FIRST = ("finished_at", "last_seen_at", "recorded_at", "seen_at", "last_seen", "started_at")


def _columns(r: Reader, table: str) -> list[str]:
    return [c["name"] for c in sa.inspect(r.conn).get_columns(table)]


def latest_rows(r: Reader, table: str, limit: int = ROWS_SHOWN, where: str = "", **params: Any) -> dict[str, Any]:
    """A table as it is (any columns), newest first; {"available": False} when it does not exist."""
    if not r.has(table):
        return {"available": False, "table": table, "columns": [], "rows": [], "count": 0}
    columns = _columns(r, table)
    order = next((c for c in NEWEST_FIRST if c in columns), columns[0])
    condition = f"WHERE {where}" if where else ""
    rows = r.rows(f"SELECT * FROM {table} {condition} ORDER BY {order} DESC LIMIT :limit", limit=limit, **params)
    count = r.scalar(f"SELECT COUNT(*) FROM {table} {condition}", **params)
    return {"available": True, "table": table, "columns": columns, "rows": rows, "count": int(count or 0)}


def recent_run_ids(r: Reader, limit: int = RUNS_SHOWN) -> list[str]:
    if not r.has("extract_run_log"):
        return []
    return [row["run_id"] for row in r.rows("""
        SELECT run_id FROM extract_run_log GROUP BY run_id ORDER BY MAX(started_at) DESC LIMIT :limit""",
                                            limit=limit)]


def extraction(r: Reader, run_ids: list[str]) -> dict[str, Any]:
    """Per run, site and resource: window, records, requests, 429s, retries, seconds, errors."""
    if not r.has("extract_run_log"):
        return {"available": False, "rows": [], "runs": []}
    params: dict[str, Any] = {}
    rows = r.rows(f"""
        SELECT {', '.join(EXTRACT_COLUMNS)} FROM extract_run_log
        WHERE {r.in_list('run_id', 'run', run_ids, params)}""", **params)
    newest_first = {run_id: i for i, run_id in enumerate(run_ids)}
    rows.sort(key=lambda row: (newest_first[row["run_id"]], row["site"], row["resource"]))
    runs: dict[str, dict[str, Any]] = {}
    for row in rows:
        run = runs.setdefault(row["run_id"], {"run_id": row["run_id"], "records": {}, "seconds": 0.0,
                                               "requests": 0, "status_429": 0, "failed": 0})
        run["records"][row["resource"]] = run["records"].get(row["resource"], 0) + int(row["records"] or 0)
        run["seconds"] = max(run["seconds"], float(row["seconds"] or 0.0))
        run["requests"] += int(row["requests"] or 0)
        run["status_429"] += int(row["status_429"] or 0)
        run["failed"] += row["status"] == "failed"
    return {"available": True, "rows": rows, "runs": list(runs.values())}


def freshness(r: Reader) -> dict[str, Any]:
    """Per site and resource: the end of the latest complete window, the newest record staged, and
    the latest successful read."""
    if not r.has("extract_watermarks"):
        return {"available": False, "rows": []}
    last_ok = "NULL"
    if r.has("extract_run_log"):
        last_ok = ("(SELECT MAX(l.finished_at) FROM extract_run_log l WHERE l.site = w.site "
                   "AND l.resource = w.resource AND l.status = 'success')")
    rows = r.rows(f"""
        SELECT w.site, w.resource, w.window_end, w.max_updated_at, w.run_id, {last_ok} AS last_success
        FROM extract_watermarks w ORDER BY w.site, w.resource""")
    return {"available": True, "rows": rows}


def transform_runs(r: Reader, limit: int = ROWS_SHOWN, run_id: str | None = None) -> dict[str, Any]:
    if not r.has("transform_run_log"):
        return {"available": False, "rows": []}
    where, params = ("WHERE run_id = :run_id", {"run_id": run_id}) if run_id else ("", {})
    rows = r.rows(f"""
        SELECT run_id, site, window_start, window_end, rows_in, rows_out, quarantined, seconds, finished_at
        FROM transform_run_log {where} ORDER BY finished_at DESC, site LIMIT :limit""", limit=limit, **params)
    return {"available": True, "rows": rows}


def check_results(r: Reader, limit: int = ROWS_SHOWN, run_id: str | None = None) -> dict[str, Any]:
    """Data-quality check results over time (the check task's log, transform_check_log)."""
    if not r.has("transform_check_log"):
        return {"available": False, "rows": [], "checks": []}
    where, params = ("WHERE run_id = :run_id", {"run_id": run_id}) if run_id else ("", {})
    rows = r.rows(f"""
        SELECT run_id, check_name, status, offending_rows, checked_rows, checked_at, description
        FROM transform_check_log {where} ORDER BY checked_at DESC, check_name LIMIT :limit""",
                  limit=limit, **params)
    return {"available": True, "rows": rows, "checks": sorted({row["check_name"] for row in rows})}


def quarantine(r: Reader, limit: int = ROWS_SHOWN) -> dict[str, Any]:
    """Rows set aside, with reasons: the transform's quarantine and the extraction's (when it exists)."""
    out: dict[str, Any] = {"transform": {"available": False, "rows": [], "reasons": []},
                           "extract": latest_rows(r, "extract_quarantine", limit)}
    if r.has("transform_quarantine"):
        out["transform"] = {
            "available": True,
            "rows": r.rows("""SELECT site, stage, object_id, reason, recorded_at FROM transform_quarantine
                              ORDER BY recorded_at DESC, site, stage, object_id LIMIT :limit""", limit=limit),
            "reasons": r.rows("""SELECT site, stage, reason, COUNT(*) AS rows_quarantined FROM transform_quarantine
                                 GROUP BY site, stage, reason ORDER BY COUNT(*) DESC, site, stage, reason"""),
        }
    return out


def deliveries(r: Reader, limit: int = ROWS_SHOWN, run_id: str | None = None) -> dict[str, Any]:
    """The load ledger as it is: runs per destination, rejections with reasons, dry-run previews."""
    where, params = ("run_id = :run_id", {"run_id": run_id}) if run_id else ("", {})
    runs = latest_rows(r, "load_run_log", limit, where, **params)
    previews = []
    for row in runs["rows"]:
        if row.get("dry_run") and row.get("sample"):
            previews.append({"destination": row.get("destination"), "run_id": row.get("run_id"),
                             "sample": _pretty_json(row["sample"])})
    return {"available": runs["available"], "runs": runs,
            "rejections": latest_rows(r, "load_rejections", limit, where, **params),
            "previews": previews}


def _pretty_json(text: Any) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(text)


def run_summary(r: Reader, run_id: str) -> dict[str, Any]:
    """Everything the warehouse recorded for one DAG run (the Sync summary tab)."""
    return {
        "run_id": run_id,
        "extraction": extraction(r, [run_id]),
        "transform": transform_runs(r, run_id=run_id),
        "checks": check_results(r, run_id=run_id),
        "deliveries": deliveries(r, run_id=run_id),
    }
