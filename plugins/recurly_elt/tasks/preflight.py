"""The `preflight` task: are the configured Recurly sites reachable with their keys?

It runs first in the daily sync, so a wrong key, a wrong host or a site that is down fails one
cheap task with a message naming the connection and the site, before any extraction starts.
For each site it asks `HEAD /accounts` (one request, no body) and logs Recurly-Total-Records.
It returns {subdomain: total accounts} as XCom: counts only, never a key.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context

from recurly_elt.tasks.common import recurly_conn_ids

log = logging.getLogger(__name__)

TOTAL_RECORDS_HEADER = "Recurly-Total-Records"


class PreflightError(RuntimeError):
    """A site that cannot be read; the message names the connection and the site, never the key."""


def count_accounts(site: Any, timeout: float = 30.0) -> int:
    """`HEAD /accounts` on one site through the HTTP provider's hook; Recurly-Total-Records."""
    from requests import Request
    from requests.auth import HTTPBasicAuth

    from airflow.providers.http.hooks.http import HttpHook
    from recurly_elt.recurly.client import ACCEPT

    hook = HttpHook(method="HEAD", http_conn_id=site.conn_id)
    session = hook.get_conn(headers={"Accept": ACCEPT})
    session.auth = HTTPBasicAuth(site.api_key, "")  # Recurly: the key is the user name, no password
    # The site's own base URL: a connection may name a region instead of a host.
    request = session.prepare_request(Request("HEAD", f"{site.base_url}/accounts"))
    where = f"connection {site.conn_id!r}, site {site.subdomain!r} ({site.base_url})"
    try:
        response = hook.run_and_check(session, request, {"timeout": timeout, "check_response": False})
    except Exception as exc:  # connection refused, timeout, DNS ...
        raise PreflightError(f"{where}: cannot reach the Recurly API: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise PreflightError(f"{where}: the API key was refused (HTTP {response.status_code})")
    if response.status_code != 200:
        raise PreflightError(f"{where}: HEAD /accounts answered HTTP {response.status_code}")
    total = response.headers.get(TOTAL_RECORDS_HEADER)
    if total is None or not total.isdigit():
        raise PreflightError(f"{where}: the response has no {TOTAL_RECORDS_HEADER} header")
    return int(total)


def preflight() -> dict[str, int]:
    """Check every configured site; return {subdomain: accounts}."""
    from recurly_elt.recurly.hook import sites_of  # registers every key with the log masker

    context = get_current_context()
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    log.info("Window (data interval): [%s, %s)", start, end)

    sites = sites_of(recurly_conn_ids())
    counts: dict[str, int] = {}
    for site in sites:
        counts[site.subdomain] = count_accounts(site)
        log.info("Site %s via %s: %s=%d (accounts)", site.subdomain, site.conn_id, TOTAL_RECORDS_HEADER,
                 counts[site.subdomain])
    return counts
