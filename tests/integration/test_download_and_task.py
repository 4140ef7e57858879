"""stream_result (bounded-memory download) and FileIntelTask's store-time policies."""

from __future__ import annotations

import io
import json
import logging
import tracemalloc
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest

import celery_ext
from celery_ext import ResultNotSerializable, ResultTooLarge
from celery_ext.download import ResultUnavailable
from celery_ext.records import store_for
from tests import proj
from tests.status_checks import wait_for_phase

pytestmark = pytest.mark.integration


def download(app, task_id, chunk_size=1024 * 1024) -> bytes:
    sink = io.BytesIO()
    written = celery_ext.stream_result(app, task_id, sink.write, chunk_size=chunk_size)
    assert written == len(sink.getvalue())
    return sink.getvalue()


@pytest.fixture
def small_limit(app, monkeypatch):
    """Lower max_result_bytes to 1,000 so modest results take the streaming path."""
    store = store_for(app)
    monkeypatch.setattr(store, "settings", replace(store.settings, max_result_bytes=1000))


def test_an_inline_result_downloads_as_its_validated_json(app, worker):
    result = proj.echo.delay({"a": [1, 2], "b": "ü"})
    result.get(timeout=10)
    assert json.loads(download(app, result.id)) == {"a": [1, 2], "b": "ü"}


def test_a_large_result_is_cut_exactly_out_of_the_stored_payload(app, worker, small_limit):
    # "traceback" keys inside the result and in the (extended) kwargs must not confuse it.
    value = {"traceback": None, "children": [], "data": "x" * 5000, "n": [1.5, None]}
    result = proj.echo.apply_async(kwargs={"value": value})
    result.get(timeout=10)
    assert celery_ext.describe(app, result.id).result_info.reason.value == "too_large"
    assert json.loads(download(app, result.id, chunk_size=777)) == value


def test_streaming_a_huge_result_keeps_memory_bounded(app, redis_client):
    task_id = str(uuid.uuid4())
    payload = app.backend.encode({"status": "SUCCESS", "result": "y" * 40_000_000, "traceback": None,
                                  "children": [], "date_done": datetime.now(timezone.utc).isoformat(),
                                  "task_id": task_id})
    redis_client.set(store_for(app).meta_key(task_id), payload, ex=600)
    del payload
    total = 0

    def count(chunk: bytes) -> None:
        nonlocal total
        total += len(chunk)

    tracemalloc.start()
    try:
        celery_ext.stream_result(app, task_id, count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 40_000_002  # the JSON string with its quotes
    assert peak < 8_000_000, f"streaming a 40 MB result allocated {peak} bytes at its peak"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: proj.fail.delay("x"), "failed"),
        (lambda: proj.add.apply_async((1, 1), queue=proj.NOBODY_QUEUE), "not ready"),
    ],
)
def test_no_result_no_download(app, worker, make, says):
    result = make()
    wait_for_phase(app, result.id, "failed" if says == "failed" else "queued")
    with pytest.raises(ResultUnavailable, match=says):
        download(app, result.id)


def test_unknown_ids_have_nothing_to_download(app):
    with pytest.raises(ResultUnavailable, match="unknown"):
        download(app, str(uuid.uuid4()))


def test_result_policy_fail_names_the_path(app, monkeypatch):
    monkeypatch.setitem(app.conf, "fileintel_result_policy", "fail")
    outcome = proj.odd_values.apply()
    assert isinstance(outcome.result, ResultNotSerializable)
    assert "set at $.tags" in str(outcome.result)


def test_result_policy_warn_keeps_the_value_and_logs(app, monkeypatch, caplog):
    monkeypatch.setitem(app.conf, "fileintel_result_policy", "warn")
    with caplog.at_level(logging.WARNING, logger="celery_ext.task"):
        outcome = proj.odd_values.apply()
    assert outcome.result["tags"] == {"a"}
    assert "returned non-JSON parts at $.tags" in caplog.text


def test_large_results_are_stored_and_logged_or_refused(app, monkeypatch, caplog):
    monkeypatch.setitem(app.conf, "fileintel_max_result_bytes", 100)

    @app.task(base=celery_ext.FileIntelTask, name="tests.big_checked", shared=False)
    def big_checked():
        return "z" * 500

    with caplog.at_level(logging.WARNING, logger="celery_ext.task"):
        assert big_checked.apply().result == "z" * 500
    assert "returned 502 bytes" in caplog.text
    monkeypatch.setitem(app.conf, "fileintel_result_size_policy", "fail")
    assert isinstance(big_checked.apply().result, ResultTooLarge)


def test_bad_setting_values_fail_at_install_with_a_clear_message():
    from celery import Celery

    bad = Celery("bad", set_as_current=False)
    bad.conf.fileintel_result_policy = "shrug"
    with pytest.raises(ValueError, match="fileintel_result_policy must be"):
        celery_ext.install(bad)
