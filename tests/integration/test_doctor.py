"""``celery fileintel doctor`` for real: against the private Redis with a worker beating, and
with Redis down, through the real ``celery`` executable."""

from __future__ import annotations

import json

import pytest

from tests.harness import run_celery


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
