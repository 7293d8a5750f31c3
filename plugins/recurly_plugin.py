"""The `recurly` Airflow plugin: revenue, health and run-history pages (docs/ui.md).

A thin entry for the plugin manager, which imports every .py file of plugins/ except the library
(plugins/.airflowignore). The app and pages live in recurly_elt.ui and load on first use.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from recurly_elt.ui.plugin import EXTERNAL_VIEWS, FASTAPI_APPS, NAME


class RecurlyPlugin(AirflowPlugin):
    name = NAME
    fastapi_apps = FASTAPI_APPS
    external_views = EXTERNAL_VIEWS
