"""The Flower plugin's routes against the private Redis and a real worker.

Flower runs in-process (``flower_fileintel.testing.FlowerServer``: the same application
``celery fileintel flower`` builds) and is spoken to over real HTTP.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from celery_ext import describe
from flower_fileintel.testing import FlowerServer, http_get, sse_events
from tests.harness import feed_events, wait_for
from tests.status_checks import reports_progress_as_started

pytestmark = pytest.mark.integration

AUTH = ("alice", "s3cret")


@pytest.fixture
def flower(app):
    with FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as server:
        yield server


def get(server, path, **kwargs):
    return http_get(server.url(path), auth=AUTH, **kwargs)


def without_countdown(doc):
    """The document minus what moves with the clock. ``result_expires_at`` is compared
    separately: describe() derives it from the key's TTL at read time, so it can differ by
    the milliseconds between two reads."""
    return {k: v for k, v in doc.items() if k not in ("expires_in_s", "result_expires_at")}


def same_document(a, b):
    from datetime import datetime

    assert without_countdown(a) == without_countdown(b)
    if a["result_expires_at"] is None or b["result_expires_at"] is None:
        assert a["result_expires_at"] == b["result_expires_at"]
    else:
        delta = datetime.fromisoformat(a["result_expires_at"]) - datetime.fromisoformat(b["result_expires_at"])
        assert abs(delta.total_seconds()) < 5


# --------------------------------------------------------------------------------------------
# status API


def test_status_api_is_the_task_status_document(app, worker, flower):
    result = app.tasks["tests.proj.add"].delay(2, 3)
    assert result.get(timeout=10) == 5
    # The worker's record lands a few milliseconds after the result: compare once it has.
    wait_for(lambda: describe(app, result.id).runtime_s is not None)
    resp = get(flower, f"/api/fileintel/task/{result.id}")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert doc["schema"] == "fileintel.task-status/1"
    assert doc["phase"] == "succeeded" and doc["result"] == 5
    same_document(doc, describe(app, result.id).to_dict())


@pytest.mark.slow
def test_status_api_matches_the_cli_json(app, worker, flower):
    from tests.harness import run_celery

    result = app.tasks["tests.proj.echo"].delay({"a": [1, 2, 3]})
    result.get(timeout=10)
    wait_for(lambda: describe(app, result.id).runtime_s is not None)
    cli = run_celery("fileintel", "status", result.id, "--json")
    assert cli.returncode == 0, cli.stderr
    api = get(flower, f"/api/fileintel/task/{result.id}").json()
    same_document(api, json.loads(cli.stdout))


def test_status_api_answers_200_for_an_unknown_task(app, flower):
    resp = get(flower, "/api/fileintel/task/never-sent-0000")
    assert resp.status == 200
    assert resp.json()["phase"] == "unknown"


@pytest.mark.parametrize(
    "bad_id", ["a*b", "x" * 300, "has%20space", "ctl%01char", "q%3Fmark"]
)
@pytest.mark.parametrize(
    "template",
    [
        "/api/fileintel/task/{}",
        "/api/fileintel/task/{}/result",
        "/api/fileintel/task/{}/result/download",
        "/fileintel/task/{}/status.json",
        "/fileintel/task/{}/download",
    ],
)
def test_malformed_ids_are_400_with_a_json_message(app, flower, bad_id, template):
    resp = get(flower, template.format(bad_id))
    assert resp.status == 400
    body = resp.json()
    assert body["code"] == "invalid_task_id"
    assert "task id" in body["message"]


def test_malformed_id_on_a_page_is_a_400_page(app, flower):
    resp = get(flower, "/fileintel/task/a*b")
    assert resp.status == 400
    assert "malformed task id" in resp.text
    assert "<html" in resp.text


# --------------------------------------------------------------------------------------------
# result API


def test_result_is_the_bare_return_value(app, worker, flower):
    result = app.tasks["tests.proj.echo"].delay({"x": [1, "two", None]})
    result.get(timeout=10)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 200
    assert resp.json() == {"x": [1, "two", None]}
    assert resp.headers["X-FileIntel-Placeholders"] == "0"


def _finished_with_placeholders(app):
    """A finished task whose result needed placeholders, once its record lists them (the
    worker writes the record just after the result)."""
    result = app.tasks["tests.proj.odd_values"].delay()
    result.get(timeout=10)
    wait_for(lambda: describe(app, result.id).result_info.placeholders)
    return result


def test_result_with_placeholders_is_valid_json_and_says_so(app, worker, flower):
    result = _finished_with_placeholders(app)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 200
    assert int(resp.headers["X-FileIntel-Placeholders"]) >= 1
    value = json.loads(resp.body)  # strict JSON: NaN would not parse back as a placeholder
    assert "NaN" not in resp.text
    assert value["price"] is not None


def test_result_of_a_running_task_is_202_with_the_status(app, worker, flower):
    result = app.tasks["tests.proj.progress_steps"].delay(1, 0.01, hold=3)
    wait_for(lambda: describe(app, result.id).progress is not None)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 202
    doc = resp.json()
    assert doc["phase"] == "running" and doc["progress"]["message"] == "step 1 of 1"
    result.get(timeout=10)


def test_result_of_an_unknown_task_is_404(app, flower):
    resp = get(flower, "/api/fileintel/task/never-sent-1111/result")
    assert resp.status == 404
    body = resp.json()
    assert body["code"] == "unknown_task" and "never-sent-1111" in body["message"]


def test_result_of_a_failed_task_is_409_with_the_error(app, worker, flower):
    result = app.tasks["tests.proj.fail"].delay("boom went the task")
    with pytest.raises(ValueError):
        result.get(timeout=10)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 409
    body = resp.json()
    assert body["code"] == "task_failed"
    assert body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "boom went the task"
    assert "Traceback" in (body["error"]["traceback"] or "")


def test_result_of_a_revoked_task_is_409(app, flower):
    from tests.proj import NOBODY_QUEUE

    result = app.tasks["tests.proj.add"].apply_async((1, 1), queue=NOBODY_QUEUE)
    app.backend.mark_as_revoked(result.id, reason="revoked by test")
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 409
    assert resp.json()["code"] == "task_revoked"


def _evicted_result(app, redis_client):
    """A task that succeeded and whose stored result was then deleted ahead of its expiry."""
    from celery_ext.records import meta_key, store_for

    result = app.tasks["tests.proj.add"].delay(1, 2)
    result.get(timeout=10)
    record_key = store_for(app).record_key(result.id)
    wait_for(lambda: redis_client.hget(record_key, "result_bytes"))  # the worker's final record write
    redis_client.delete(meta_key(app, result.id))
    wait_for(lambda: describe(app, result.id).expired)
    return result


def test_result_evicted_before_expiry_is_410(app, worker, flower, redis_client):
    result = _evicted_result(app, redis_client)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 410
    body = resp.json()
    assert body["code"] == "result_evicted" and body["task"]["outcome"] == "evicted"
    assert result.id in body["message"]
    assert body["task"]["expired"] is True


def test_result_of_an_ignore_result_task_says_none_is_stored(app, worker, flower):
    result = app.tasks["tests.proj.fire_and_forget"].delay(7)
    wait_for(lambda: describe(app, result.id).ready)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 404
    assert resp.json()["code"] == "no_result"


@pytest.mark.slow
def test_large_result_is_413_and_streams_in_full_from_download(app, worker, flower):
    size = 11 * 1024 * 1024  # above the 10 MiB default fileintel_max_result_bytes
    result = app.tasks["tests.proj.big_result"].delay(size)
    result.get(timeout=60)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result")
    assert resp.status == 413
    body = resp.json()
    assert body["code"] == "result_too_large"
    assert body["bytes"] > size
    assert body["download_url"] == f"/api/fileintel/task/{result.id}/result/download"

    download = get(flower, body["download_url"], timeout=60)
    assert download.status == 200
    assert download.headers["Content-Disposition"] == f'attachment; filename="{result.id}.json"'
    assert download.headers.get("Transfer-Encoding") == "chunked"
    assert json.loads(download.body) == "x" * size

    page = get(flower, f"/fileintel/task/{result.id}")
    assert page.status == 200
    assert "not loaded for this page" in page.text


def test_download_of_small_result_and_error_statuses(app, worker, flower):
    ok = app.tasks["tests.proj.echo"].delay([1, 2, 3])
    ok.get(timeout=10)
    resp = get(flower, f"/api/fileintel/task/{ok.id}/result/download")
    assert resp.status == 200 and json.loads(resp.body) == [1, 2, 3]
    page_link = get(flower, f"/fileintel/task/{ok.id}/download")
    assert page_link.status == 200 and json.loads(page_link.body) == [1, 2, 3]

    assert get(flower, "/api/fileintel/task/never-sent-2/result/download").status == 404
    failed = app.tasks["tests.proj.fail"].delay("no")
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    resp = get(flower, f"/api/fileintel/task/{failed.id}/result/download")
    assert resp.status == 409
    assert "Content-Disposition" not in resp.headers


def test_wait_returns_the_result_when_it_is_ready(app, worker, flower):
    result = app.tasks["tests.proj.progress_steps"].delay(3, 0.2)
    resp = get(flower, f"/api/fileintel/task/{result.id}/result?wait=20")
    assert resp.status == 200
    assert resp.json() == {"steps": 3}


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf"])
def test_bad_wait_values_are_400(app, flower, value):
    resp = get(flower, f"/api/fileintel/task/some-task/result?wait={value}")
    assert resp.status == 400
    assert resp.json()["code"] == "invalid_argument"


def test_wait_is_capped_at_30_seconds(app, flower, monkeypatch):
    """``?wait=3600`` waits 30 s, not an hour: the handler's wait is recorded, not waited out."""
    from flower_fileintel.handlers.api import ResultApiHandler
    from tests.proj import NOBODY_QUEUE

    asked: list[float] = []

    async def recorded_wait(self, task_id, status, seconds):
        asked.append(seconds)
        return status

    monkeypatch.setattr(ResultApiHandler, "_wait", recorded_wait)
    queued = app.tasks["tests.proj.add"].apply_async((1, 1), queue=NOBODY_QUEUE)
    resp = get(flower, f"/api/fileintel/task/{queued.id}/result?wait=3600")
    assert resp.status == 202
    assert asked == [30.0]


