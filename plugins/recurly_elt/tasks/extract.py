"""Extraction task callables and the parse-time facts the DAG files need.

Imported by DAG files at parse time: module level uses the standard library, airflow.sdk and the
resource declarations only; the client, SQLAlchemy and the warehouse are imported when a task runs.

Pools and mapping. An Airflow pool cannot vary between the instances of one mapped task, yet each
Recurly site needs its own pool (its own API budget). So each DAG builds one task group per site at
parse time, and inside it one task mapped over the resources with `pool=recurly_<subdomain>`.
The sites come from the Airflow Variable `recurly_elt_sites` (a JSON list of subdomains): one cheap
read when the file is parsed (served from the environment or the secrets cache, no API call),
instead of opening every Recurly connection at parse time. `check_sites` then fails the run
loudly if the connections name a site that has no group, so no site is ever skipped silently.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from airflow.sdk import Variable, get_current_context

from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.tasks.common import RECURLY_CONN_IDS_VARIABLE, WAREHOUSE_CONN_ID, recurly_conn_ids

log = logging.getLogger(__name__)

SITES_VARIABLE = "recurly_elt_sites"
RESOURCE_NAMES: tuple[str, ...] = tuple(RESOURCES)
# Concurrent readers per site: the slot count of the site's pool (airflow_settings.yaml). Each
# reader keeps one request of the site's budget in reserve (see recurly/ratebudget.py).
READERS_PER_SITE = 3


class ExtractConfigError(RuntimeError):
    """The configuration does not say what to read (names variables and connections, never keys)."""


def parse_time_sites() -> list[str]:
    """Subdomains from the Variable `recurly_elt_sites`, read when a DAG file is parsed.

    Falls back to the environment (AIRFLOW_VAR_RECURLY_ELT_SITES) when no Variable service is
    reachable (e.g. a DagBag in a unit test), and to no site at all: the DAG then only has its
    checks, which fail with a message saying what to set.
    """
    raw: Any
    try:
        raw = Variable.get(SITES_VARIABLE, default=None)
    except Exception:  # no metadata service at parse time
        raw = os.environ.get(f"AIRFLOW_VAR_{SITES_VARIABLE.upper()}")
    if raw in (None, ""):
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = [raw]
    if isinstance(value, str):
        value = [value]
    return [str(v).strip().lower() for v in value if str(v).strip()]


def _find_site(subdomain: str):
    """The hook and site of `subdomain` (sites_of: a subdomain in two connections is an error)."""
    from recurly_elt.recurly.hook import RecurlyHook, sites_of

    for site in sites_of(recurly_conn_ids()):
        if site.subdomain == subdomain:
            return RecurlyHook(site.conn_id), site
    raise ExtractConfigError(
        f"site {subdomain!r} is in Variable {SITES_VARIABLE!r} but in none of the connections "
        f"listed by Variable {RECURLY_CONN_IDS_VARIABLE!r}")


def check_sites(expected: list[str]) -> dict[str, str]:
    """Every site of the configured connections has a task group, and every group a site."""
    from recurly_elt.recurly.hook import sites_of

    configured = {site.subdomain: site.conn_id for site in sites_of(recurly_conn_ids())}
    missing = sorted(set(configured) - set(expected))
    unknown = sorted(set(expected) - set(configured))
    if missing or unknown:
        raise ExtractConfigError(
            f"Variable {SITES_VARIABLE!r} lists {sorted(expected)} but the connections hold {sorted(configured)}"
            + (f"; add {missing} to it (each site needs its group and pool)" if missing else "")
            + (f"; {unknown} match no connection" if unknown else ""))
    return configured


def run_type(context: Any) -> str | None:
    """The run's type as Airflow names it: manual, scheduled, backfill, asset_triggered (None unknown)."""
    dag_run = context.get("dag_run")
    value = getattr(dag_run, "run_type", None)
    value = getattr(value, "value", value)
    return str(value).lower() if value is not None else None


