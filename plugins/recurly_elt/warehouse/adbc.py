"""ADBC connections: run SQL, read results as Arrow tables, ingest Arrow tables.

The only module that calls an ADBC driver. `columnar.py` builds on it; nothing here knows pandas
or SQLAlchemy.

PostgreSQL connections live in the caller's process. A SQLite file's connection lives in a worker
process (`Worker`, this module run with `python -m`): the ADBC SQLite driver carries its own copy
of the SQLite library, and two copies of SQLite in one process corrupt a database they both have
open. POSIX file locks belong to the process, so when one copy closes its file it drops the locks
of the other; in WAL mode the closing copy may then believe it is the last connection and
checkpoint and delete the WAL under the other's feet (https://sqlite.org/howtocorrupt.html,
"Multiple copies of SQLite linked into the same application"). The warehouse engine (SQLAlchemy on
Python's sqlite3) keeps the caller's process; the worker uses only the driver's copy; SQLite's
locking between processes is the ordinary, safe case.

Worker protocol, on the worker's stdin and stdout: a message is a 4-byte big-endian length, a JSON
header of that length and, when the header's "arrow" is true, an Arrow IPC stream (it ends with its
own end-of-stream marker). Requests: {"op": "execute" | "read", "sql"}, {"op": "ingest", "table"} + the table's
rows. Each request gets one reply, in order: {"ok": true} (+ the result's rows for "read") or
{"ok": false, "error"}. The worker exits at end of input; closing an ADBC connection rolls back a
transaction left open.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import pyarrow as pa

# Rows the SQLite driver reads before it fixes each column's type: all of them. It infers a type
# from the values it has seen (an all-NULL start reads as int64) and fails on a later value of
# another type, so a result is fetched as one batch.
SQLITE_BATCH_ROWS = 1 << 30


class Error(RuntimeError):
    """A statement failed in the database or the worker died; the message says which."""


@contextmanager
def _driver_errors() -> Iterator[None]:
    """The driver's exceptions as this module's Error, the same in and out of the worker."""
    import adbc_driver_manager

    try:
        yield
    except adbc_driver_manager.Error as exc:
        raise Error(f"{type(exc).__name__}: {exc}") from exc


class Connection:
    """One ADBC connection in autocommit mode (the caller sends BEGIN / COMMIT itself)."""

    def __init__(self, raw: Any, sqlite: bool):
        self.raw, self.sqlite = raw, sqlite

    @classmethod
    def sqlite_file(cls, path: str, busy_timeout_ms: int) -> "Connection":
        import adbc_driver_sqlite.dbapi

        conn = cls(adbc_driver_sqlite.dbapi.connect(path, autocommit=True), sqlite=True)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # as the engine's connections (engine.py)
        return conn

    @classmethod
    def postgresql(cls, libpq_uri: str) -> "Connection":
        import adbc_driver_postgresql.dbapi

        return cls(adbc_driver_postgresql.dbapi.connect(libpq_uri, autocommit=True), sqlite=False)

    def execute(self, sql: str) -> None:
        with _driver_errors(), self.raw.cursor() as cur:
            cur.execute(sql)

    def read(self, sql: str) -> pa.Table:
        with _driver_errors(), self.raw.cursor() as cur:
            if self.sqlite:
                cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(SQLITE_BATCH_ROWS)})
            cur.execute(sql)
            return cur.fetch_arrow_table()

    def ingest(self, table: str, data: pa.Table) -> None:
        with _driver_errors(), self.raw.cursor() as cur:
            cur.adbc_ingest(table, data, mode="append")

    def sync(self, raise_errors: bool = True) -> None:
        """Nothing to wait for: this connection runs every statement when it is called."""

    def close(self) -> None:
        self.raw.close()


# -- the worker -----------------------------------------------------------------------------------
def _send(stream: IO[bytes], header: dict, table: pa.Table | None = None) -> None:
    head = json.dumps({**header, "arrow": table is not None}).encode()
    stream.write(struct.pack(">I", len(head)) + head)
    if table is not None:  # written batch by batch: no second copy of the table in memory
        with pa.ipc.new_stream(pa.PythonFile(stream, mode="w"), table.schema) as writer:
            writer.write_table(table)
    stream.flush()


def _exactly(stream: IO[bytes], n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(stream: IO[bytes]) -> tuple[dict, pa.Table | None] | None:
    """The next message, or None at the end of input."""
    size = _exactly(stream, 4)
    head = _exactly(stream, struct.unpack(">I", size)[0]) if size is not None else None
    if head is None:
        return None
    header = json.loads(head)
    if not header["arrow"]:
        return header, None
    try:  # an IPC stream ends with its own end-of-stream marker: read exactly up to it
        return header, pa.ipc.open_stream(pa.PythonFile(stream, mode="r")).read_all()
    except (pa.ArrowInvalid, OSError):  # cut short: the other side died
        return None


class Worker:
    """A SQLite file's Connection in a child process (see module doc), with the same methods.

    `execute` and `ingest` are queued: they return once the request is sent, and the worker runs
    them in order while the caller computes the next table (the transform's writes overlap its
    later stages on the second core). `read` and `sync` wait for every queued request; a failed one
    raises there, after all replies are in. A caller commits only after `sync` (Columnar does).
    """

    def __init__(self, path: str, busy_timeout_ms: int):
        package_root = str(Path(__file__).resolve().parents[2])  # plugins/: importable without installing
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                                           if p)}
        self.path = path
        self.pending = 0
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, path, str(busy_timeout_ms)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.sqlite = True

    def _died(self) -> Error:
        return Error(f"the SQLite worker for {self.path} exited (code {self.proc.wait()}); its error is in the log")

    def _request(self, header: dict, table: pa.Table | None = None) -> None:
        try:
            _send(self.proc.stdin, header, table)
        except (BrokenPipeError, OSError):
            raise self._died() from None
        self.pending += 1

    def sync(self, raise_errors: bool = True) -> pa.Table | None:
        """Wait for every queued request; raise the first failure. Returns the last result."""
        errors, result = [], None
        while self.pending:
            reply = _receive(self.proc.stdout)
            if reply is None:
                self.pending = 0
                raise self._died()
            self.pending -= 1
            answer, result = reply
            if not answer["ok"]:
                errors.append(answer["error"])
        if errors and raise_errors:
            raise Error(errors[0] + (f" (and {len(errors) - 1} later failures)" if len(errors) > 1 else ""))
        return result

    def execute(self, sql: str) -> None:
        self._request({"op": "execute", "sql": sql})

    def read(self, sql: str) -> pa.Table:
        self._request({"op": "read", "sql": sql})
        return self.sync()

    def ingest(self, table: str, data: pa.Table) -> None:
        self._request({"op": "ingest", "table": table}, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # end of input: the worker closes its connection and exits
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def serve(conn: Connection, requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests in order until the end of input (the worker's loop). A thread takes requests
    off the pipe as they come, so a caller sending the next table never waits for this one."""
    inbox: queue.Queue = queue.Queue()

    def take_requests() -> None:
        while (message := _receive(requests)) is not None:
            inbox.put(message)
        inbox.put(None)

    threading.Thread(target=take_requests, name="requests", daemon=True).start()
    while (message := inbox.get()) is not None:
        (header, table), message = message, None
        result = None
        try:
            if header["op"] == "execute":
                conn.execute(header["sql"])
            elif header["op"] == "read":
                result = conn.read(header["sql"])
            elif header["op"] == "ingest":
                conn.ingest(header["table"], table)
            else:
                raise ValueError(f"unknown request {header['op']!r}")
        except Exception as exc:  # reported to the caller, which raises it
            _send(replies, {"ok": False, "error": str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            del table  # an ingested table's memory goes now, not when the next one arrives
        _send(replies, {"ok": True}, result)


def main(argv: list[str]) -> int:
    path, busy_timeout_ms = argv
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # the protocol owns stdout: any stray print goes to the log instead
    conn = Connection.sqlite_file(path, int(busy_timeout_ms))
    try:
        serve(conn, sys.stdin.buffer, replies)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