@pytest.mark.slow
def test_waiting_requests_hold_no_thread(app, flower):
    """20 parked ?wait= requests (more than the lookup pool's threads) do not stop a status
    lookup from being answered while they wait."""
    from tests.proj import NOBODY_QUEUE

    queued = app.tasks["tests.proj.add"].apply_async((1, 1), queue=NOBODY_QUEUE)
    finished_at: list[float] = []

    def parked():
        resp = get(flower, f"/api/fileintel/task/{queued.id}/result?wait=3")
        finished_at.append(time.monotonic())
        return resp.status

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(parked) for _ in range(20)]
        wait_for(lambda: flower.call(lambda: flower.flower_app.fileintel_state.hub.task_watchers.get(queued.id)) and
                 len(flower.call(lambda: flower.flower_app.fileintel_state.hub.task_watchers[queued.id])) == 20)
        status = get(flower, f"/api/fileintel/task/{queued.id}")
        answered_at = time.monotonic()
        assert status.status == 200 and status.json()["phase"] == "queued"
        assert [f.result() for f in futures] == [202] * 20
    assert answered_at < min(finished_at)


# --------------------------------------------------------------------------------------------
# Redis outage


@pytest.mark.slow
def test_redis_outage_is_503_and_flowers_pages_keep_working(app, flower, redis_server):
    redis_server.stop()
    try:
        resp = get(flower, "/api/fileintel/task/some-task")
        assert resp.status == 503
        body = resp.json()
        assert body["code"] == "backend_unavailable"
        assert f"127.0.0.1:{redis_server.port}" in body["message"]
        assert get(flower, "/fileintel/task/some-task").status == 503
        assert get(flower, "/fileintel/board.json").status == 503
        assert get(flower, "/tasks").status == 200  # Flower's own page
    finally:
        redis_server.start()
    assert get(flower, "/api/fileintel/task/some-task").status == 200


