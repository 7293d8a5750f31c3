"""RecurlyHook: the seam between Airflow Connections and the Recurly client.

Built on the HTTP provider's HttpHook, so a Recurly connection is an ordinary `http` connection
(host = base URL or empty with extra.region us|eu, password = API key or a {"subdomain": "key"}
map, extra.subdomain) and sessions get the provider's TCP keep-alive adapter. Every key is
registered with Airflow's secret masker as soon as it is read, before anything can log it.
"""

from __future__ import annotations

from typing import Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from recurly_elt.http_retry import RetryPolicy
from recurly_elt.recurly.client import RecurlyClient
from recurly_elt.recurly.ratebudget import RateBudget
from recurly_elt.recurly.sites import Site, check_unique_subdomains, sites_from_connection


def _mask(secret: str | None) -> None:
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore
    mask_secret(secret)


class RecurlyHook(HttpHook):
    conn_name_attr = "recurly_conn_id"
    default_conn_name = "recurly_default"
    conn_type = "http"
    hook_name = "Recurly"

    def __init__(self, recurly_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=recurly_conn_id, **kwargs)
        self.recurly_conn_id = recurly_conn_id

    def get_sites(self) -> list[Site]:
        """The sites of this connection (one, or several for a subdomain map), keys masked."""
        conn = self.get_connection(self.recurly_conn_id)
        _mask(conn.password)  # the whole map as well as each key below
        sites = sites_from_connection(self.recurly_conn_id, host=conn.host, password=conn.password,
                                      login=conn.login, extra=conn.extra_dejson)
        for site in sites:
            _mask(site.api_key)
        return sites

    def get_site(self, subdomain: str) -> Site:
        sites = self.get_sites()
        for site in sites:
            if site.subdomain == subdomain:
                return site
        raise KeyError(f"connection {self.recurly_conn_id!r} has no site {subdomain!r} "
                       f"(it has: {', '.join(s.subdomain for s in sites)})")

    def get_client(self, site: Site, *, readers: int = 1, retry: RetryPolicy | None = None) -> RecurlyClient:
        """A client for one site: keep-alive session, a rate budget shared by `readers` readers."""
        session = requests.Session()
        self.base_url = site.base_url
        session = self._configure_session_from_mount_adapters(session)
        return RecurlyClient(site=site, session=session, budget=RateBudget(readers=readers),
                             retry=retry or RetryPolicy())


def sites_of(conn_ids: list[str]) -> list[Site]:
    """Every site of every listed connection, in connection order (SiteConfigError when two
    connections name the same subdomain)."""
    sites = [site for conn_id in dict.fromkeys(conn_ids) for site in RecurlyHook(conn_id).get_sites()]
    check_unique_subdomains(sites)
    return sites
