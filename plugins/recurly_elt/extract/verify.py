"""Does staging hold exactly what the source holds? (the benchmark's `matches_source`, and tests)

The source is a mapping resource -> {id: API object} (the sandbox simulation's `objects`, or
objects read back from an API). Staged `raw_json` is compared with the source object after the
normalisation that completion applies: an invoice's line items compared as a set (by id) with
`has_more_line_items` false, and without the `coupon_redemptions` a completion adds to some
invoices (the extraction tests check those against the sandbox's). Everything else must be equal
field for field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping

import sqlalchemy as sa

from recurly_elt.recurly.resources import RESOURCES
from recurly_elt.staging.tables import staging_table

# Resource names of the sandbox generator that differ from the declarations'.
SOURCE_NAMES = {"plan_add_ons": "add_ons"}


@dataclass
class ResourceDiff:
    resource: str
    staged: int = 0
    source: int = 0
    missing: list[str] = field(default_factory=list)     # in the source, not staged
    extra: list[str] = field(default_factory=list)       # staged, not in the source
    different: list[str] = field(default_factory=list)   # staged content differs

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def summary(self) -> dict:
        return {"staged": self.staged, "source": self.source, "missing": len(self.missing),
                "extra": len(self.extra), "different": len(self.different), "examples":
                (self.missing + self.extra + self.different)[:3]}


def normalise(resource: str, obj: dict) -> dict:
    obj = dict(obj)
    if resource == "invoices" and "line_items" in obj:
        items = obj["line_items"]
        items = items.get("data", []) if isinstance(items, dict) else (items or [])
        obj["line_items"] = sorted(items, key=lambda item: str(item.get("id")))
        obj["has_more_line_items"] = False
    if resource == "invoices":
        obj.pop("coupon_redemptions", None)
    return obj


def compare_with_source(engine: sa.Engine, site: str, source: Mapping[str, Mapping[str, dict]],
                        resources: list[str] | None = None) -> dict[str, ResourceDiff]:
    out = {}
    for name in resources or list(RESOURCES):
        table = staging_table(name)
        pk = RESOURCES[name].primary_key
        expected = source.get(SOURCE_NAMES.get(name, name), {})
        with engine.connect() as conn:
            staged = {k: v for k, v in conn.execute(
                sa.select(table.c[pk], table.c.raw_json).where(table.c.site == site))}
        diff = ResourceDiff(name, staged=len(staged), source=len(expected))
        diff.missing = sorted(set(expected) - set(staged))
        diff.extra = sorted(set(staged) - set(expected))
        for key in sorted(set(staged) & set(expected)):
            if normalise(name, json.loads(staged[key])) != normalise(name, expected[key]):
                diff.different.append(key)
        out[name] = diff
    return out


def matches_source(diffs: Mapping[str, ResourceDiff]) -> bool:
    return all(d.equal for d in diffs.values())