# --------------------------------------------------------------------------------------------
# pages


def test_task_page_shows_validated_result_with_placeholders_marked(app, worker, flower):
    result = _finished_with_placeholders(app)
    page = get(flower, f"/fileintel/task/{result.id}")
    assert page.status == 200
    html = page.text
    assert '<mark class="fi-placeholder">' in html
    assert "<code>$.tags</code>" in html
    assert "download the full result" in html
    assert f'href="/task/{result.id}"' in html  # Flower's own task page
    assert 'class="nav-link active" href="/fileintel"' in html


def test_task_page_escapes_task_text(app, worker, flower):
    result = app.tasks["tests.proj.html_payload"].delay()
    result.get(timeout=10)
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_task_page_of_a_failed_task_has_a_collapsible_traceback(app, worker, flower):
    result = app.tasks["tests.proj.fail"].delay("bad input")
    with pytest.raises(ValueError):
        result.get(timeout=10)
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert "ValueError" in html and "bad input" in html
    assert "<details open><summary>Traceback</summary>" in html  # open: the error comes first


def test_task_page_explains_a_result_gone_before_its_expiry(app, worker, flower, redis_client):
    result = _evicted_result(app, redis_client)
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert 'id="fi-verdict" data-outcome="evicted"' in html
    assert "Result gone before its expiry." in html and "maxmemory-policy" in html


