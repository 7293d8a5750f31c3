"""Background servers of `make run`: start once, find again by pid file, stop by process group.

Each server runs in its own session (process group), so stopping it also stops the children it
forks (the scheduler's executor workers, the API server's uvicorn workers). Its output goes to
`.local/logs/<name>.log`; `.local/run/<name>.pid` holds {"pid", "started", "argv", "meta"}. A pid file
whose process is gone, or whose pid now belongs to another program, counts as not running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ProcessError(RuntimeError):
    pass


def _start_ticks(pid: int) -> int | None:
    """The process start time (clock ticks since boot, /proc/<pid>/stat field 22): with the pid,
    it identifies one process for good, whatever title the program gives itself later."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but not ours
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One background server: its command, environment, log file and pid file.

    `argv` is visible to every local user (`ps`) and is written to the log and the pid file as it
    is: pass secrets in a private file or the environment, never here.
    """

    name: str
    argv: list[str]
    log_file: Path
    pid_file: Path
    env: dict[str, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def recorded(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The pid of the running server this pid file describes, or None."""
        record = self.recorded()
        if not record or not isinstance(record.get("pid"), int):
            return None
        pid = record["pid"]
        if not _alive(pid):
            return None
        # Guard against pid reuse: the same pid must have the same start time.
        if record.get("started") is not None and _start_ticks(pid) != record["started"]:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> bool:
        """Start unless already running. True if this call started it."""
        if self.is_running():
            return False
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # its own process group: stop() signals the whole group
            )
        record = {"pid": proc.pid, "started": _start_ticks(proc.pid), "argv": self.argv, "meta": self.meta}
        self.pid_file.write_text(json.dumps(record))
        self._popen = proc
        return True

    def exited(self) -> int | None:
        """The exit code if a server this object started has already died, else None."""
        proc = getattr(self, "_popen", None)
        return proc.poll() if proc is not None else None

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL what is left after `timeout`. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            pgid = None
        target = (lambda sig: os.killpg(pgid, sig)) if pgid == pid else (lambda sig: os.kill(pid, sig))
        try:
            target(signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pgid, pid):
            self._reap()
            time.sleep(0.2)
        if _group_alive(pgid, pid):
            try:
                target(signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._reap()
        self.pid_file.unlink(missing_ok=True)
        return True

    def _reap(self) -> None:
        proc = getattr(self, "_popen", None)
        if proc is not None:
            proc.poll()


def _group_alive(pgid: int | None, pid: int) -> bool:
    if pgid is None:
        return _alive(pid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for a group of zombies: look for a live member.
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":  # field 5 of stat is the pgrp
            return True
    return False


def wait_until(
    check: Callable[[], Any],
    *,
    what: str,
    timeout: float,
    process: ManagedProcess | None = None,
    every: float = 0.5,
) -> Any:
    """Poll `check` until it returns something truthy; fail fast if `process` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if process is not None and process.exited() is not None:
            raise ProcessError(
                f"{process.name} exited with code {process.exited()} while waiting for {what}; "
                f"last lines of {process.log_file}:\n{log_tail(process.log_file)}"
            )
        if time.monotonic() > deadline:
            hint = f"; see {process.log_file}" if process is not None else ""
            raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")
        time.sleep(every)


def http_json(url: str, timeout: float = 2.0) -> Any | None:
    """GET a JSON document; None on any connection or HTTP error (used to poll readiness)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URL)
            return json.loads(response.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None
