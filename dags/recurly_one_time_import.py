"""recurly_one_time_import: the full history of the Recurly sites into the warehouse, on demand.

Wiring only: task bodies live in `recurly_elt.tasks`, which import their heavy dependencies
when they run, so this file parses in milliseconds.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from recurly_elt.tasks.common import START_DATE, default_args, tags
from recurly_elt.tasks.load import build_load
from recurly_elt.tasks.extract import RESOURCE_NAMES, build_extraction
from recurly_elt.tasks.transform import build_transform

DOC_MD = """
### Recurly one-time import

Reads everything (no lower bound on `updated_at` unless `start_date` is set) from every site
of the connections in the Variable `recurly_elt_recurly_conn_ids`, one task per site and
resource, in each site's pool. Records are upserted by (site, id), so running it again, or
after daily syncs, leaves staging as one clean read would. A killed task resumes at its last
committed page when retried. Counts per (run, site, resource) land in `extract_run_log`.

Params: `sites` and `resources` (empty = all; the others are skipped), `start_date` /
`end_date` (optional, `[start, end)` on updated_at).

Then **transform**: the marts over the whole history (MRR runs, monthly movements, lifecycle
events, subscription overview; account health for the last day), and the data-quality checks.

Then **load**: one task per destination (docs/destinations.md), after the checks. Params
`destinations` (empty = all configured), `load_mode` (daily_sync / import_only; empty = the
mapping's), `backfill_events` (history older than the age limit, flagged so it fires no flows),
`dry_run`.
"""


@dag(
    dag_id="recurly_one_time_import",
    schedule=None,  # manual only
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("one-time-import"),
    doc_md=DOC_MD,
    params={
        "sites": Param([], type="array", items={"type": "string"},
                       description="subdomains to import; empty = every configured site"),
        "resources": Param([], type="array", items={"type": "string", "enum": list(RESOURCE_NAMES)},
                           description="resources to import; empty = all"),
        "start_date": Param(None, type=["null", "string"], format="date",
                            description="optional: only records updated on or after this day"),
        "end_date": Param(None, type=["null", "string"], format="date",
                          description="optional: only records updated before this day"),
        "destinations": Param([], type="array", items={"type": "string"},
                              description="load: destinations to deliver to; empty = every configured one"),
        "load_mode": Param(None, type=["null", "string"], enum=[None, "daily_sync", "import_only"],
                           description="load: daily_sync overwrites, import_only never overwrites; "
                                       "empty = each mapping's own mode"),
        "backfill_events": Param(False, type="boolean",
                                 description="load: also send events older than the mapping's age limit, "
                                             "marked as backfill where the API has a marker"),
        "dry_run": Param(False, type="boolean", description="load: count and sample, send nothing"),
    },
)
def recurly_one_time_import():
    _checked, extracted = build_extraction("import")
    build_load("import", build_transform("import", extracted))


recurly_one_time_import()
