"""describe() classifies every case right, against a real Redis and a real worker."""

from __future__ import annotations

import tracemalloc
import uuid
from datetime import datetime, timezone

import pytest

import celery_ext
from celery_ext import BackendUnavailable, InvalidTaskId
from celery_ext.records import store_for
from tests import proj
from tests.status_checks import (
    describe_checked,
    revoke_confirmed,
    wait_for,
    wait_for_phase,
)

pytestmark = pytest.mark.integration


def iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_succeeded(app, worker):
    before = datetime.now(timezone.utc)
    result = proj.add.delay(2, 3)
    assert result.get(timeout=10) == 5
    status = wait_for(app, result.id, lambda s: s.runtime_s is not None)
    doc = status.to_dict()
    assert (doc["phase"], doc["state"], doc["ready"], doc["successful"]) == ("succeeded", "SUCCESS", True, True)
    assert doc["result"] == 5  # the return value itself, not a wrapper
    assert doc["result_info"] == {"bytes": doc["result_info"]["bytes"], "inline": True, "placeholders": [], "reason": None}
    assert doc["result_info"]["bytes"] > 0
    assert doc["name"] == "tests.proj.add"
    assert doc["worker"]
    assert doc["retries"] == 0
    assert before <= iso(doc["queued_at"]) <= iso(doc["started_at"]) <= iso(doc["completed_at"])
    assert doc["result_available"] is True and doc["expired"] is False
    assert 3500 < doc["expires_in_s"] <= 3600
    assert iso(doc["result_expires_at"]) > iso(doc["completed_at"])


def test_times_are_the_tasks_not_the_time_of_asking(app, worker):
    result = proj.add.delay(1, 1)
    result.get(timeout=10)
    first = wait_for(app, result.id, lambda s: s.runtime_s is not None)
    # Asked again once the result's TTL has visibly counted down (not after a guessed sleep).
    again = wait_for(app, result.id, lambda s: s.expires_in_s < first.expires_in_s)
    assert again.completed_at == first.completed_at == result.date_done.replace(tzinfo=timezone.utc)
    assert again.result_expires_at == first.result_expires_at  # only expires_in_s counts down
    assert again.expires_in_s < first.expires_in_s


def test_failed_has_type_message_and_traceback(app, worker):
    result = proj.fail.delay("disk full on /data")
    status = wait_for_phase(app, result.id, "failed")
    doc = status.to_dict()
    assert (doc["state"], doc["ready"], doc["successful"]) == ("FAILURE", True, False)
    assert doc["error"]["type"] == "ValueError"
    assert doc["error"]["module"] == "builtins"
    assert doc["error"]["message"] == "disk full on /data"
    assert "raise ValueError(message)" in doc["error"]["traceback"]
    assert doc["result"] is None and doc["result_info"]["reason"] == "failed"


def test_revoked(app, worker):
    task_id = str(uuid.uuid4())
    revoke_confirmed(app, task_id)  # the worker holds the id before the task arrives
    proj.add.apply_async((1, 2), task_id=task_id)
    status = wait_for_phase(app, task_id, "revoked")
    assert status.state == "REVOKED"
    assert status.error is not None and status.error.type == "TaskRevokedError"
    doc = status.to_dict()
    assert doc["outcome"] == doc["result_info"]["reason"] == "revoked"


def test_retrying(app, worker):
    result = proj.retry_later.delay()
    status = wait_for_phase(app, result.id, "retrying")
    assert status.state == "RETRY"
    assert status.ready is False
    assert status.result_info.reason.value == "not_ready"


def test_running_without_progress_is_known_from_the_record(app, worker):
    # task_track_started is off in tests/proj.py: Celery itself stores nothing while it runs.
    result = proj.sleep.delay(2)
    status = wait_for_phase(app, result.id, "running")
    assert status.state == "STARTED"
    assert status.progress is None
    assert status.started_at is not None and status.completed_at is None
    result.get(timeout=10)


def test_running_with_progress(app, worker):
    result = proj.progress_steps.delay(2, 0.05, hold=2)
    status = wait_for(app, result.id, lambda s: s.progress is not None and s.progress.current == 2)
    doc = status.to_dict()
    assert doc["phase"] == "running" and doc["state"] == "PROGRESS"
    assert doc["progress"]["total"] == 2 and doc["progress"]["percent"] == 100.0
    assert doc["progress"]["message"] == "step 2 of 2"
    assert doc["progress"]["updated_at"] is not None
    result.get(timeout=10)


def test_malformed_progress_is_normalised_and_the_corrections_listed(app, worker):
    result = proj.raw_progress.delay({"current": "15", "total": 10, "percentage": 900, "message": "m" * 700}, 2)
    status = wait_for(app, result.id, lambda s: s.progress is not None)
    progress = status.progress
    assert (progress.current, progress.total, progress.percent) == (10, 10, 100.0)
    assert len(progress.message) == 500
    assert len(progress.issues) >= 3
    result.get(timeout=10)


def test_queued_is_told_apart_from_unknown(app, worker):
    result = proj.add.apply_async((1, 2), queue=proj.NOBODY_QUEUE)
    status = wait_for_phase(app, result.id, "queued")
    assert status.state == "SENT"
    assert status.queued_at is not None
    assert any("no worker has started it" in n for n in status.notes)


def test_never_existed_is_unknown_and_says_why(app):
    status = describe_checked(app, str(uuid.uuid4()))
    assert status.phase.value == "unknown" and status.state is None
    assert status.result_info.reason.value == "unknown"
    assert any("Nothing is known about this id" in n for n in status.notes)


