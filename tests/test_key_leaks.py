"""The suite-wide key check (tests/key_leaks.py) can fail: a key planted in a log line, a printed
Basic header, an exception, a file or a PostgreSQL row of a throwaway pytest run is reported by
where it is, and fails that run even though all its tests pass.

The planted key is made up here at random, so it is in no registry of the real suite: only the
inner run's check knows it (and the real suite's check keeps looking for its own keys in the
inner run's files, which lie under this test's temporary folder)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from key_leaks import KeyLeakCheck

TESTS = Path(__file__).resolve().parent


def _inner_run(pytester, key: str, tests: str):
    pytester.makeconftest(f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from key_leaks import PLUGIN_NAME, KeyLeakCheck

def pytest_configure(config):
    config.pluginmanager.register(KeyLeakCheck(lambda: {{"planted": {key!r}}}), PLUGIN_NAME)
""")
    pytester.makepyfile(test_inner=f"KEY = {key!r}\n" + tests)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


PASSING_BUT_LEAKING = """
import base64, logging, os

def test_logs_it():
    logging.getLogger("client").warning("GET /accounts with key %s", KEY)

def test_prints_a_basic_header():
    print("Authorization: Basic " + base64.b64encode((KEY + ":").encode()).decode())

def test_writes_it_to_a_warehouse_file(tmp_path):
    (tmp_path / "warehouse.db").write_bytes(b"SQLite format 3\\0" + b"\\1" * 5000 + KEY.encode() + b"\\2" * 100)

def test_keeps_it_in_a_private_file(tmp_path):  # mode 0600: where a key may live
    fd = os.open(tmp_path / "sites.json", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, KEY.encode()); os.close(fd)
"""


def test_a_planted_key_fails_a_run_whose_tests_all_pass(pytester):
    key = f"planted-{uuid.uuid4().hex}"
    result = _inner_run(pytester, key, PASSING_BUT_LEAKING)
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "API keys leaked" in out and key not in out  # the report names the key, never shows it
    leaks = [line for line in out.splitlines() if ": key 'planted'" in line]
    assert any("test_logs_it: Captured log call" in line and "(as is)" in line for line in leaks), out
    assert any("test_prints_a_basic_header: Captured stdout call" in line and "Basic header" in line for line in leaks)
    assert any("test_writes_it_to_a_warehouse_0" in line and "warehouse.db" in line for line in leaks)
    assert not any("sites.json" in line for line in leaks)  # the private file is counted, not reported
    assert "1 private files and copies of the source skipped" in out and len(leaks) == 3


def test_a_key_in_an_exception_is_reported_and_a_clean_run_passes(pytester):
    key = f"planted-{uuid.uuid4().hex}"
    result = _inner_run(pytester, key, """
def test_raises_with_it():
    raise RuntimeError("the server answered: bad key " + KEY)
""")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "test_raises_with_it: exception text (call): key 'planted' (as is)" in result.stdout.str()

    clean = _inner_run(pytester, key, """
def test_says_nothing_of_it():
    assert len(KEY) > 10   # the key is in the source, which is not scanned: only what the run left
""")
    assert clean.ret == pytest.ExitCode.OK
    assert "key check: no key found" in clean.stdout.str()


@pytest.mark.postgres
def test_a_key_in_a_postgresql_row_is_reported(postgres_server, new_postgres_url, tmp_path):
    import sqlalchemy as sa

    key = f"planted-{uuid.uuid4().hex}"
    url = new_postgres_url()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE stg_accounts (id text, raw_json jsonb)"))
        conn.execute(sa.text("INSERT INTO stg_accounts VALUES ('a1', :doc)"),
                     {"doc": '{"note": "Basic ' + base64.b64encode(f"{key}:".encode()).decode() + '"}'})
    engine.dispose()
    check = KeyLeakCheck(lambda: {"planted": key})
    check.scan_postgres(postgres_server)
    leaks = check.finish(tmp_path)
    database = sa.engine.make_url(url).database
    assert [str(leak) for leak in leaks] == [
        f"PostgreSQL database {database}, table public.stg_accounts: key 'planted' (in a Basic header)"]
    with engine.begin() as conn:  # the real suite's check scans this server again at the end
        conn.execute(sa.text("DROP TABLE stg_accounts"))


def test_a_copy_of_the_source_is_not_a_leak_but_a_changed_copy_is(tmp_path):
    key = f"planted-{uuid.uuid4().hex}"
    source, scanned = tmp_path / "repo", tmp_path / "basetemp"
    (source / "plugins").mkdir(parents=True)
    (source / "plugins" / "defaults.py").write_text(f"DEFAULT_KEY = {key!r}\n")
    (scanned / "copy" / "plugins").mkdir(parents=True)
    (scanned / "copy" / "plugins" / "defaults.py").write_text(f"DEFAULT_KEY = {key!r}\n")  # as a test copies it
    (scanned / "task.log").write_text(f"calling with {key}\n")
    check = KeyLeakCheck(lambda: {"planted": key}, sources=[source])
    leaks = check.finish(scanned)
    assert [leak.where for leak in leaks] == [f"file {scanned / 'task.log'}"]
    assert "1 private files and copies of the source skipped" in check.summary