def test_task_page_of_an_expired_failure_shows_the_error_first(app, worker, flower, redis_client):
    from celery_ext.records import meta_key

    result = app.tasks["tests.proj.fail"].delay("disk full on /data")
    with pytest.raises(ValueError):
        result.get(timeout=10)
    wait_for(lambda: describe(app, result.id).runtime_s is not None)
    redis_client.delete(meta_key(app, result.id))  # as result_expires would
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert 'data-outcome="failed"' in html
    error_at = html.index('id="fi-error"')
    assert error_at < html.index('id="fi-progress-card"') and error_at < html.index("Task details")
    assert "disk full on /data" in html and 'id="fi-traceback"' in html and "raise ValueError(message)" in html


def test_task_page_warns_when_the_result_expires_soon(app, worker, flower, redis_client):
    from celery_ext.records import meta_key

    result = app.tasks["tests.proj.add"].delay(1, 2)
    result.get(timeout=10)
    redis_client.expire(meta_key(app, result.id), 120)  # within the 600 s warning window
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert 'id="fi-expiring"' in html
    assert "fi-countdown" in html


def test_task_page_of_an_unknown_task_renders(app, flower):
    page = get(flower, "/fileintel/task/never-sent-3")
    assert page.status == 200
    assert "fi-phase-unknown" in page.text


def test_board_page_and_snapshot(app, worker, flower):
    from celery_ext.records import recent_task_ids

    done = app.tasks["tests.proj.add"].delay(4, 4)
    done.get(timeout=10)
    wait_for(lambda: done.id in recent_task_ids(app, "finished", 10))
    running = app.tasks["tests.proj.progress_steps"].delay(1, 0.01, hold=3)
    wait_for(lambda: reports_progress_as_started(app, running.id))
    page = get(flower, "/fileintel")
    assert page.status == 200 and 'id="fi-board"' in page.text
    board = get(flower, "/fileintel/board.json").json()
    assert running.id in [t["task_id"] for t in board["running"]]
    assert done.id in [t["task_id"] for t in board["finished"]]
    assert all("result" not in t for t in board["finished"])
    running.get(timeout=10)


def test_flowers_own_pages_get_a_navbar_link(app, flower):
    html = get(flower, "/tasks").text
    assert '<a class="nav-link" href="/fileintel">File intel</a>' in html


def test_static_files_are_served_and_others_are_not(app, flower):
    js = get(flower, "/fileintel/static/fileintel.js")
    assert js.status == 200 and "textContent" in js.text
    assert get(flower, "/fileintel/static/..%2Fplugin.py").status == 404
    assert get(flower, "/fileintel/static/nope.js").status == 404


# --------------------------------------------------------------------------------------------
# live updates


def test_task_stream_pushes_progress_then_the_final_document(app, worker, flower):
    result = app.tasks["tests.proj.progress_steps"].delay(4, 0.3)
    events = sse_events(
        flower.url(f"/fileintel/task/{result.id}/events"), auth=AUTH, timeout=20,
    )
    kinds = [e for e, _ in events]
    assert kinds[0] == "hello" and json.loads(events[0][1]) == {"push": True}
    assert kinds[-1] == "end"
    docs = [json.loads(d) for e, d in events if e == "status"]
    messages = [d["progress"]["message"] for d in docs if d["progress"] and not d["ready"]]
    assert messages == sorted(messages) and len(messages) >= 2  # several updates, in order
    final = docs[-1]
    assert final["phase"] == "succeeded" and final["result"] == {"steps": 4}
    polled = get(flower, f"/fileintel/task/{result.id}/status.json").json()
    same_document(final, polled)


