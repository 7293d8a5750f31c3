"""From an Airflow connection to a Transport: the HTTP provider's HttpHook session, the key in it.

A destination's connection (`recurly_braze`, `recurly_klaviyo`, ...) is an `http` connection: the
instance URL in the host, the API key in the password. A connection that does not exist, or has
no key, means the destination is not configured: NotConfigured, which the task turns into a skip
with that reason. The key is registered with Airflow's secret masker as soon as it is read and
only ever travels in the session's headers.
"""

from __future__ import annotations

from recurly_elt.destinations.adapter import Adapter
from recurly_elt.destinations.mapping import Mapping
from recurly_elt.destinations.transport import DESTINATION_RETRY, Transport
from recurly_elt.http_retry import RetryPolicy


class NotConfigured(Exception):
    """The destination has no usable connection: skip it, saying why."""


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - older task SDKs
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore
    mask_secret(secret)


def transport_for(mapping: Mapping, adapter: Adapter, retry: RetryPolicy | None = None) -> Transport:
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    hook = HttpHook(method="POST", http_conn_id=mapping.connection)
    try:
        conn = hook.get_connection(mapping.connection)
    except AirflowNotFoundException:
        raise NotConfigured(f"connection {mapping.connection!r} is not defined: destination "
                            f"{mapping.destination} is not configured") from None
    if not conn.password:
        raise NotConfigured(f"connection {mapping.connection!r} has no API key in its password: destination "
                            f"{mapping.destination} is not configured")
    if not conn.host:
        raise NotConfigured(f"connection {mapping.connection!r} has no host (the API's base URL)")
    _mask(conn.password)
    try:
        adapter.connect(conn.login or None, conn.extra_dejson or {})
    except ValueError as exc:
        raise NotConfigured(f"connection {mapping.connection!r}: {exc}") from None
    session = hook.get_conn()
    session.auth = None  # the key goes in the vendor's own header, never as HTTP Basic
    session.headers.update(adapter.auth_headers(conn.password))
    base_url = hook.base_url.rstrip("/")
    adapter.base_url_check(base_url)
    return Transport(session=session, base_url=base_url, rate=adapter.rate_headers, retry=retry or DESTINATION_RETRY)
