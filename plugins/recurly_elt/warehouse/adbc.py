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

import itertools
import json
import os
import queue
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

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

    lanes = 1  # statements run one at a time, on this one connection

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

    def submit_read(self, sql: str, lane: int = 0) -> Callable[[], pa.Table]:
        table = self.read(sql)  # run now, whatever the lane: this connection has nothing to overlap with
        return lambda: table

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


class _Reply:
    """Where the reply to one request lands (replies come back in the order of the requests)."""

    __slots__ = ("done", "error", "table")

    def __init__(self) -> None:
        self.done, self.error, self.table = False, None, None


class Worker:
    """A SQLite file's Connection in a child process (see module doc), with the same methods.

    Requests are queued: `execute`, `ingest` and `submit_read` return once the request is sent,
    and the worker runs them in order while the caller goes on computing (the transform's reads
    and writes overlap its stages on the second core). A thread takes the replies off the pipe as
    they come, so the worker never waits on the caller. `submit_read` returns a function that
    waits for that result; `sync` waits for everything queued. A failed request raises in the
    first of the two to see it, after its reply is in. A caller commits only after `sync`
    (Columnar does).
    """

    def __init__(self, path: str, busy_timeout_ms: int):
        package_root = str(Path(__file__).resolve().parents[2])  # plugins/: importable without installing
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                                           if p)}
        self.path = path
        self.sqlite = True
        self.lanes = 2  # see serve()
        self._waiting: dict[int, _Reply] = {}
        self._ids = itertools.count()
        self._replies: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, "-m", __name__, path, str(busy_timeout_ms)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        threading.Thread(target=self._take_replies, name="adbc-replies", daemon=True).start()

    def _take_replies(self) -> None:
        while (message := _receive(self.proc.stdout)) is not None:
            self._replies.put(message)
        self._replies.put(None)

    def _died(self) -> Error:
        self._waiting.clear()
        return Error(f"the SQLite worker for {self.path} exited (code {self.proc.wait()}); its error is in the log")

    def _request(self, header: dict, table: pa.Table | None = None, lane: int = 0) -> _Reply:
        request_id = next(self._ids)
        try:
            _send(self.proc.stdin, {**header, "id": request_id, "lane": lane}, table)
        except (BrokenPipeError, OSError):
            raise self._died() from None
        reply = self._waiting[request_id] = _Reply()
        return reply

    def _next_reply(self) -> _Reply:
        message = self._replies.get()
        if message is None:
            self._replies.put(None)  # stays at the end for any later call
            raise self._died()
        answer, table = message
        reply = self._waiting.pop(answer["id"])
        reply.table = table
        reply.done, reply.error = True, None if answer["ok"] else answer["error"]
        return reply

    def _result(self, reply: _Reply) -> pa.Table | None:
        while not reply.done:
            self._next_reply()
        if reply.error:
            raise Error(reply.error)
        table, reply.table = reply.table, None
        return table

    def sync(self, raise_errors: bool = True) -> None:
        """Wait for every queued request; raise the first failure among those not yet raised."""
        errors = []
        while self._waiting:
            reply = self._next_reply()
            if reply.error:
                errors.append(reply.error)
        if errors and raise_errors:
            raise Error(errors[0] + (f" (and {len(errors) - 1} later failures)" if len(errors) > 1 else ""))

    def execute(self, sql: str, lane: int = 0) -> None:
        self._request({"op": "execute", "sql": sql}, lane=lane)

    def submit_read(self, sql: str, lane: int = 0) -> Callable[[], pa.Table]:
        reply = self._request({"op": "read", "sql": sql}, lane=lane)
        return lambda: self._result(reply)

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


def _answer(conn: Connection, header: dict, table: pa.Table | None) -> tuple[dict, pa.Table | None]:
    """Run one request; its reply (a failure is reported to the caller, which raises it)."""
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
    except Exception as exc:
        error = str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
        return {"id": header["id"], "ok": False, "error": error}, None
    return {"id": header["id"], "ok": True}, result


def serve(open_connection: Callable[[], Connection], requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until the end of input (the worker's loop).

    Lane 0 (the default) is the main connection; lane 1 a second connection, opened on first use,
    with a thread of its own, so that two tables can be read at once (the disk serves two
    sequential scans faster than one after the other). Each lane runs its requests in order;
    replies carry the request's id. A thread takes requests off the pipe as they come, so a
    caller sending the next table never waits for this one."""
    lanes = [queue.Queue(), queue.Queue()]
    send_lock = threading.Lock()

    def take_requests() -> None:
        while (message := _receive(requests)) is not None:
            lanes[message[0].get("lane", 0)].put(message)
        for lane in lanes:
            lane.put(None)

    def run_lane(inbox: queue.Queue) -> None:
        conn = None
        try:
            while (message := inbox.get()) is not None:
                (header, table), message = message, None
                conn = conn or open_connection()
                reply, result = _answer(conn, header, table)
                del table  # an ingested table's memory goes now, not when the next one arrives
                with send_lock:
                    _send(replies, reply, result)
        finally:
            if conn is not None:
                conn.close()

    threading.Thread(target=take_requests, name="requests", daemon=True).start()
    helper = threading.Thread(target=run_lane, args=(lanes[1],), name="lane-1")
    helper.start()
    run_lane(lanes[0])
    helper.join()


def main(argv: list[str]) -> int:
    path, busy_timeout_ms = argv
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # the protocol owns stdout: any stray print goes to the log instead
    serve(lambda: Connection.sqlite_file(path, int(busy_timeout_ms)), sys.stdin.buffer, replies)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