def test_push_and_polling_end_on_the_same_final_document(app, worker, flower):
    result = app.tasks["tests.proj.progress_steps"].delay(3, 0.2)
    pushed: list[dict] = []

    def listen():
        for event, data in sse_events(flower.url(f"/fileintel/task/{result.id}/events"), auth=AUTH, timeout=20):
            if event == "status":
                pushed.append(json.loads(data))

    listener = threading.Thread(target=listen)
    listener.start()
    polled = wait_for(
        lambda: (doc := get(flower, f"/fileintel/task/{result.id}/status.json").json())["ready"] and doc,
        20, what="the polled status to be ready", interval=0.5,
    )
    listener.join(20)
    assert pushed and pushed[-1]["ready"]
    same_document(pushed[-1], polled)


def test_board_stream_sends_a_snapshot_and_progress_batches(app, worker, flower):
    running = app.tasks["tests.proj.progress_steps"].delay(6, 0.3)
    wait_for(lambda: describe(app, running.id).phase.value == "running")

    def has_progress_for_task(item):
        event, data = item
        return event == "progress" and any(t["task_id"] == running.id for t in json.loads(data)["tasks"])

    events = sse_events(flower.url("/fileintel/events"), auth=AUTH, timeout=15, until=has_progress_for_task)
    kinds = [e for e, _ in events]
    assert "board" in kinds
    assert has_progress_for_task(events[-1])
    update = next(t for t in json.loads(events[-1][1])["tasks"] if t["task_id"] == running.id)
    assert update["progress"]["message"].startswith("step ")
    running.get(timeout=15)


def test_one_pubsub_connection_for_many_viewers(app, worker, flower, redis_client):
    tasks = [app.tasks["tests.proj.progress_steps"].delay(3, 0.3) for _ in range(3)]
    threads = [
        threading.Thread(target=sse_events, args=(flower.url(f"/fileintel/task/{t.id}/events"),), kwargs={"auth": AUTH, "timeout": 20})
        for t in tasks for _ in range(3)
    ] + [
        threading.Thread(target=sse_events, args=(flower.url("/fileintel/events"),), kwargs={"auth": AUTH, "timeout": 2})
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: len(flower.call(lambda: flower.flower_app.fileintel_state.hub.board_watchers)) == 3)
    from flower_fileintel.live import CLIENT_NAME_PREFIX

    def ours():
        return [c for c in redis_client.client_list() if c.get("name", "").startswith(CLIENT_NAME_PREFIX)]

    # The connection is named as it opens, and PSUBSCRIBEs a moment later.
    wait_for(lambda: any(int(c["psub"]) == 1 for c in ours()))
    assert len(ours()) == 1 and int(ours()[0]["psub"]) == 1
    for t in threads:
        t.join(30)
    assert flower.call(lambda: flower.flower_app.fileintel_state.hub.connections_opened) == 1


# --------------------------------------------------------------------------------------------
# metrics


def test_metrics_appear_on_flowers_metrics_without_task_ids(app, worker, flower):
    result = app.tasks["tests.proj.add"].delay(5, 5)
    result.get(timeout=10)
    get(flower, f"/api/fileintel/task/{result.id}")
    get(flower, f"/api/fileintel/task/{result.id}/result")
    get(flower, "/api/fileintel/task/never-sent-4/result")
    text = http_get(flower.url("/metrics")).text  # public in Flower, like its own metrics
    assert re.search(r'fileintel_flower_lookups_total\{phase="succeeded",route="api_status"\} [1-9]', text)
    assert re.search(r'fileintel_flower_lookup_outcomes_total\{outcome="unknown",route="api_result"\} [1-9]', text)
    assert re.search(r'fileintel_flower_result_served_bytes_total\{route="api_result"\} [1-9]', text)
    assert 'fileintel_flower_live_subscribers{stream="task"}' in text
    assert 'fileintel_flower_redis_errors_total{operation="lookup"}' in text
    fileintel_lines = [line for line in text.splitlines() if line.startswith("fileintel_")]
    assert not any(result.id in line or "never-sent" in line or "tests.proj" in line for line in fileintel_lines)


# --------------------------------------------------------------------------------------------
# the live hub: disconnects, reconnects, big messages


def hub_of(flower):
    return flower.flower_app.fileintel_state.hub


def test_viewers_that_leave_are_forgotten(app, flower):
    sse_events(flower.url("/fileintel/events"), auth=AUTH, timeout=1.5)
    sse_events(flower.url("/fileintel/task/gone-viewer/events"), auth=AUTH, timeout=1.5)
    wait_for(lambda: flower.call(lambda: not hub_of(flower).board_watchers and not hub_of(flower).task_watchers))


