"""The `recurly` Airflow plugin: revenue, health and run-history pages over the warehouse.

`plugin.py` is what Airflow's plugin manager sees (cheap to import); `app.py` builds the FastAPI
app the API server mounts at /recurly, on first request. docs/ui.md describes the pages.
"""
