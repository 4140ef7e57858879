"""``celery fileintel doctor``'s checks, each on hand-built inputs, and its exit codes."""

from __future__ import annotations

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