@pytest.mark.slow
def test_hub_reconnects_after_a_redis_outage_and_pushes_again(app, flower, redis_server):
    """No worker here: Celery's own result consumer gives up for good after an outage.
    States are written the way a worker writes them (SETEX + PUBLISH via the backend)."""
    import uuid

    sse_events(flower.url("/fileintel/task/warm-up/events"), auth=AUTH, timeout=1.0)
    wait_for(lambda: flower.call(lambda: hub_of(flower).connected))
    redis_server.stop()
    try:
        wait_for(lambda: flower.call(lambda: not hub_of(flower).connected))
    finally:
        redis_server.start()
    wait_for(lambda: flower.call(lambda: hub_of(flower).connected), timeout=30)
    assert flower.call(lambda: hub_of(flower).connections_opened) == 2

    task_id = str(uuid.uuid4())
    app.backend.store_result(task_id, {"current": 1, "total": 2, "message": "half"}, "PROGRESS")
    received: list[tuple[str, str]] = []

    def delivered(message):
        return lambda: any(event == "status" and message in data for event, data in list(received))

    def writer():
        # Each write once the stream has delivered the one before: the test is about the
        # reconnected hub pushing every update, not about how fast two writes coalesce.
        wait_for(lambda: flower.call(lambda: task_id in hub_of(flower).task_watchers))
        wait_for(delivered('"half"'), what="the first update on the stream")
        app.backend.store_result(task_id, {"current": 2, "total": 2, "message": "all"}, "PROGRESS")
        wait_for(delivered('"all"'), what="the second update on the stream")
        app.backend.store_result(task_id, {"done": True}, "SUCCESS")

    thread = threading.Thread(target=writer)
    thread.start()
    collected = sse_events(flower.url(f"/fileintel/task/{task_id}/events"), auth=AUTH, timeout=20,
                           until=lambda item: received.append(item) and False)
    thread.join(20)
    docs = [json.loads(d) for e, d in collected if e == "status"]
    assert collected[-1][0] == "end"
    assert [d["progress"]["message"] for d in docs if d["progress"]][:2] == ["half", "all"]
    assert docs[-1]["result"] == {"done": True}


def test_big_messages_are_not_decoded_on_the_ioloop(app):
    from celery_ext.push import SMALL_MESSAGE, Message
    from flower_fileintel.live import LiveHub

    async def nothing(*args):
        return []

    hub = LiveHub(app, nothing, nothing)
    small = app.backend.encode({"status": "PROGRESS", "result": {"current": 1, "total": 4, "message": "m"}})
    update = hub._board_update(Message("t1", small))
    assert update["phase"] == "running" and update["progress"]["percent"] == 25.0
    big = app.backend.encode({"status": "SUCCESS", "result": "x" * (SMALL_MESSAGE + 1)})
    assert hub._board_update(Message("t2", big)) is None  # the task is re-read through describe instead
    assert hub._board_update(Message("t3", b"not json at all")) is None


def test_board_lists_results_expiring_soon(app, worker, flower, redis_client):
    from celery_ext.records import meta_key

    soon = app.tasks["tests.proj.add"].delay(1, 1)
    later = app.tasks["tests.proj.add"].delay(2, 2)
    soon.get(timeout=10), later.get(timeout=10)
    from celery_ext.records import recent_task_ids

    wait_for(lambda: {soon.id, later.id} <= set(recent_task_ids(app, "finished", 10)))
    redis_client.expire(meta_key(app, soon.id), 120)  # inside the 600 s warning window
    board = get(flower, "/fileintel/board.json").json()
    expiring = [t["task_id"] for t in board["expiring"]]
    assert expiring == [soon.id]
    assert 0 < board["expiring"][0]["expires_in_s"] <= 120


# --------------------------------------------------------------------------------------------
# the on-call board: readable pages, the task's whole story, styled error pages


def test_task_page_tells_the_tasks_story_from_flowers_events(app, worker, flower):
    parent = "parent-" + "1" * 12
    result = app.tasks["tests.proj.add"].delay(2, 3)
    result.get(timeout=10)
    feed_events(flower, result.id, "tests.proj.add", args="(2, 3)", kwargs="{'note': '<b>x</b>'}",
                routing_key="files.high", parent_id=parent, root_id=parent)
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert '<code id="fi-args">(2, 3)</code>' in html
    assert "{&#x27;note&#x27;: &#x27;&lt;b&gt;x&lt;/b&gt;&#x27;}" in html  # shown as text
    assert 'id="fi-routing-key">files.high' in html
    assert f'href="/fileintel/task/{parent}"' in html  # parent and root lead to our pages
    assert "Seen on worker" in html and 'href="/worker/celery%40events-host"' in html
    assert 'id="fi-story-missing"' not in html


