"""The vendor contracts the fakes validate every request against: ../shared/reference/contracts/.

The folder is found beside the repository (<repo>/../shared/reference/contracts), as the sandbox's
contract test finds the Recurly spec, or wherever RECURLY_ELT_CONTRACTS points. When a contract
file is absent (a clone without the shared references), a fake still serves, still checks what
its own code needs (identifiers, limits, types it reads), and says so: a warning on stderr when it
starts, and `"contract": null` in GET /_fake/state, so a test can tell a validated run from one
that was not. Tests that are about contract validation skip in that case.
"""

from __future__ import annotations

import json
import os
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BRAZE = "braze-users-track.schema.json"
KLAVIYO = "klaviyo-openapi-2026-07-15.json"
CUSTOMERSUCCESSBOX = "customersuccessbox-server-api.schema.json"
ACTIVECAMPAIGN_REST = "activecampaign-v3-rest.schema.json"
ACTIVECAMPAIGN_GRAPHQL = "activecampaign-ecom-recurring-payments.graphql"
BLOOMREACH = "bloomreach-tracking-v2.schema.json"


def contracts_dir() -> Path:
    return Path(os.environ.get("RECURLY_ELT_CONTRACTS") or REPO.parent / "shared" / "reference" / "contracts")


def contract_path(name: str) -> Path | None:
    path = contracts_dir() / name
    return path if path.is_file() else None


def _warn(name: str) -> None:
    print(f"warning: contract {name} not found in {contracts_dir()} (set RECURLY_ELT_CONTRACTS): "
          "requests are checked by the fake's own rules only", file=sys.stderr)


@lru_cache(maxsize=None)
def braze_validator():
    """A jsonschema Draft 2020-12 validator of the /users/track request body, or None."""
    path = contract_path(BRAZE)
    if path is None:
        _warn(BRAZE)
        return None
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=None)
def klaviyo_openapi():
    """openapi-core's OpenAPI object for Klaviyo's trimmed spec, or None."""
    path = contract_path(KLAVIYO)
    if path is None:
        _warn(KLAVIYO)
        return None
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=None)
def defs_validator(name: str, definition: str):
    """A Draft 2020-12 validator of one `$defs` entry of a project-authored contract, or None."""
    path = contract_path(name)
    if path is None:
        _warn(name)
        return None
    from jsonschema import Draft202012Validator

    doc = json.loads(path.read_text(encoding="utf-8"))
    if definition not in doc.get("$defs", {}):
        raise KeyError(f"{name} has no $defs/{definition}")
    return Draft202012Validator({"$defs": doc["$defs"], "$ref": f"#/$defs/{definition}"})


def problems(validator, doc) -> list[str]:
    """The validator's messages for `doc`, each with its JSON path (at most 20); [] when valid."""
    if validator is None:
        return []
    found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300] for e in found[:20]]
