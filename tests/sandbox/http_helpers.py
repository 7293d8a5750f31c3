"""Helpers for the sandbox server tests: start a server on an ephemeral port, call it like a client."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import date

import requests

from recurly_elt.sandbox.server import SandboxServer
from recurly_elt.sandbox.sites import Site, build_sites

ACCEPT = {"Accept": "application/vnd.recurly.v2021-02-25+json"}
START, UNTIL = date(2025, 1, 1), date(2025, 7, 1)


def make_sites(keys: dict[str, str], accounts: int = 40, seed: int = 7, **options) -> list[Site]:
    """Sites simulated by the real generator (or `simulation_factory=`, e.g. the tests' FakeSite)."""
    return build_sites(keys, seed=seed, accounts=accounts, start_date=START, until=UNTIL, **options)


@contextmanager
def running(sites: list[Site], **options):
    server = SandboxServer(sites, "127.0.0.1", 0, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Client:
    """A keep-alive client for one site's key."""

    def __init__(self, base_url: str, api_key: str | None):
        self.base = base_url
        self.session = requests.Session()
        self.session.headers.update(ACCEPT)
        if api_key is not None:
            self.session.auth = (api_key, "")

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def head(self, path: str, **kwargs) -> requests.Response:
        return self.session.head(self.base + path, timeout=30, **kwargs)

    def read_all(self, path: str) -> list[dict]:
        """Follow `next` until has_more is false; every record of the list."""
        records, url = [], path
        while url:
            response = self.get(url)
            assert response.status_code == 200, response.text
            body = response.json()
            records.extend(body["data"])
            url = body["next"] if body["has_more"] else None
        return records

    def close(self) -> None:
        self.session.close()
