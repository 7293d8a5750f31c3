"""Running one `airflow ...` command for `make run`, as a user would type it.

SQLite allows one writer at a time: a command that writes while the scheduler does can fail with
"database is locked" (a known upstream race, mostly seen when creating backfills). Such a failure
is retried after a short pause; any other failure is reported at once with the output's tail.
"""

from __future__ import annotations

import subprocess
import time
from typing import Callable


class AirflowCommandError(RuntimeError):
    pass


def run_airflow_command(
    command: list[str],
    env: dict[str, str] | None,
    *,
    attempts: int = 4,
    clean_up: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = 300,
) -> str:
    """Run `command`; its output. `clean_up` runs before each retry (undo a half-done write)."""
    for attempt in range(1, attempts + 1):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        output = (proc.stdout or "") + (proc.stderr or "")
        if proc.returncode == 0:
            return output
        if "database is locked" in output and attempt < attempts:
            if clean_up is not None:
                clean_up()
            sleep(2 * attempt)
            continue
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise AirflowCommandError(f"`airflow {' '.join(command[1:])}` failed (exit {proc.returncode}):\n{tail}")
    raise AssertionError("unreachable")
