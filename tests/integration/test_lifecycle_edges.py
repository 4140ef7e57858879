"""The edges of a task's life, against the private Redis and real workers: just sent, its
worker killed mid-task, a busy solo worker, revoked while running, a failure whose result
expired. (What the facts mean is unit-tested in test_verdict.py.)
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

import celery_ext
from celery_ext import running
from celery_ext.records import recent_task_ids, store_for
from celery_ext.status import Outcome, Phase
from celery_ext.verdict import sentence
from tests import harness, proj
from tests.harness import LOST_AFTER, kill_worker_tree, lost_after, run_celery
from tests.status_checks import (
    describe_checked,
    revoke_confirmed,
    wait_for,
    wait_for_phase,
)

pytestmark = pytest.mark.integration

def test_describe_right_after_send_is_never_unknown(app):
    """The "sent" record waits in the writer's queue; this process's readers see it there."""
    ids = [proj.add.apply_async((i, i), queue=proj.NOBODY_QUEUE).id for i in range(200)]
    phases = [celery_ext.describe(app, task_id).phase for task_id in ids]
    assert phases.count(Phase.UNKNOWN) == 0
    assert set(phases) == {Phase.QUEUED}
    statuses = celery_ext.describe_many(app, ids)
    assert {s.phase for s in statuses} == {Phase.QUEUED}
    assert all(s.queued_at is not None for s in statuses)


def test_another_process_sees_a_sent_task_as_queued(app):
    """An idle writer writes at once: no batch window between apply_async() and Redis."""
    from celery_ext.writer import flush_all

    task_id = proj.add.apply_async((1, 1), queue=proj.NOBODY_QUEUE).id
    flush_all()
    run = run_celery("fileintel", "status", task_id, "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["phase"], doc["outcome"]) == ("queued", "not_ready")


@pytest.mark.slow
def test_a_task_whose_worker_was_killed_reads_lost(app, subprocess_worker):
    worker = subprocess_worker(pool="prefork", concurrency=1, env={"FILEINTEL_TEST_LOST_AFTER": str(LOST_AFTER)})
    result = proj.sleep.delay(60)
    with lost_after(app, LOST_AFTER):
        wait_for_phase(app, result.id, "running", timeout=20)
        killed_at = time.monotonic()
        kill_worker_tree(worker)
        status = wait_for(app, result.id, lambda s: s.phase is Phase.LOST, timeout=LOST_AFTER * 5)
        assert time.monotonic() - killed_at >= LOST_AFTER * 0.5  # not before its worker went quiet
        assert status.outcome is Outcome.LOST and status.worker == worker.hostname
        assert status.worker_last_seen_at is not None
        assert any("died" in n for n in status.notes)

        # wait ends at once on it, exit 1, and says the worker died; result says the same.
        env = {"FILEINTEL_TEST_LOST_AFTER": str(LOST_AFTER)}
        started = time.monotonic()
        run = run_celery("fileintel", "wait", result.id, "--timeout", "60", env=env)
        assert run.returncode == 1, run.stderr
        assert time.monotonic() - started < 30  # far from its 60 s timeout
        assert "lost" in run.stderr and "died" in run.stderr
        run = run_celery("fileintel", "result", result.id, env=env)
        assert run.returncode == 1 and "died" in run.stderr


@pytest.mark.slow
def test_a_busy_solo_worker_is_never_lost(app, subprocess_worker):
    """-P solo runs the task on the main thread; the liveness beat has a thread of its own."""
    subprocess_worker(pool="solo", concurrency=1, env={"FILEINTEL_TEST_LOST_AFTER": "1"})
    result = proj.sleep.delay(LOST_AFTER * 2)  # six times lost_after
    with lost_after(app, 1.0):
        wait_for_phase(app, result.id, "running", timeout=20)
        phases = set()
        while not (status := describe_checked(app, result.id)).phase.finished:
            phases.add(status.phase)
            time.sleep(0.1)
        assert phases == {Phase.RUNNING}
        assert status.outcome is Outcome.OK


@pytest.mark.slow
def test_a_task_revoked_while_running_keeps_its_runtime_and_progress(app, subprocess_worker):
    subprocess_worker(pool="prefork", concurrency=1)
    result = proj.progress_steps.delay(2, 0.05, hold=60)
    running = wait_for(app, result.id, lambda s: s.progress is not None and s.progress.percent == 100.0, timeout=20)
    # Revoke once it has run 0.3 s (the runtime asserted below), by its own start time.
    assert running.started_at is not None
    harness.wait_for(lambda: datetime.now(timezone.utc) - running.started_at >= timedelta(seconds=0.3))
    revoke_confirmed(app, result.id, terminate=True, signal="SIGKILL")
    status = wait_for_phase(app, result.id, "revoked", timeout=20)
    assert status.outcome is Outcome.REVOKED
    status = wait_for(app, result.id, lambda s: s.runtime_s is not None, timeout=5)
    assert status.runtime_s >= 0.3
    assert status.progress is not None and status.progress.message == "step 2 of 2"
    run = run_celery("fileintel", "result", result.id)
    assert run.returncode == 1 and "revoked" in run.stderr


@pytest.mark.parametrize("task", ["ignored", "ignored_after_progress"])
def test_a_task_that_raised_ignore_has_ended_and_its_worker_forgets_it(app, worker, task):
    """Ignore: no signal, nothing stored by Celery. It must not read "running" for good, and
    the worker must not keep its run."""
    result = getattr(proj, task).delay()
    status = wait_for(app, result.id, lambda s: s.phase is Phase.SUCCEEDED)
    assert status.state == "IGNORED" and status.outcome is Outcome.NO_RESULT and status.result is None
    assert status.completed_at is not None and status.runtime_s is not None
    assert "with Ignore" in sentence(status)
    assert running.current(result.id) is None  # no "started" write will follow


def test_a_task_that_rejected_its_message_failed(app, worker):
    rejected = proj.rejected.delay("bad input")
    # Celery 5.7 stores a failure for it itself (which may come before our record's end);
    # older versions store nothing: the record tells.
    status = wait_for(app, rejected.id, lambda s: s.phase is Phase.FAILED)
    assert status.state in ("REJECTED", "FAILURE") and status.error is not None, status
    assert status.error.type == "Reject" and "bad input" in status.error.message
    harness.wait_for(lambda: rejected.id in recent_task_ids(app, "failed"), what="the record's end in the failed index")


def test_a_success_that_celery_wrote_a_late_retry_over_reads_succeeded(app, worker, redis_client):
    """A task retried at once can succeed while its first run still stores RETRY (Celery
    reads, then writes): the RETRY lands over the success. Made here by storing that RETRY by
    hand, as Celery's late write would, with the result's TTL."""
    from celery.exceptions import Retry

    result = proj.add.delay(2, 3)
    assert result.get(timeout=30) == 5
    wait_for(app, result.id, lambda s: s.runtime_s is not None)  # the record has its end
    backend, key = app.backend, store_for(app).meta_key(result.id)
    retry = backend.encode_result(Retry("retry at once"), "RETRY")  # as Celery's store_result does
    meta = backend._get_result_meta(result=retry, state="RETRY", traceback=None, request=None)
    redis_client.set(key, backend.encode({**meta, "task_id": result.id}), ex=redis_client.ttl(key))
    status = describe_checked(app, result.id)
    assert status.phase is Phase.SUCCEEDED and status.outcome is Outcome.EVICTED, status
    assert any("stored RETRY over its result" in note for note in status.notes)
    run = run_celery("fileintel", "result", result.id)
    assert run.returncode == 3 and "written over" in run.stderr, run.stderr


def test_a_failure_keeps_its_traceback_after_its_result_expired(app, worker, redis_client):
    result = proj.fail.delay("disk full on /data")
    wait_for(app, result.id, lambda s: s.phase is Phase.FAILED and s.runtime_s is not None)
    redis_client.delete(store_for(app).meta_key(result.id))  # as result_expires would
    status = describe_checked(app, result.id)
    assert status.outcome is Outcome.FAILED and status.expired is True
    assert status.error is not None and status.error.message == "disk full on /data"
    assert status.error.traceback and "raise ValueError(message)" in status.error.traceback
    run = run_celery("fileintel", "status", result.id)
    assert run.returncode == 0, run.stderr
    assert "ValueError: disk full on /data" in run.stdout and "raise ValueError(message)" in run.stdout


def test_a_huge_traceback_is_kept_as_head_and_tail():
    from celery_ext.receivers import bounded_traceback

    text = "Traceback (most recent call last):\n" + "".join(f"  frame {i}\n" for i in range(5000)) + "ValueError: x"
    kept = bounded_traceback(text, 4096)
    assert kept is not None and len(kept) < 4096 + 60
    assert kept.startswith("Traceback (most recent call last):") and kept.endswith("ValueError: x")
    assert "characters cut" in kept
    assert bounded_traceback("short", 4096) == "short" and bounded_traceback(None, 4096) is None
