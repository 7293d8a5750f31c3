"""Fixtures of the extraction tests (helpers live in extract_helpers.py)."""

import pytest

from extract_helpers import no_key_in_logs, sandbox  # noqa: F401  (the in-process sandbox fixture)


@pytest.fixture(autouse=True)
def _keys_never_logged(no_key_in_logs):  # noqa: PT004 - every test here is checked for leaked keys
    yield
