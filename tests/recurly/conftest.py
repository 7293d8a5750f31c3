"""Every Recurly client test is checked for API keys in its logs (extract_helpers.no_key_in_logs)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extract"))
from extract_helpers import no_key_in_logs  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _keys_never_logged(no_key_in_logs):  # noqa: PT004
    yield
