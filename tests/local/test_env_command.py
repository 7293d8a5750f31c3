"""`recurly-elt local env`: the README's way to run `airflow ...` against the local Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from recurly_elt.local.airflow_env import LocalLayout

ROOT = Path(__file__).resolve().parents[2]


def test_env_prints_exports_a_shell_can_eval():
    command = f'eval "$({sys.executable} -m recurly_elt.cli local env)"; echo "$AIRFLOW_HOME|$AIRFLOW__CORE__EXECUTOR"'
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "plugins")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{LocalLayout().airflow_home}|LocalExecutor"
