"""What Airflow's plugin manager sees of the `recurly` plugin: cheap to import.

Every Airflow process (scheduler, DAG processor, workers) loads plugins, but only the API server
serves them. So the FastAPI app is an ASGI stand-in here that builds the real app
(`recurly_elt.ui.app.create_app`, with FastAPI routes, the auth dependencies and the page
templates) on its first request: the other processes never import FastAPI, pandas or plotly for it.
"""

from __future__ import annotations

import threading
from typing import Any

NAME = "recurly"
URL_PREFIX = "/recurly"


class LazyApp:
    """An ASGI app that creates the plugin's FastAPI app when the first request arrives."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from recurly_elt.ui.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


APP = LazyApp()

FASTAPI_APPS = [{"name": "Recurly pages and JSON", "app": APP, "url_prefix": URL_PREFIX}]

# Places in the Airflow UI. `url_route` shows the page inside Airflow's own frame
# (/plugin/<url_route>); a run-level view gets the run's ids substituted into its href. The hrefs
# are relative (no leading slash): the UI resolves them against its base URL, so they still point
# at the plugin when Airflow is served under a path behind a proxy (`[api] base_url`).
_HREF = URL_PREFIX.lstrip("/")
EXTERNAL_VIEWS = [
    {"name": "Recurly revenue", "href": f"{_HREF}/revenue", "url_route": "recurly-revenue",
     "category": "Recurly", "destination": "nav"},
    {"name": "Recurly health", "href": f"{_HREF}/health", "url_route": "recurly-health",
     "category": "Recurly", "destination": "nav"},
    {"name": "Recurly runs", "href": f"{_HREF}/runs", "url_route": "recurly-runs",
     "category": "Recurly", "destination": "nav"},
    {"name": "Sync summary", "href": f"{_HREF}/sync-summary/{{DAG_ID}}/{{RUN_ID}}",
     "url_route": "recurly-sync-summary", "destination": "dag_run"},
]
