"""The plugin entry is cheap for every Airflow process that loads plugins without serving them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_loading_the_plugin_imports_no_web_or_data_library():
    code = """
import sys
import airflow.plugins_manager
before = set(sys.modules)
import recurly_plugin
new = {m.split('.')[0] for m in set(sys.modules) - before}
print(sorted(new & {'fastapi', 'starlette', 'pandas', 'plotly', 'jinja2', 'numpy', 'pyarrow'}))
print(recurly_plugin.RecurlyPlugin.name, len(recurly_plugin.RecurlyPlugin.external_views))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "plugins", capture_output=True, text=True,
                         timeout=120, env=None)
    assert out.returncode == 0, out.stderr[-2000:]
    heavy, plugin = out.stdout.strip().splitlines()[-2:]
    assert heavy == "[]", f"the plugin entry imported {heavy}"
    assert plugin == "recurly 4"


def test_the_plugin_manager_finds_it_without_import_errors(airflow_db):
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    assert not errors
    plugin = next(p for p in plugins if p.name == "recurly")
    assert plugin.fastapi_apps[0]["url_prefix"] == "/recurly"
