"""Running an airflow command: retried on a locked SQLite database, other failures at once."""

from __future__ import annotations

import sys

import pytest

from recurly_elt.local.airflow_cli import AirflowCommandError, run_airflow_command


def test_command_is_retried_on_a_locked_database_after_cleaning_up(tmp_path):
    counter = tmp_path / "calls"
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) + 1 if p.exists() else 1;"
        " p.write_text(str(n)); print('sqlite3.OperationalError: database is locked' if n < 3 else 'created');"
        " sys.exit(1 if n < 3 else 0)"
    )
    cleanups = []
    out = run_airflow_command([sys.executable, "-c", script, str(counter)], env=None,
                              clean_up=lambda: cleanups.append(1), sleep=lambda s: None)
    assert "created" in out and counter.read_text() == "3" and len(cleanups) == 2


def test_other_errors_fail_at_once(tmp_path):
    with pytest.raises(AirflowCommandError, match=r"(?s)failed \(exit 2\).*No runs to create"):
        run_airflow_command([sys.executable, "-c", "import sys; print('No runs to create'); sys.exit(2)"],
                            env=None, clean_up=lambda: pytest.fail("no clean-up"), sleep=lambda s: None)
