"""Authentication and authorisation of every plugin route, by Airflow's own auth manager.

Routes of a plugin's FastAPI app are not protected by Airflow: the API server mounts the app as
it is. So the app adds, to every route, the dependency the core API uses to find the user
(`airflow.api_fastapi.core_api.security.get_user`: the `Authorization: Bearer <JWT>` header, or
the `_token` cookie the Airflow UI holds after login), then asks the configured auth manager:

- every route: `is_authorized_custom_view(method="GET", resource_name="Recurly")`;
- routes showing DAG runs: also `is_authorized_dag(method="GET", access_entity=RUN)` for the
  project's DAGs (or for the one DAG of a run summary).

A missing token is refused with 401, an invalid or expired one with 401/403 (as the core API
does), an authenticated user without the permission with 403.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request, status

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user

RESOURCE_NAME = "Recurly"
# The DAGs whose runs the run-history pages show (the ids of dags/*.py).
PROJECT_DAG_IDS = ("recurly_daily_sync", "recurly_one_time_import")


def _forbidden() -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


async def require_reader(user: BaseUser = Depends(get_user)) -> BaseUser:
    """Any plugin route: an authenticated user allowed to read the Recurly views."""
    if not get_auth_manager().is_authorized_custom_view(method="GET", resource_name=RESOURCE_NAME, user=user):
        raise _forbidden()
    return user


def _may_read_runs(user: BaseUser, dag_id: str) -> bool:
    return get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                                details=DagDetails(id=dag_id), user=user)


async def require_run_history(user: BaseUser = Depends(require_reader)) -> BaseUser:
    """Routes over the run history of every project DAG."""
    if not all(_may_read_runs(user, dag_id) for dag_id in PROJECT_DAG_IDS):
        raise _forbidden()
    return user


async def require_dag_run(request: Request, user: BaseUser = Depends(require_reader)) -> BaseUser:
    """Routes about one run of one DAG (any DAG: the Sync summary tab is on every run's page):
    the `dag_id` path parameter names it."""
    dag_id: Any = request.path_params.get("dag_id")
    if not dag_id or not _may_read_runs(user, dag_id):
        raise _forbidden()
    return user
