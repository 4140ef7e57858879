"""The test harness itself: private Redis, outage simulation, in-process and subprocess workers."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
import redis

from tests import harness

pytestmark = pytest.mark.integration


def test_private_redis_is_not_the_shared_one(redis_server):
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert os.environ[harness.REDIS_URL_ENV] == redis_server.url
    with redis_server.client() as client:
        assert client.ping()
        # No persistence: nothing written to disk behind anyone's back.
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"


def test_app_uses_private_redis_and_starts_empty(app, redis_server):
    assert app.conf.broker_url == redis_server.url
    with redis_server.client() as client:
        assert client.dbsize() == 0


def test_stop_simulates_outage_and_start_recovers(redis_server):
    with redis_server.client() as client:
        client.set("fileintel-test-key", "1")
    redis_server.stop()
    assert not redis_server.running
    with pytest.raises(redis.ConnectionError):
        with redis_server.client() as client:
            client.ping()
    redis_server.start()
    with redis_server.client() as client:
        assert client.ping()
        assert client.get("fileintel-test-key") is None  # an outage loses the data


def test_app_fixture_restarts_a_stopped_server(redis_server, request):
    redis_server.stop()
    app = request.getfixturevalue("app")
    assert redis_server.running
    with redis_server.client() as client:
        assert client.ping()
    assert app is not None


def test_outage_while_a_worker_runs(app, worker, redis_server):
    from tests.proj import add

    assert add.delay(1, 2).get(timeout=30) == 3
    redis_server.stop()  # the worker's teardown and the next test must cope


@pytest.fixture
def after_an_outage(redis_server):
    """What a test with an outage leaves behind: the app's connections open to a Redis that
    was killed. Requested before ``app``, so the ``app`` fixture must restart Redis and give
    the app fresh connections."""
    from tests.proj import app as celery_app

    redis_server.ensure_running()
    celery_app.backend.client.ping()
    redis_server.stop()


def test_app_and_worker_work_after_an_outage(after_an_outage, app, worker):
    """On its own, not only right after the test above: the harness restarted Redis and
    reset the backend."""
    from tests.proj import add

    assert add.delay(2, 3).get(timeout=30) == 5


def test_in_process_worker_runs_a_task(app, worker):
    from tests.proj import add

    assert add.delay(2, 3).get(timeout=30) == 5


def test_in_process_worker_ignores_the_nobody_queue(app, worker):
    from tests.proj import NOBODY_QUEUE, add

    queued = add.apply_async((1, 1), queue=NOBODY_QUEUE)
    # Proof the worker is live: a task on the default queue sent afterwards completes...
    assert add.delay(2, 3).get(timeout=30) == 5
    # ...while the one on the unconsumed queue is still waiting in Redis.
    assert queued.state == "PENDING"
    with app.connection_for_write() as conn:
        assert conn.default_channel.client.llen(NOBODY_QUEUE) == 1


@pytest.mark.slow
def test_subprocess_prefork_worker_runs_a_task_and_is_reaped(app):
    from tests.proj import add

    with harness.run_subprocess_worker(pool="prefork", concurrency=2) as w:
        pool_pids = w.child_pids()
        assert len(pool_pids) >= 2
        assert add.delay(2, 3).get(timeout=30) == 5
    assert w.proc.returncode is not None
    for pid in [w.pid, *pool_pids]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_run_celery_invokes_the_real_cli(app, redis_server):
    result = harness.run_celery("report", timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"results:{redis_server.url}" in result.stdout


def test_start_celery_can_be_interrupted(app):
    proc = harness.start_celery("worker", "-P", "solo", "-Q", "fileintel-harness-sigint",
                                "--without-mingle", "--without-gossip", "--loglevel", "INFO")
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the worker logs "<hostname> ready." once consuming
            seen.append(line)
            if " ready." in line:
                break
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=30)
        output = "".join(seen) + rest + out
        # Celery's SIGINT handler does a warm shutdown and exits with EX_FAILURE (1).
        assert "warm shutdown" in output.lower(), output
        assert proc.returncode == 1, output
    finally:
        harness.kill_process_tree(proc)


def test_service_skip_turns_into_failure_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        harness.requires_service("Nothing", "127.0.0.1", harness.free_port())
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        harness.requires_service("Nothing", "127.0.0.1", harness.free_port())
