"""The offline APIs refuse a body that is too big (413) or not JSON (400) in their vendor's error
shape, and apply nothing."""

from __future__ import annotations

import base64

import pytest
import requests

from .fakes_running import KEY, running, state

# (fake, path, auth header, its size limit, the body of its errors: the message's key)
APIS = [
    ("braze", "/users/track", {"Authorization": f"Bearer {KEY}"}, 4_000_000, "message"),
    ("bloomreach", "/track/v2/projects/test-project/batch",
     {"Authorization": "Basic " + base64.b64encode(f"test-key-id:{KEY}".encode()).decode()}, 800_000, "message"),
    ("customersuccessbox", "/api/v1_1/account", {"Authorization": f"Bearer {KEY}"}, 1_000_000, "errors"),
]


@pytest.mark.parametrize("name, path, auth, limit, field", APIS, ids=[a[0] for a in APIS])
def test_too_big_or_not_json_is_refused_with_nothing_applied(name, path, auth, limit, field):
    with running(name) as server:
        post = lambda body: requests.post(server.url + path, data=body, timeout=10,  # noqa: E731
                                          headers={**auth, "Content-Type": "application/json"})
        big, broken = post(b'{"x": "' + b"a" * limit + b'"}'), post(b'{"attributes": [')
        before = state(server)
    assert big.status_code == 413 and "Too Large" in str(big.json()[field])
    assert broken.status_code == 400 and "JSON" in str(broken.json()[field])
    # nothing applied: every collection the fake holds is empty
    assert not any(v for k, v in before.items() if isinstance(v, (dict, list)) and k not in ("server", "held"))
