"""Every route of the plugin app, listed from the app itself, with a URL that reaches its handler."""

from __future__ import annotations

from fastapi.routing import APIRoute

from .ui_data import DAILY_RUN

# Values for the path and query parameters routes declare (a new parameter fails loudly below).
PARAMETER_VALUES = {"dag_id": "recurly_daily_sync", "run_id": DAILY_RUN, "name": "recurly.js", "site": "acme",
                    "month": "2025-08-01", "movement_type": "new", "account": "no-such-account", "limit": "5"}


def plugin_routes() -> list[tuple[str, str]]:
    """(method, url) of every route of a freshly created plugin app, parameters filled in."""
    from recurly_elt.ui.app import create_app

    out = []
    for route in create_app(lambda: None).routes:
        assert isinstance(route, APIRoute), f"route {route} is not an APIRoute: it would bypass the app's auth"
        path = route.path_format
        for param in route.dependant.path_params:
            path = path.replace("{" + param.name + "}", PARAMETER_VALUES[param.name])
        query = [f"{p.name}={PARAMETER_VALUES[p.name]}" for p in route.dependant.query_params
                 if p.field_info.is_required()]
        url = path + ("?" + "&".join(query) if query else "")
        for method in sorted(route.methods):
            out.append((method, url))
    return out
