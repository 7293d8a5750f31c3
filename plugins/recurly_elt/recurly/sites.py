"""Recurly sites from Airflow Connections.

A Recurly API key belongs to one site and the API paths carry no site, so a "site" here is a
(subdomain, API key, base URL) triple. A connection describes either one site:

    conn_type http, password = API key, extra {"subdomain": "acme", "region": "us"|"eu"}
    (or host = an explicit base URL such as https://v3.eu.recurly.com)

or several sites at once, in the multi-instance form of Recurly's integration documents:

    password = '{"acme": "<api key>", "globex": "<api key>"}'

EU sites must use the EU host: a connector that hard-codes the US host fails for them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

REGION_HOSTS = {
    "us": "https://v3.recurly.com",
    "eu": "https://v3.eu.recurly.com",
}

_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class SiteConfigError(ValueError):
    """A connection that does not describe a usable Recurly site. Never carries the key."""


@dataclass(frozen=True)
class Site:
    subdomain: str
    base_url: str
    conn_id: str
    api_key: str = field(repr=False)

    @property
    def pool(self) -> str:
        """The Airflow pool whose slots bound concurrent readers of this site's API budget."""
        return f"recurly_{self.subdomain}"

    def __post_init__(self) -> None:
        check_api_key(self.conn_id, self.subdomain, self.api_key)

    def describe(self) -> dict:
        """What may be logged or put in XCom: everything but the key."""
        return {"subdomain": self.subdomain, "base_url": self.base_url, "conn_id": self.conn_id}


def check_api_key(conn_id: str, subdomain: str, api_key: str) -> None:
    """A key HTTP Basic auth can send: latin-1, no spaces or control characters.

    Otherwise the HTTP library fails deep inside with an encoding error whose text carries the key;
    this names the connection, the site and the position instead, never the key.
    """
    for position, char in enumerate(api_key, start=1):
        if ord(char) > 0xFF or not char.isprintable() or char.isspace():
            kind = "a non-latin-1 character" if ord(char) > 0xFF else "a space or control character"
            raise SiteConfigError(
                f"connection {conn_id!r}, site {subdomain!r}: the API key has {kind} at position {position} "
                "(HTTP Basic auth cannot send it); copy the key again from Recurly")


def _base_url(conn_id: str, host: str | None, extra: Mapping[str, Any]) -> str:
    if host:
        return host.rstrip("/") if "://" in host else f"https://{host.rstrip('/')}"
    region = str(extra.get("region") or "us").lower()
    if region not in REGION_HOSTS:
        raise SiteConfigError(
            f"connection {conn_id!r}: region {region!r} has no known host; "
            f"use one of {sorted(REGION_HOSTS)} or set the connection host to the API base URL"
        )
    return REGION_HOSTS[region]


def _check_subdomain(conn_id: str, subdomain: str) -> str:
    sub = str(subdomain).strip().lower()
    if not _SUBDOMAIN.match(sub):
        raise SiteConfigError(f"connection {conn_id!r}: {subdomain!r} is not a valid site subdomain")
    return sub


def sites_from_connection(
    conn_id: str,
    *,
    host: str | None,
    password: str | None,
    login: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[Site]:
    """The sites a connection describes, in a stable order (by subdomain)."""
    extra = dict(extra or {})
    base_url = _base_url(conn_id, host, extra)
    secret = (password or "").strip() or (login or "").strip()
    if not secret:
        raise SiteConfigError(f"connection {conn_id!r}: no API key (set the connection password)")

    if secret.startswith("{"):
        try:
            keys = json.loads(secret)
        except json.JSONDecodeError:
            raise SiteConfigError(
                f'connection {conn_id!r}: the password looks like a {{"subdomain": "api_key"}} map '
                "but is not valid JSON"
            ) from None
        if not isinstance(keys, dict) or not keys or not all(isinstance(v, str) and v for v in keys.values()):
            raise SiteConfigError(
                f'connection {conn_id!r}: the site map must be a non-empty {{"subdomain": "api_key"}} object'
            )
        return [
            Site(subdomain=_check_subdomain(conn_id, sub), base_url=base_url, conn_id=conn_id, api_key=key)
            for sub, key in sorted(keys.items())
        ]

    subdomain = extra.get("subdomain") or conn_id.removeprefix("recurly_")
    return [Site(subdomain=_check_subdomain(conn_id, subdomain), base_url=base_url, conn_id=conn_id, api_key=secret)]


def check_unique_subdomains(sites: list[Site]) -> None:
    """Each subdomain in one connection only: two connections naming the same site would each read
    it (or, by whichever is found first, only one would), so it is an error naming both."""
    seen: dict[str, str] = {}
    for site in sites:
        other = seen.setdefault(site.subdomain, site.conn_id)
        if other != site.conn_id:
            raise SiteConfigError(f"site {site.subdomain!r} is configured in connection {other!r} and in "
                                  f"connection {site.conn_id!r}; keep it in one of them")
