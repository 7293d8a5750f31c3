"""What the offline servers share: the Recurly sandbox (`sandbox/`) and the fake destinations (`fakes/`).

- `LoopbackServer`: a threading HTTP server started in a background thread and stopped cleanly,
  idle keep-alive connections included (a client waiting on one would otherwise hold `stop()` up,
  or find its connection still open after the server went away);
- `LoopbackHandler`: HTTP/1.1 keep-alive with TCP_NODELAY, no stderr line per request, the request
  body drained, and each answer written with a single send (head and body together: two sends on
  a Nagle-free socket are two packets, and a client reading the head may see the body late);
- `serve_until_signalled`: the command-line loop of both, with the ready file that scripts and
  tests wait for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LoopbackServer(ThreadingHTTPServer):
    """start() serves in a background thread, stop() ends it and closes every open connection."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    thread_name = "loopback-server"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"

    def before_serving(self) -> None:
        """Called by start() before the first request (e.g. storm periods count from then)."""

    def start(self):
        self.before_serving()
        self._thread = threading.Thread(target=self.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, then close the connections still open (idle keep-alive ones)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        with self._connections_lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)


class LoopbackHandler(BaseHTTPRequestHandler):
    """GET, POST and PUT go to `dispatch(method)`, which subclasses write; a subclass serving more
    methods adds their `do_<METHOD>` (others are answered 501 and touch nothing)."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is closed after this many seconds
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args) -> None:  # the servers count and log requests themselves
        pass

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def dispatch(self, method: str) -> None:
        raise NotImplementedError

    def read_body(self) -> bytes | None:
        """The request body, read whole (so the connection stays usable); None when Content-Length
        is not a length, and the connection is then closed after the answer."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def head_bytes(self, status: int, headers: dict[str, str], length: int | None) -> bytes:
        """The status line and headers; `length` None leaves Content-Length out (a HEAD answer)."""
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {self.date_time_string()}",
                 f"Server: {self.server_version}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write(self, status: int, headers: dict[str, str], body: bytes, *, head_only: bool = False) -> None:
        """One send of the whole answer; a client gone already only closes the connection."""
        data = self.head_bytes(status, headers, None if head_only else len(body))
        try:
            self.wfile.write(data if head_only else data + body)
        except OSError:
            self.close_connection = True


def serve_until_signalled(server: LoopbackServer, name: str, listening: str, ready_file: Path | None,
                          ready: dict) -> int:
    """Serve until SIGTERM or SIGINT; `ready` (plus the pid) is written atomically to `ready_file`
    once the server listens, and the file is removed when it stops."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"{name} listening on {listening}", flush=True)
    if ready_file:
        tmp = ready_file.with_suffix(ready_file.suffix + ".tmp")
        tmp.write_text(json.dumps({**ready, "pid": os.getpid()}))
        tmp.replace(ready_file)  # atomic: a reader never sees half a file
    try:
        stop.wait()
    finally:
        server.stop()
        if ready_file:
            ready_file.unlink(missing_ok=True)
    print(f"{name} stopped", flush=True)
    return 0
