"""The `preflight` task: are the configured Recurly sites reachable with their keys?

It runs first in the daily sync, so a wrong key, a wrong host or a site that is down fails one
cheap task with a message naming the connection and the site, before any extraction starts.
For each site it asks
- `HEAD /accounts` (one request, no body) and logs Recurly-Total-Records;
- `GET /sites`: the sites the key can read. A key that does not read the subdomain it is configured
  for (a multi-site password whose `acme` slot holds globex's key) would stage another site's
  records under this name: an error naming both.
Two connections naming the same subdomain are an error naming both (hook.sites_of).
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
        response = hook.run_and_check(session, request, {"timeout": timeout, "check_response": False,
                                                         "allow_redirects": False})  # the key goes nowhere else
    except Exception as exc:  # connection refused, timeout, DNS ...
        raise PreflightError(f"{where}: cannot reach the Recurly API: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise PreflightError(f"{where}: the API key was refused (HTTP {response.status_code})")
    if 300 <= response.status_code < 400:
        raise PreflightError(f"{where}: HEAD /accounts answered a redirect (HTTP {response.status_code}); "
                             "redirects are not followed: set the connection's host to the API's own URL")
    if response.status_code != 200:
        raise PreflightError(f"{where}: HEAD /accounts answered HTTP {response.status_code}")
    total = response.headers.get(TOTAL_RECORDS_HEADER)
    if total is None or not total.isdigit():
        raise PreflightError(f"{where}: the response has no {TOTAL_RECORDS_HEADER} header")
    return int(total)


def key_sites(site: Any) -> list[str]:
    """The subdomains the site's key can read (`GET /sites`, through the Recurly client: retries,
    the configured host only, messages without the key)."""
    from recurly_elt.recurly.errors import RecurlyError
    from recurly_elt.recurly.hook import RecurlyHook

    client = RecurlyHook(site.conn_id).get_client(site)
    try:
        return [str(s.get("subdomain")) for page in client.pages("/sites", {"limit": 200}) for s in page.data
                if isinstance(s, dict)]
    except RecurlyError as exc:
        raise PreflightError(f"connection {site.conn_id!r}, site {site.subdomain!r}: GET /sites failed: {exc}") from None
    finally:
        client.session.close()


def check_key_site(site: Any, readable: list[str]) -> None:
    """The key configured for `site` reads that subdomain (`readable`: what GET /sites answered)."""
    if site.subdomain not in readable:
        raise PreflightError(
            f"connection {site.conn_id!r}: the API key configured for site {site.subdomain!r} belongs to "
            f"{', '.join(repr(s) for s in readable) or 'no site'}; its records would be staged as "
            f"{site.subdomain!r}. Put each site's own key in its slot")


def check_sites_and_keys(sites: list[Any]) -> dict[str, int]:
    """Every site reachable with its key, each key its own site's; {subdomain: accounts}."""
    counts: dict[str, int] = {}
    for site in sites:
        counts[site.subdomain] = count_accounts(site)
        check_key_site(site, key_sites(site))
        log.info("Site %s via %s: %s=%d (accounts), key checked with GET /sites", site.subdomain, site.conn_id,
                 TOTAL_RECORDS_HEADER, counts[site.subdomain])
    return counts


def preflight() -> dict[str, int]:
    """Check every configured site; return {subdomain: accounts}."""
    from recurly_elt.recurly.hook import sites_of  # registers every key with the log masker

    context = get_current_context()
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    log.info("Window (data interval): [%s, %s)", start, end)

    from recurly_elt.recurly.sites import SiteConfigError

    try:
        sites = sites_of(recurly_conn_ids())
    except SiteConfigError as exc:
        raise PreflightError(str(exc)) from None
    return check_sites_and_keys(sites)
