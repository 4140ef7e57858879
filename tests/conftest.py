"""Shared fixtures for both layers: a private Redis, the test Celery app, real workers,
external services.

``tests/unit/`` is pure logic (no server, no subprocess, no network); ``tests/integration/``
runs against a real redis-server and real workers, Flower and Chromium. Each test gets the
``unit`` or ``integration`` marker from its directory.

The private redis-server's URL is chosen in ``pytest_sessionstart``, before any test module
is collected, because tests/proj.py reads ``FILEINTEL_TEST_REDIS_URL`` when it is imported;
the server itself starts only when a test needs it, so a unit run starts none.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests import harness
from tests.harness import RedisServer, run_celery, run_subprocess_worker, start_celery

__all__ = ["run_celery", "run_subprocess_worker", "start_celery"]

# Property tests: hypothesis' default 100 examples keep the unit layer within its 10 s;
# HYPOTHESIS_PROFILE=thorough runs ten times as many (a bug hunt, not every run).
settings.register_profile("thorough", max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_server: RedisServer | None = None
_session_pid = os.getpid()
_outages_seen = 0


def pytest_sessionstart(session: pytest.Session) -> None:
    global _server
    _server = RedisServer()  # started by the redis_server fixture, on first use
    # Always our own server: an inherited URL could point at somebody's data.
    os.environ[harness.REDIS_URL_ENV] = _server.url


_LAYERS = {"unit", "integration"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer (its directory below tests/), so ``-m unit`` and
    ``-m integration`` select the same tests as the paths do."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(tests_dir).parts
        if parts and parts[0] in _LAYERS:
            item.add_marker(parts[0])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a test left a process behind (a worker, a CLI run), then clean up."""
    if os.getpid() != _session_pid:  # a forked child running pytest's hooks: not ours
        return
    allowed = [_server.pid] if _server is not None and _server.pid else []
    leaked = harness.leaked_children(allowed)
    if leaked:
        lines = "\n".join("  " + harness.describe_process(p) for p in leaked)
        message = (
            f"\nProcess leak: {len(leaked)} process(es) started by the test suite were still "
            f"running at the end of the session (now killed):\n{lines}\n"
            "Stop what a test starts (use run_subprocess_worker / kill_process_tree)."
        )
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)
        for proc in leaked:
            try:
                proc.kill()
            except Exception:
                pass
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    harness.kill_all_registered()
    if _server is not None:
        _server.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``rabbitmq`` / ``postgres`` / ``browser`` need that service."""
    if item.get_closest_marker("rabbitmq"):
        harness.rabbitmq_url()
    if item.get_closest_marker("postgres"):
        harness.postgres_url()
    if item.get_closest_marker("browser"):
        harness.chromium_path()


# --------------------------------------------------------------------------------------------
# Redis, the app, workers


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The private redis-server (``.url``, ``.port``, ``.client()``, ``.stop()``, ``.start()``)."""
    assert _server is not None, "pytest_sessionstart did not start the test redis-server"
    _server.ensure_running()
    yield _server
    # Closed in pytest_sessionfinish (and atexit), after the leak check.


@pytest.fixture(autouse=True)
def _redis_back_up_after_test() -> Iterator[None]:
    """A test that simulated an outage leaves the private Redis running for the next one."""
    yield
    if _server is not None and _server.outages and not _server.running:
        _server.start()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[Any]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def app(redis_server: RedisServer) -> Any:
    """``tests.proj.app``, with the private Redis running and its DB flushed."""
    global _outages_seen
    redis_server.ensure_running()
    with redis_server.client() as client:
        client.flushdb()
    from tests.proj import app as celery_app

    if redis_server.outages != _outages_seen:
        # A previous test simulated an outage: give this one fresh connections.
        harness.reset_app_connections(celery_app)
        _outages_seen = redis_server.outages
    # Publish tracking reads the current app; a test that built another app may have made
    # that one current.
    celery_app.set_current()
    return celery_app


@pytest.fixture
def worker(app: Any) -> Iterator[Any]:
    """A real in-process worker (threads pool, 4 threads) on the default queue, for one test."""
    from celery.contrib.testing.worker import start_worker

    # The Redis transport blocks in BRPOP for 1 s by default, and the worker only notices
    # shutdown between polls: 0.1 s makes stopping a worker 0.15 s instead of 1.1 s.
    options = dict(app.conf.broker_transport_options or {})
    if "polling_interval" not in options:
        options["polling_interval"] = 0.1
        app.conf.broker_transport_options = options
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=10,
        # Only the default queue: tasks sent to tests.proj.NOBODY_QUEUE must stay queued,
        # even though sending them adds that queue to app.amqp.queues.
        queues=[app.conf.task_default_queue],
    ) as w:
        yield w


@pytest.fixture
def subprocess_worker() -> Iterator[Callable[..., Any]]:
    """Factory: ``w = subprocess_worker(pool="prefork", concurrency=2)`` starts a worker
    subprocess (same arguments as ``run_subprocess_worker``) that is stopped when the test ends.
    """
    from contextlib import ExitStack

    with ExitStack() as stack:

        def factory(*args: Any, **kwargs: Any) -> harness.SubprocessWorker:
            return stack.enter_context(run_subprocess_worker(*args, **kwargs))

        yield factory


# --------------------------------------------------------------------------------------------
# external services: skipped when absent, failures under CI=true


@pytest.fixture
def rabbitmq_url() -> str:
    return harness.rabbitmq_url()


@pytest.fixture
def postgres_url() -> str:
    """SQLAlchemy URL of the ``test`` database; Celery's ``result_backend`` is ``"db+" + url``."""
    return harness.postgres_url()


@pytest.fixture
def chromium_path() -> str:
    return harness.chromium_path()


@pytest.fixture
def browser(chromium_path):
    """Debian's headless Chromium through Playwright, for the pages' browser tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def sentinel_url(redis_server, tmp_path):
    """A real Redis Sentinel (the same redis-server binary in sentinel mode) watching the
    private server as master ``fileintel``."""
    import subprocess

    import redis

    from tests.harness import free_port, kill_process_tree, spawn, wait_for

    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor fileintel 127.0.0.1 {redis_server.port} 1\n"
    )
    proc = spawn([redis_server.executable, str(conf), "--sentinel"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def knows_the_master() -> bool:
        try:
            # The raw command: redis-py 6.4's sentinel_get_master_addr_by_name() raises a
            # TypeError in its own reply parser.
            with redis.Redis(port=port) as client:
                return bool(client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "fileintel"))
        except redis.RedisError:
            return False

    try:
        wait_for(knows_the_master, 10, what="redis sentinel to watch the test server")
        yield f"sentinel://127.0.0.1:{port}/0"
    finally:
        kill_process_tree(proc)
