"""Fixtures of the extraction tests (helpers live in extract_helpers.py)."""

from extract_helpers import sandbox  # noqa: F401  (the in-process sandbox fixture)
