"""What the transport hands the session (the HTTP provider's requests session): the request
Session.request would send, with the session's headers, settings and the policy's timeouts, each
request prepared once per (method, path, headers) and copied."""

from __future__ import annotations

import requests

from recurly_elt.destinations.adapter import RateHeaders, Request
from recurly_elt.destinations.transport import Transport
from recurly_elt.http_retry import RetryPolicy

NO_RATE = RateHeaders("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_delta=False)


class Answer:
    status_code, content, headers = 200, b"{}", {}


class Recording(requests.Session):
    """Keeps what would be sent (the prepared request and send's arguments), answers 200."""

    def __init__(self):
        super().__init__()
        self.trust_env = False
        self.headers["Authorization"] = "Bearer secret-key"
        self.proxies = {"https": "http://proxy.internal:3128"}
        self.verify = "/etc/ssl/company-ca.pem"
        self.prepared, self.sent = 0, []

    def prepare_request(self, request):
        self.prepared += 1
        return super().prepare_request(request)

    def send(self, request, **kwargs):
        self.sent.append((request, kwargs))
        return Answer()


def transport(session) -> Transport:
    return Transport(session=session, base_url="https://api.example.test", rate=NO_RATE,
                     retry=RetryPolicy(connect_timeout=7.0, read_timeout=90.0))


def send(t: Transport, path: str, body: bytes | None, method: str = "POST") -> None:
    t.retry_read(Request(method, path, body, {"Content-Type": "application/json"}), lambda response: response.status)


def test_each_request_is_what_session_request_would_send_prepared_once_per_path():
    session = Recording()
    t = transport(session)
    bodies = [b'{"a": 1}', b'{"bb": 22, "c": [1, 2, 3]}', b"{}"]
    for body in bodies:
        send(t, "/users/track", body)
    send(t, "/other", b'{"x": 1}')
    send(t, "/job/1", None, method="GET")
    assert session.prepared == 3  # one per (method, path, headers)
    assert len(session.sent) == 5
    for (prepared, kwargs), body in zip(session.sent, bodies + [b'{"x": 1}', None]):
        expected = session.prepare_request(requests.Request(prepared.method, prepared.url, data=body,
                                                            headers={"Content-Type": "application/json"}))
        assert (prepared.method, prepared.url, prepared.body) == (expected.method, expected.url, expected.body)
        assert dict(prepared.headers) == dict(expected.headers)
        assert prepared.headers["Authorization"] == "Bearer secret-key"
        assert kwargs == {"timeout": (7.0, 90.0), "allow_redirects": True, "proxies": session.proxies,
                          "verify": "/etc/ssl/company-ca.pem", "cert": None, "stream": False}
    assert [p.url for p, _ in session.sent] == ["https://api.example.test/users/track"] * 3 + [
        "https://api.example.test/other", "https://api.example.test/job/1"]
    assert session.sent[1][0].headers["Content-Length"] == str(len(bodies[1]))
    assert "Content-Length" not in session.sent[4][0].headers  # a GET without a body, as requests sends it


def test_a_session_with_cookies_or_an_auth_object_prepares_every_request():
    """Cookies the API set, or an auth that may sign each request: prepared per request, as
    Session.request does."""
    session = Recording()
    session.cookies.set("lb", "node-3", domain="api.example.test")
    t = transport(session)
    for _ in range(3):
        send(t, "/users/track", b"{}")
    assert session.prepared == 3 and all(p.headers["Cookie"] == "lb=node-3" for p, _ in session.sent)

    session = Recording()
    stamps = iter(range(100))

    def signed(prepared):
        prepared.headers["X-Signature"] = str(next(stamps))
        return prepared

    session.auth = signed
    t = transport(session)
    for _ in range(3):
        send(t, "/users/track", b"{}")
    assert [p.headers["X-Signature"] for p, _ in session.sent] == ["0", "1", "2"]
