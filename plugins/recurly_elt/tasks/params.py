"""Trigger-form Params shared by the DAGs. Imported at parse time: airflow.sdk only."""

from __future__ import annotations

from airflow.sdk import Param


def choice_of(values: list[str], what: str) -> Param:
    """An optional multi-select of `values`: the trigger form lists them, a run naming anything else
    is refused when it is triggered (JSON Schema `enum`), and empty or none means all of them."""
    items: dict = {"type": "string"}
    if values:
        items["enum"] = list(values)
    extra = {"examples": list(values)} if values else {}
    return Param(None, type=["array", "null"], items=items, uniqueItems=True, title=what.capitalize(),
                 description=f"{what} to import; leave empty for all", **extra)