def test_task_page_says_when_flowers_events_know_nothing(app, worker, flower):
    result = app.tasks["tests.proj.add"].delay(1, 1)
    result.get(timeout=10)
    wait_for(lambda: describe(app, result.id).runtime_s is not None)
    html = get(flower, f"/fileintel/task/{result.id}").text
    assert 'id="fi-story-missing"' in html and "Flower's events hold nothing" in html
    # the worker is linked to Flower's worker page
    worker_name = describe(app, result.id).worker
    from urllib.parse import quote

    assert f'href="/worker/{quote(worker_name, safe="")}"' in html


def test_task_page_times_are_relative_with_the_absolute_time_on_hover(app, worker, flower):
    result = app.tasks["tests.proj.add"].delay(1, 2)
    result.get(timeout=10)
    wait_for(lambda: describe(app, result.id).runtime_s is not None)
    html = get(flower, f"/fileintel/task/{result.id}").text
    completed = re.search(r'<time id="fi-completed-at" class="fi-when" datetime="([^"]+)" title="([^"]+)">([^<]+)</time>', html)
    assert completed, html
    assert completed.group(2).endswith(" UTC") and "." not in completed.group(2)  # no microseconds
    assert completed.group(3) == "just now" or completed.group(3).endswith(" ago")
    assert re.search(r'id="fi-bytes">\d+ bytes', html)  # the one size format


def test_flowers_own_task_page_links_to_the_plugins_page(app, worker, flower):
    result = app.tasks["tests.proj.add"].delay(3, 3)
    result.get(timeout=10)
    feed_events(flower, result.id, "tests.proj.add")
    html = get(flower, f"/task/{result.id}").text
    assert re.search(r"""id=["']task-page["']""", html)  # Flower's own page...
    assert f'id="fileintel-task-link" href="/fileintel/task/{result.id}"' in html  # ...with our link


def test_flowers_own_task_page_links_under_a_url_prefix(app, worker):
    result = app.tasks["tests.proj.add"].delay(3, 4)
    result.get(timeout=10)
    with FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"], url_prefix="flower") as server:
        feed_events(server, result.id, "tests.proj.add")
        html = get(server, f"/task/{result.id}").text
    assert f'href="/flower/fileintel/task/{result.id}"' in html


def test_malformed_id_page_is_styled_with_a_way_back(app, flower):
    resp = get(flower, "/fileintel/task/a*b")
    assert resp.status == 400
    html = resp.text
    assert 'id="fi-error-page" class="detail-page page-section fi-page" data-code="invalid_task_id"' in html
    assert '<h1 class="fi-title" id="fi-error-title">Not a task id</h1>' in html
    assert 'id="fi-back-to-board" href="/fileintel"' in html
    assert "fileintel.css" in html and 'class="nav-link active" href="/fileintel"' in html


def test_ambiguous_short_id_page_links_every_candidate(app, flower, redis_client):
    import uuid

    from celery_ext.records import store_for

    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-aaaa-4aaa-8aaa-{i:012d}" for i in range(2)]
    redis_client.zadd(store_for(app).finished_key, {task_id: 1 for task_id in ids})
    resp = get(flower, f"/fileintel/task/{prefix}")
    assert resp.status == 400
    for task_id in ids:
        assert f'href="/fileintel/task/{task_id}"' in resp.text


def test_unknown_task_page_puts_its_explanation_first(app, flower):
    html = get(flower, "/fileintel/task/never-sent-5").text
    explanation = html.index("No task with this id is known")
    assert "What to do" in html and 'id="fi-unknown-advice"' in html
    assert "Task details" not in html and 'id="fi-result-card"' not in html  # no rows of dashes
    assert explanation < html.index('id="fi-progress-card"')


def test_board_page_shows_loading_until_data_arrives(app, flower):
    html = get(flower, "/fileintel").text
    empty = re.search(r'<p class="([^"]*)" id="fi-finished-empty" data-empty="([^"]+)"[^>]*>([^<]*)</p>', html)
    assert empty and "fi-loading" in empty.group(1)
    assert empty.group(3) == "Loading…" and empty.group(2) == "No finished tasks recorded yet."


