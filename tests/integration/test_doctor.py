"""``celery fileintel doctor``: each check on hand-built inputs, then one real run against the
private Redis with a worker beating, through the real ``celery`` executable."""

from __future__ import annotations

import json

import pytest

from celery_ext.doctor import (
    Finding,
    Level,
    check_backend,
    check_clock,
    check_expiry,
    check_flower,
    check_installed,
    check_maxmemory,
    check_pubsub,
    check_workers,
    exit_code_for,
)
from tests.harness import run_celery


@pytest.mark.parametrize(
    "finding, level",
    [
        (check_installed(True), Level.OK),
        (check_installed(False), Level.PROBLEM),
        (check_backend("RedisBackend", True, True), Level.OK),
        (check_backend("DatabaseBackend", False, True), Level.WARN),
        (check_backend("RPCBackend", False, False), Level.PROBLEM),
        (check_expiry(86400, 7 * 86400), Level.OK),
        (check_expiry(None, 7 * 86400), Level.WARN),
        (check_maxmemory("noeviction", 10**9), Level.OK),
        (check_maxmemory("allkeys-lru", 0), Level.OK),  # no maxmemory: nothing is evicted
        (check_maxmemory("allkeys-lru", 10**9), Level.WARN),
        (check_maxmemory("volatile-ttl", 10**9), Level.WARN),
        (check_maxmemory(None, None), Level.WARN),
        (check_clock(0.3), Level.OK),
        (check_clock(-5.0), Level.WARN),
        (check_workers([3.0, 900.0], 60), Level.OK),
        (check_workers([900.0], 60), Level.WARN),
        (check_workers([], 60), Level.WARN),
        (check_pubsub(True), Level.OK),
        (check_pubsub(None), Level.OK),
        (check_pubsub(False), Level.PROBLEM),
        (check_flower("2.0.1"), Level.OK),
        (check_flower("2.2.0"), Level.OK),
        (check_flower("1.2.0"), Level.WARN),
        (check_flower(None), Level.OK),
    ],
)
def test_each_check(finding, level):
    assert finding.level is level
    if level is not Level.OK:
        assert finding.fix  # every finding that is not ok says what to do


def test_exit_codes_by_the_worst_finding():
    ok, warn = Finding("a", Level.OK, ""), Finding("b", Level.WARN, "")
    problem, down = Finding("c", Level.PROBLEM, ""), Finding("d", Level.UNAVAILABLE, "")
    assert [exit_code_for(f) for f in ([ok], [ok, warn], [warn, problem], [problem, down])] == [0, 1, 3, 69]


@pytest.mark.integration
def test_doctor_against_the_private_redis_with_a_worker(app, worker):
    run = run_celery("fileintel", "doctor", "--json")
    assert "Traceback" not in run.stderr, run.stderr
    doc = json.loads(run.stdout)
    levels = {f["check"]: f["level"] for f in doc["findings"]}
    assert levels["install"] == levels["backend"] == levels["workers"] == levels["pubsub"] == "ok", doc
    assert levels["clock"] == "ok" and levels["maxmemory"] in ("ok", "warn")
    assert run.returncode == doc["exit_code"] in (0, 1)
    text = run_celery("fileintel", "doctor")
    assert "pub/sub works" in text.stdout and text.returncode == run.returncode


@pytest.mark.integration
def test_doctor_with_redis_down_says_so(app, redis_server):
    redis_server.stop()
    try:
        run = run_celery("fileintel", "doctor")
    finally:
        redis_server.start()
    assert run.returncode == 69, run.stdout + run.stderr
    assert "did not answer" in run.stdout and "Traceback" not in run.stderr