def test_result_evicted_early(app, worker, redis_client):
    result = proj.add.delay(20, 22)
    result.get(timeout=10)
    wait_for(app, result.id, lambda s: s.runtime_s is not None)
    redis_client.delete(store_for(app).meta_key(result.id))
    doc = describe_checked(app, result.id).to_dict()
    assert (doc["phase"], doc["expired"], doc["result_available"]) == ("succeeded", True, False)
    assert doc["result"] is None and doc["outcome"] == doc["result_info"]["reason"] == "evicted"
    assert doc["completed_at"] is not None  # from the record
    assert any("ahead of its expiry" in n for n in doc["notes"])


@pytest.mark.slow
def test_succeeded_then_expired(app, subprocess_worker):
    subprocess_worker(pool="prefork", concurrency=1, env={"FILEINTEL_TEST_RESULT_EXPIRES": "2"})
    result = proj.add.delay(1, 1)
    assert result.get(timeout=30) == 2
    fresh = describe_checked(app, result.id)
    assert fresh.expires_in_s is not None and fresh.expires_in_s <= 2
    status = wait_for(app, result.id, lambda s: s.expired, timeout=10)
    doc = status.to_dict()
    assert (doc["phase"], doc["result_available"], doc["result_info"]["reason"]) == ("succeeded", False, "expired")
    assert iso(doc["completed_at"]) < iso(doc["result_expires_at"]) <= datetime.now(timezone.utc)
    assert any("its result expired at" in n and "result_expires=2 s" in n for n in doc["notes"])


def test_ignore_result_tasks(app, worker):
    result = proj.fire_and_forget.delay(7)
    status = wait_for_phase(app, result.id, "succeeded")
    assert status.expired is False and status.result_available is False
    assert status.result_info.reason.value == "no_result" and status.outcome.value == "no_result"


def test_custom_states_are_kept_and_mean_running(app, worker):
    result = proj.custom_state.delay("EXTRACTING", 2)
    status = wait_for(app, result.id, lambda s: s.state == "EXTRACTING")
    assert status.phase.value == "running"
    assert status.progress is None  # {"stage": ...} is not progress
    result.get(timeout=10)


def test_non_serializable_results_become_placeholders_with_file_intel_task(app, worker):
    result = proj.odd_values.delay()
    status = wait_for(app, result.id, lambda s: s.phase.value == "succeeded" and s.result_info.placeholders)
    doc = status.to_dict()
    paths = {p["path"] for p in doc["result_info"]["placeholders"]}
    assert paths == {"$.tags", "$.blob", "$.when", "$.price", "$.ratio", "$.items[1]"}
    assert doc["result"]["items"][0] == 1


def test_without_file_intel_task_celery_loses_the_work_to_encode_error(app, worker):
    result = proj.plain_odd_values.delay()
    status = wait_for_phase(app, result.id, "failed")
    assert status.error.type == "EncodeError"


def test_too_large_results_are_measured_not_loaded(app, worker, monkeypatch, redis_client):
    result = proj.big_result.delay(200_000)
    result.get(timeout=10)
    monkeypatch.setattr(store_for(app), "settings", _with(store_for(app).settings, max_result_bytes=50_000))
    doc = describe_checked(app, result.id).to_dict()
    assert doc["phase"] == "succeeded" and doc["result_available"] is True
    assert doc["result"] is None
    assert doc["result_info"]["reason"] == "too_large"
    assert doc["result_info"]["bytes"] == redis_client.strlen(store_for(app).meta_key(result.id))
    assert any("download it instead" in n for n in doc["notes"])


def test_describing_a_huge_result_does_not_load_it(app, redis_client):
    """A 60 MB stored result: describe's peak Python allocation stays far below it."""
    task_id = str(uuid.uuid4())
    backend = app.backend
    payload = backend.encode({"status": "SUCCESS", "result": "x" * 60_000_000, "traceback": None,
                              "children": [], "date_done": datetime.now(timezone.utc).isoformat(), "task_id": task_id})
    redis_client.set(store_for(app).meta_key(task_id), payload, ex=600)
    del payload
    tracemalloc.start()
    try:
        status = describe_checked(app, task_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status.phase.value == "succeeded"  # read from the payload's first bytes
    assert status.result_info.reason.value == "too_large"
    assert peak < 2_000_000, f"describe allocated {peak} bytes for a 60 MB result"


def test_many_ids_in_one_call(app, worker):
    ok = proj.add.delay(1, 2)
    ok.get(timeout=10)
    statuses = celery_ext.describe_many(app, [ok.id, str(uuid.uuid4())])
    assert [s.phase.value for s in statuses] == ["succeeded", "unknown"]


@pytest.mark.parametrize("bad", ["", "x" * 10_000, "a\x00b", "celery-task-meta-*", "a?b"])
def test_malformed_ids_are_refused_before_redis(app, bad, monkeypatch):
    def no_redis(*args, **kwargs):
        raise AssertionError("Redis was called for a malformed id")

    monkeypatch.setattr(type(store_for(app)), "client", no_redis)
    with pytest.raises(InvalidTaskId):
        celery_ext.describe(app, bad)


def test_redis_down_is_one_clear_error_with_the_password_redacted(redis_server):
    from celery import Celery

    from tests.harness import free_port

    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    down = celery_ext.install(Celery("down", broker=url, backend=url, set_as_current=False))
    with pytest.raises(BackendUnavailable) as info:
        celery_ext.describe(down, str(uuid.uuid4()))
    message = str(info.value)
    assert "s3cret" not in message and "***" in message and "127.0.0.1" in message
    assert "Check that Redis is running" in message


def _with(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)
