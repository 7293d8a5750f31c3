"""Every API key the test suite configures, in one registry.

Tests take their keys from here (or from the project files `registry()` reads), so the
session-wide check of tests/key_leaks.py knows every key it must never find in a log line, an
exception, a file the suite wrote or a warehouse row. The suite's own keys are distinctive: none
is part of another, and none is a word that text could hold by chance, so a hit is a leak (the
project's defaults are taken as they are: "bench-key" is part of bench/load.py's key).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Recurly keys of the in-process sandbox of the extraction and client tests (tests/extract, tests/recurly).
EXTRACT = {"acme": "rk-extract-acme-5f1c", "globex": "rk-extract-globex-9a2e"}
# Recurly keys of the sandbox the DAG tests start (tests/airflow).
DAGS = {"acme": "rk-dags-acme-3b7d", "globex": "rk-dags-globex-c4e8"}
# Recurly keys of the UI tests' warehouse build (tests/ui).
UI = {"acme": "rk-ui-acme-71f0", "globex": "rk-ui-globex-2d96"}
# Recurly keys of the sandbox server's own tests (tests/sandbox).
SANDBOX = {"acme": "rk-sandbox-acme-8e4a", "globex": "rk-sandbox-globex-0b53"}
# Keys in the settings of the local-stack tests (tests/local).
LOCAL = {"acme": "rk-local-acme-6c2f", "globex": "rk-local-globex-e917", "other": "rk-local-other-4a08",
         "single": "rk-local-single-d35b"}
# Keys a server must refuse (wrong, revoked) and keys that cannot be sent (not latin-1).
WRONG = "rk-wrong-key-a8c4"
REVOKED = {"acme": "rk-revoked-acme-5e60", "globex": "rk-revoked-globex-19bd"}
SENDABLE = ("rk-l\u00e1tin-1-sendable-77e2", "rk-plain-_.~-sendable-0f4c")
UNSENDABLE = ("rk-\u043a\u043b\u044e\u0447-cyrillic-3d1a", "rk-with space-6b8e", "rk-with\u0000nul-f27c",
              "rk-emoji\U0001F511-a04d")
# Destination keys of the offline fakes the DAG tests start (tests/airflow/conftest.py).
DESTINATIONS = {"braze": "dk-braze-2c8f", "klaviyo": "dk-klaviyo-6e1d", "activecampaign": "dk-activecampaign-93b0",
                "bloomreach": "dk-bloomreach-secret-4f7a", "customersuccessbox": "dk-customersuccessbox-d0c5"}


def _constant(path: Path, name: str) -> str:
    """A module-level string constant of a project file, read without importing the module."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path.relative_to(ROOT)} has no constant {name}")


def _settings_passwords(path: Path) -> dict[str, str]:
    """The passwords of airflow_settings.yaml (a JSON map of subdomain -> key is one key per site)."""
    import json

    import yaml

    found: dict[str, str] = {}
    for conn in yaml.safe_load(path.read_text(encoding="utf-8"))["airflow"]["connections"]:
        password = conn.get("conn_password")
        if not password:
            continue
        try:
            keys = json.loads(password)
        except ValueError:
            keys = password
        if isinstance(keys, dict):
            found.update({f"airflow_settings.yaml {conn['conn_id']} {site}": key for site, key in keys.items()})
        else:
            found[f"airflow_settings.yaml {conn['conn_id']}"] = str(keys)
    return found


def registry() -> dict[str, str]:
    """{a name saying where the key is used: the key} for every key above and the ones the project's
    own files configure (airflow_settings.yaml, the sandbox's, fakes' and benchmarks' defaults, the
    destination tests' fake key)."""
    keys: dict[str, str] = {}
    for group, values in (("extract", EXTRACT), ("dags", DAGS), ("ui", UI), ("sandbox", SANDBOX), ("local", LOCAL),
                          ("revoked", REVOKED), ("destination", DESTINATIONS)):
        keys.update({f"{group} {name}": key for name, key in values.items()})
    keys["wrong"] = WRONG
    keys.update({f"sendable {i}": key for i, key in enumerate(SENDABLE)})
    keys.update({f"unsendable {i}": key for i, key in enumerate(UNSENDABLE)})
    keys.update(_settings_passwords(ROOT / "airflow_settings.yaml"))
    plugins = ROOT / "plugins" / "recurly_elt"
    for where, name in (("sandbox/cli.py", "DEFAULT_API_KEY"), ("fakes/cli.py", "DEFAULT_KEY"),
                        ("bench/extract.py", "API_KEY"), ("bench/sandbox.py", "API_KEY"), ("bench/load.py", "KEY")):
        keys[f"{where} {name}"] = _constant(plugins / where, name)
    keys["tests/destinations KEY"] = _constant(ROOT / "tests" / "destinations" / "fakes_running.py", "KEY")
    return keys
