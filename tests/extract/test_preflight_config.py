"""Preflight configuration checks: each key reads the site it is configured for (GET /sites), and a
subdomain is configured in one connection only."""

from __future__ import annotations

import pytest

from recurly_elt.recurly.sites import Site, SiteConfigError, check_unique_subdomains
from recurly_elt.tasks.preflight import PreflightError, check_key_site, key_sites

from extract_helpers import KEYS
from known_keys import REVOKED


def test_each_key_reads_its_own_site(sandbox):
    for subdomain, key in KEYS.items():
        site = Site(subdomain, sandbox.url, "recurly_default", key)
        readable = key_sites(site)
        assert readable == [subdomain]
        check_key_site(site, readable)


def test_a_key_in_the_wrong_slot_is_an_error_naming_both_sites_never_the_key(sandbox, caplog):
    swapped = Site("acme", sandbox.url, "recurly_default", KEYS["globex"])  # acme's slot holds globex's key
    with pytest.raises(PreflightError) as info:
        check_key_site(swapped, key_sites(swapped))
    message = str(info.value)
    assert "'recurly_default'" in message and "site 'acme' belongs to 'globex'" in message
    for key in KEYS.values():
        assert key not in message and key not in caplog.text


def test_a_refused_key_fails_get_sites_naming_the_connection(sandbox):
    site = Site("acme", sandbox.url, "recurly_default", REVOKED["acme"])
    with pytest.raises(PreflightError, match=r"connection 'recurly_default', site 'acme': GET /sites failed.*401") as info:
        key_sites(site)
    assert REVOKED["acme"] not in str(info.value)


def test_the_same_subdomain_in_two_connections_is_an_error_naming_both():
    sites = [Site("acme", "https://v3.recurly.com", "recurly_us", "k1"),
             Site("globex", "https://v3.recurly.com", "recurly_us", "k2"),
             Site("acme", "https://v3.eu.recurly.com", "recurly_eu", "k3")]
    with pytest.raises(SiteConfigError, match="site 'acme' is configured in connection 'recurly_us' and in "
                                              "connection 'recurly_eu'"):
        check_unique_subdomains(sites)
    check_unique_subdomains(sites[:2])