def window_from_context(context: Any, mode: str):
    """The updated_at window of this run.

    daily: the data interval [data_interval_start, data_interval_end). The `start_date`/`end_date`
    Params are for manual runs: a manual run that sets them reads [start_date, end_date) (both
    needed), and a manual run without a data interval (no logical date, or a zero-length interval)
    must set them. A scheduled or backfill run always reads its own data interval: Params set on
    it (the backfill dialog shows them) are ignored, with a log line saying so, so a 7-run backfill
    reads seven different days, not one range seven times.
    import: the optional `start_date`/`end_date` Params; no lower bound by default (full history).
    """
    from recurly_elt.extract.window import Window

    params = context.get("params") or {}
    start, end = params.get("start_date"), params.get("end_date")
    if mode == "import":
        return Window.of(start, end)
    interval_start, interval_end = context.get("data_interval_start"), context.get("data_interval_end")
    has_interval = interval_start is not None and interval_end is not None and interval_start < interval_end
    kind = run_type(context)
    if (start or end) and kind not in ("manual", None):
        if not has_interval:
            raise ExtractConfigError(f"this {kind} run has no data interval to read; the Params start_date/end_date "
                                     "apply to manual runs only")
        log.warning("Params start_date=%s end_date=%s ignored: this %s run reads its data interval [%s, %s); "
                    "the Params apply to manual runs only", start, end, kind, interval_start, interval_end)
        return Window.of(interval_start, interval_end)
    if start or end:
        if not (start and end):
            raise ExtractConfigError("a manual daily-sync run needs both Params start_date and end_date")
        return Window.of(start, end)
    if not has_interval:
        raise ExtractConfigError(
            "this run has no data interval (a manual run?): set Params start_date and end_date")
    return Window.of(interval_start, interval_end)


def extract(site: str, resource: str, mode: str = "daily", readers: int = READERS_PER_SITE) -> dict:
    """Read one resource of one site over this run's window into staging; returns counts (XCom)."""
    from recurly_elt.extract.extractor import extract_resource
    from recurly_elt.warehouse.engine import engine_for_connection

    context = get_current_context()
    params = context.get("params") or {}
    for name, value in (("sites", site), ("resources", resource)):
        chosen = params.get(name) or []
        if chosen and value not in chosen:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{value} is not in Param {name} {chosen}")
    window = window_from_context(context, mode)
    hook, site_obj = _find_site(site)
    client = hook.get_client(site_obj, readers=readers)
    engine = engine_for_connection(WAREHOUSE_CONN_ID)
    log.info("Extracting %s/%s (connection %s) window %s, mode %s", site, resource, site_obj.conn_id, window, mode)
    try:
        result = extract_resource(client, engine, resource, window, run_id=context["run_id"], mode=mode)
    finally:
        engine.dispose()
        client.session.close()
    return result.as_dict()


def check_quarantine() -> int:
    """The data-quality check of extraction: fails the run (no retry) when this run quarantined
    records, naming them (staging/quarantine.py); 0 when it did not."""
    from airflow.sdk.exceptions import AirflowFailException

    from recurly_elt.staging import quarantine
    from recurly_elt.staging.load import ensure_staging_tables
    from recurly_elt.warehouse.engine import engine_for_connection

    run_id = get_current_context()["run_id"]
    engine = engine_for_connection(WAREHOUSE_CONN_ID)
    try:
        ensure_staging_tables(engine)
        with engine.connect() as conn:
            return quarantine.check(conn, run_id)
    except quarantine.QuarantineGrew as grew:
        raise AirflowFailException(str(grew)) from None
    finally:
        engine.dispose()


def build_extraction(mode: str) -> tuple[Any, list[Any]]:
    """Wire the extraction into the DAG being defined; returns (check task, [mapped extract per site]).

    `check_sites` first, then per site a task group `extract_<subdomain>` holding one `extract`
    task mapped over every resource, in the site's pool, then `check_quarantine`. Downstream stages attach to the returned
    mapped tasks (they finish when every resource of every site is staged).
    """
    from airflow.sdk import TaskGroup, task

    sites = parse_time_sites()

    @task(task_id="check_sites", multiple_outputs=False)
    def check(expected: list[str]) -> dict[str, str]:
        return check_sites(expected)

    @task(task_id="extract", map_index_template="{{ task.op_kwargs['resource'] }}", multiple_outputs=False)
    def extract_one(site: str, resource: str) -> dict:
        return extract(site, resource, mode=mode)

    # After every extraction, whatever its outcome: the rest of the run (the transform) goes on with
    # what was staged, while the run as a whole fails if the quarantine grew.
    @task(task_id="check_quarantine", trigger_rule="all_done", retries=0)
    def quarantined() -> int:
        return check_quarantine()

    checked = check(sites)
    mapped = []
    for site in sites:
        with TaskGroup(group_id=f"extract_{site}", tooltip=f"Recurly site {site}: one task per resource"):
            per_resource = extract_one.override(pool=f"recurly_{site}").partial(site=site).expand(
                resource=list(RESOURCE_NAMES))
        checked >> per_resource
        mapped.append(per_resource)
    if mapped:
        mapped >> quarantined()
    return checked, mapped
