"""Fixtures every destination test shares."""

from __future__ import annotations

import pytest

from .warehouse_data import staged_engine


@pytest.fixture
def warehouse(warehouse_url):
    """The staged warehouse of tests/destinations/warehouse_data.py, on SQLite and on PostgreSQL."""
    engine = staged_engine(warehouse_url)
    yield engine
    engine.dispose()
