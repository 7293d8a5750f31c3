"""What every DAG of the project shares: owner, retries, tags and the variable naming the sites.

Imported by the DAG files at parse time, so it imports nothing beyond the standard library at
module level (Airflow's task SDK only inside the functions tasks call).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

OWNER = "recurly-elt"
PROJECT_TAG = "recurly"

# A fixed start date (never "now"): Airflow needs it stable to compute data intervals.
START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

# The Airflow Variable holding the JSON list of Recurly connection ids the DAGs read.
RECURLY_CONN_IDS_VARIABLE = "recurly_elt_recurly_conn_ids"
WAREHOUSE_CONN_ID = "recurly_warehouse"

# The longest any task may run: the Airflow configuration option [recurly_elt] task_timeout_minutes
# (environment: AIRFLOW__RECURLY_ELT__TASK_TIMEOUT_MINUTES). A task past it is failed by Airflow and
# retried; an extraction then resumes from its last committed page.
TIMEOUT_SECTION, TIMEOUT_OPTION = "recurly_elt", "task_timeout_minutes"
DEFAULT_TASK_TIMEOUT_MINUTES = 240


def task_timeout(value: Any = None) -> timedelta:
    """Every task's `execution_timeout`: [recurly_elt] task_timeout_minutes, default 240 minutes.

    `value` stands for the configured text (tests); a value that is not a positive number of
    minutes is a ValueError naming the option, so a typo never means "no timeout".
    """
    if value is None:
        from airflow.configuration import conf

        value = conf.get(TIMEOUT_SECTION, TIMEOUT_OPTION, fallback=None)
    if value in (None, ""):
        return timedelta(minutes=DEFAULT_TASK_TIMEOUT_MINUTES)
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        minutes = 0.0
    if not 0 < minutes <= 7 * 24 * 60:
        raise ValueError(f"[{TIMEOUT_SECTION}] {TIMEOUT_OPTION} must be a number of minutes between 0 and "
                         f"10080 (AIRFLOW__{TIMEOUT_SECTION.upper()}__{TIMEOUT_OPTION.upper()}); got {value!r}")
    return timedelta(minutes=minutes)


def default_args(**overrides: Any) -> dict[str, Any]:
    """Task defaults: two retries with exponential backoff, and the configured execution timeout.

    Two retries cover what the Recurly client does not retry itself (a worker restart, a
    warehouse lock); more would only delay the alert on a real failure such as a revoked key.
    The timeout (`task_timeout`) bounds whatever still hangs: no task runs forever.
    """
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": task_timeout(),
    }
    args.update(overrides)
    return args


def recurly_conn_ids() -> list[str]:
    """The Recurly connection ids to read, from the Variable `recurly_elt_recurly_conn_ids` (run time).

    Raises ValueError naming the Variable and what it should hold when it is missing or malformed.
    """
    from airflow.sdk import Variable

    value = Variable.get(RECURLY_CONN_IDS_VARIABLE, default=None, deserialize_json=True)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"Variable {RECURLY_CONN_IDS_VARIABLE!r} must be a non-empty JSON list of connection "
                         f'ids, e.g. ["recurly_default"] (see airflow_settings.yaml); got {value!r}')
    return value


def tags(*extra: str) -> list[str]:
    """The project tag plus the DAG's own (mode, stage ...), so the UI can filter on either."""
    return [PROJECT_TAG, *extra]