def test_board_snapshot_has_elapsed_time_stall_flag_and_revoked_runtime(app, worker, flower, redis_client):
    from celery_ext.records import recent_task_ids
    from flower_fileintel.formatting import STALLED_AFTER_S

    running = app.tasks["tests.proj.progress_steps"].delay(1, 0.01, hold=5)
    wait_for(lambda: reports_progress_as_started(app, running.id))
    board = get(flower, "/fileintel/board.json").json()
    assert board["stalled_after_s"] == STALLED_AFTER_S
    entry = next(t for t in board["running"] if t["task_id"] == running.id)
    assert entry["elapsed_s"] is not None and entry["elapsed_s"] >= 0
    assert entry["stalled_for_s"] is None  # it reported progress a moment ago
    running.get(timeout=15)
    wait_for(lambda: running.id in recent_task_ids(app, "finished", 10))
    finished = get(flower, "/fileintel/board.json").json()["finished"]
    assert next(t for t in finished if t["task_id"] == running.id)["shown_runtime_s"] > 0


def test_failures_stay_pinned_on_the_board_after_61_newer_successes(app, worker, flower):
    from celery_ext.records import recent_task_ids

    failed = [app.tasks["tests.proj.fail"].delay(f"pinned {i}") for i in range(2)]
    for result in failed:
        with pytest.raises(ValueError):
            result.get(timeout=10)
    successes = [app.tasks["tests.proj.add"].delay(i, i) for i in range(61)]
    for result in successes:
        result.get(timeout=30)
    wait_for(lambda: successes[-1].id in recent_task_ids(app, "finished", 100), what="the last success indexed")
    board = get(flower, "/fileintel/board.json").json()
    assert not {r.id for r in failed} & {t["task_id"] for t in board["finished"]}  # pushed out there
    pinned = {t["task_id"]: t for t in board["failures"]}
    assert set(pinned) >= {r.id for r in failed}
    assert {pinned[r.id]["error"]["message"] for r in failed} == {"pinned 0", "pinned 1"}
    assert all(pinned[r.id]["phase"] == "failed" for r in failed)
    page = get(flower, "/fileintel").text
    assert 'id="fi-failures"' in page and "Failures and revocations" in page


def test_finished_can_be_filtered_searched_and_paged_over_the_whole_index(app, worker, flower):
    from celery_ext.records import recent_task_ids

    failed = app.tasks["tests.proj.fail"].delay("pinned failure")
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    results = [app.tasks["tests.proj.add"].delay(i, i) for i in range(30)]  # push it off page 1
    for r in results:
        r.get(timeout=20)
    wait_for(lambda: len(recent_task_ids(app, "finished", 100)) == 31)
    board = get(flower, "/fileintel/board.json").json()
    assert failed.id not in [t["task_id"] for t in board["finished"]]  # 25 newest only

    only_failed = get(flower, "/fileintel/finished.json?phase=failed").json()
    assert [t["task_id"] for t in only_failed["tasks"]] == [failed.id]
    assert only_failed["tasks"][0]["error"]["message"] == "pinned failure"
    assert only_failed["has_next"] is False and only_failed["index_size"] == 31

    by_name = get(flower, "/fileintel/finished.json?name=PROJ.FAIL").json()
    assert [t["task_id"] for t in by_name["tasks"]] == [failed.id]
    by_prefix = get(flower, f"/fileintel/finished.json?q={results[0].id[:8]}").json()
    assert results[0].id in [t["task_id"] for t in by_prefix["tasks"]]

    page1 = get(flower, "/fileintel/finished.json?page=1").json()
    page2 = get(flower, "/fileintel/finished.json?page=2").json()
    assert page1["has_next"] and not page2["has_next"]
    assert len(page1["tasks"]) == 25 and len(page2["tasks"]) == 6
    assert failed.id == page2["tasks"][-1]["task_id"]  # the oldest, on the last page
    seen = [t["task_id"] for t in page1["tasks"] + page2["tasks"]]
    assert len(set(seen)) == 31


@pytest.mark.parametrize("query", ["phase=running", "phase=<b>", "page=0", "page=x", "q=a*b"])
def test_bad_finished_filters_are_400(app, flower, query):
    resp = get(flower, f"/fileintel/finished.json?{query}")
    assert resp.status == 400
    assert resp.json()["code"] in ("invalid_argument", "invalid_task_id")
