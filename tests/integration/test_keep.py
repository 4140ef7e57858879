"""Keeping a result, and "nobody fetched it", against the real Redis, worker, CLI and Flower.

The keep's TTLs are read back with PTTL on both keys; the refusals (expired, unknown, Redis
down, a bad --for) through the library, the ``celery`` executable and the HTTP API; the POST
is protected like Flower's own task actions; the task page's button in Chromium.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import replace
from urllib.parse import urlsplit

import pytest

from celery_ext import describe
from celery_ext.keeping import KeepRefused, keep
from celery_ext.records import store_for
from celery_ext.settings import DAY
from celery_ext.status import Outcome
from flower_fileintel.testing import FlowerServer, Response, _auth_header, http_get
from tests import harness, proj
from tests.conftest import run_celery
from tests.status_checks import wait_for

pytestmark = pytest.mark.integration

WEEK = 7 * DAY
AUTH = ("keeper", "pw")


def finished_task(app) -> str:
    result = proj.add.delay(2, 3)
    result.get(timeout=30)
    wait_for(app, result.id, lambda s: s.phase.finished and s.runtime_s is not None, timeout=30)
    return str(result.id)


def ttls(app, redis_client, task_id: str) -> tuple[float, float]:
    """(result TTL, record TTL) in seconds, as Redis has them."""
    store = store_for(app)
    return redis_client.pttl(store.meta_key(task_id)) / 1000, redis_client.pttl(store.record_key(task_id)) / 1000


def expire_now(app, redis_client, task_id: str) -> None:
    """The result expired a moment ago: gone from Redis, and the record says when."""
    store = store_for(app)
    redis_client.hset(store.record_key(task_id), "result_expires_ts", f"{time.time() - 5:.3f}")
    redis_client.delete(store.meta_key(task_id))


def http_post(url: str, body: str = "", auth=None, headers=None) -> Response:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                     headers=_auth_header(auth, sent))
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# the library


def test_keep_extends_the_result_and_the_record_and_every_reader_tells_it(app, worker, redis_client):
    task_id = finished_task(app)
    result_ttl, record_ttl = ttls(app, redis_client, task_id)
    assert result_ttl <= 3600  # the test app's result_expires

    kept = keep(app, task_id, WEEK)
    assert kept.verdict == "kept"
    result_ttl, record_ttl = ttls(app, redis_client, task_id)
    assert WEEK - 60 < result_ttl <= WEEK
    assert record_ttl >= result_ttl + DAY - 1  # the record still outlives the result by a day
    status = describe(app, task_id)
    assert status.result_available and status.result == 5
    assert status.result_expires_at is not None and kept.expires_at is not None
    assert abs((status.result_expires_at - kept.expires_at).total_seconds()) < 2
    assert status.expires_in_s is not None and status.expires_in_s > WEEK - 60

    # A shorter keep never shortens it.
    again = keep(app, task_id, 3600)
    assert again.verdict == "already"
    assert ttls(app, redis_client, task_id)[0] > WEEK - 60
    assert again.expires_at is not None and abs((again.expires_at - kept.expires_at).total_seconds()) < 2


def test_an_expired_result_cannot_be_kept_and_nothing_is_created(app, worker, redis_client):
    task_id = finished_task(app)
    expire_now(app, redis_client, task_id)
    record_ttl = ttls(app, redis_client, task_id)[1]
    with pytest.raises(KeepRefused) as caught:
        keep(app, task_id, WEEK)
    assert caught.value.reason is Outcome.EXPIRED and "cannot be kept" in str(caught.value)
    assert not redis_client.exists(store_for(app).meta_key(task_id))
    assert ttls(app, redis_client, task_id)[1] <= record_ttl


def test_a_result_that_expires_between_the_read_and_the_keep_is_refused(app, worker, redis_client, monkeypatch):
    task_id = finished_task(app)
    stale = describe(app, task_id)  # read while it was there ...
    redis_client.delete(store_for(app).meta_key(task_id))  # ... gone before the keep's script
    monkeypatch.setattr("celery_ext.prefix.describe_id_or_prefix", lambda _app, _id: stale)
    with pytest.raises(KeepRefused) as caught:
        keep(app, task_id, WEEK)
    assert caught.value.reason is Outcome.EXPIRED and "just expired" in str(caught.value)
    assert not redis_client.exists(store_for(app).meta_key(task_id))


def test_unknown_and_unfinished_tasks_are_refused(app):
    with pytest.raises(KeepRefused) as unknown:
        keep(app, str(uuid.uuid4()), WEEK)
    assert unknown.value.reason is Outcome.UNKNOWN
    from celery_ext.writer import flush_all

    queued = proj.add.apply_async((1, 2), queue=proj.NOBODY_QUEUE).id
    flush_all()
    with pytest.raises(KeepRefused) as waiting:
        keep(app, queued, WEEK)
    assert waiting.value.reason is Outcome.NOT_READY and "once it has finished" in str(waiting.value)


# --------------------------------------------------------------------------------------------
# the CLI


def test_cli_keep_each_exit_code(app, worker, redis_client):
    task_id = finished_task(app)
    run = run_celery("fileintel", "keep", task_id[:8], "--for", "12h")  # a short id from the board
    assert run.returncode == 0, run.stderr
    assert f"task {task_id}'s result is kept until" in run.stdout
    assert 12 * 3600 - 60 < ttls(app, redis_client, task_id)[0] <= 12 * 3600

    run = run_celery("fileintel", "keep", task_id, "--for", "7d", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert (doc["task_id"], doc["kept"], doc["verdict"], doc["requested_s"]) == (task_id, True, "kept", WEEK)

    run = run_celery("fileintel", "keep", task_id, "--for", "a week")
    assert run.returncode == 2 and "90s, 30m, 12h or 7d" in run.stderr

    run = run_celery("fileintel", "keep", str(uuid.uuid4()), "--for", "7d")
    assert run.returncode == 4 and "unknown" in run.stderr

    expire_now(app, redis_client, task_id)
    run = run_celery("fileintel", "keep", task_id, "--for", "7d", "--json")
    assert run.returncode == 3, run.stderr
    assert json.loads(run.stdout)["reason"] == "expired" and "cannot be kept" in run.stderr
    for output in (run.stdout, run.stderr):
        assert "Traceback" not in output


def test_cli_keep_with_redis_down_exits_69_naming_the_url(redis_server):
    url = f"redis://:hunter2@127.0.0.1:{harness.free_port()}/0"
    run = run_celery("fileintel", "keep", "some-id", "--for", "7d", env={harness.REDIS_URL_ENV: url})
    assert run.returncode == 69, run.stderr
    assert "***@127.0.0.1" in run.stderr and "hunter2" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr


def test_cli_result_records_the_fetch_and_status_does_not(app, worker, redis_client):
    task_id = finished_task(app)
    record = store_for(app).record_key(task_id)
    assert run_celery("fileintel", "status", task_id).returncode == 0
    assert redis_client.hget(record, "fetched_at") is None  # looking is not fetching
    run = run_celery("fileintel", "result", task_id)
    assert run.returncode == 0 and json.loads(run.stdout) == 5
    fetched = float(redis_client.hget(record, "fetched_at"))
    assert abs(fetched - time.time()) < 60


def test_a_fetch_mark_that_cannot_be_written_never_fails_the_reader(app, worker, redis_client, redis_server):
    from celery_ext.fetched import mark_fetched

    task_id = finished_task(app)
    assert mark_fetched(app, task_id) is True
    assert not mark_fetched(app, str(uuid.uuid4()))  # no record: none is created
    assert redis_client.keys("*fileintel-record-*") == [store_for(app).record_key(task_id)]
    odd = "odd-" + uuid.uuid4().hex
    redis_client.set(store_for(app).record_key(odd), "not a hash")  # WRONGTYPE for HSET
    assert mark_fetched(app, odd) is False
    redis_server.stop()
    assert mark_fetched(app, task_id) is False  # Redis down: logged, not raised


# --------------------------------------------------------------------------------------------
# Flower


@pytest.fixture
def flower(app):
    with FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as server:
        yield server


def test_post_keep_extends_the_ttls_and_get_changes_nothing(app, worker, redis_client, flower):
    task_id = finished_task(app)
    url = flower.url(f"/api/fileintel/task/{task_id}/keep")
    before = ttls(app, redis_client, task_id)[0]

    got = http_get(url + "?for=7d", auth=AUTH)
    assert got.status == 405 and got.headers["Allow"] == "POST"
    assert got.json()["code"] == "method_not_allowed"
    assert ttls(app, redis_client, task_id)[0] <= before

    resp = http_post(url, "for=7d", auth=AUTH)
    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["kept"] is True and body["verdict"] == "kept" and "kept until" in body["message"]
    assert WEEK - 60 < ttls(app, redis_client, task_id)[0] <= WEEK
    status = http_get(flower.url(f"/api/fileintel/task/{task_id}"), auth=AUTH).json()
    assert status["expires_in_s"] > WEEK - 60

    bad = http_post(url, "for=forever", auth=AUTH)
    assert bad.status == 400 and bad.json()["code"] == "invalid_duration"
    missing = http_post(url, "", auth=AUTH)
    assert missing.status == 400 and "for=7d" in missing.json()["message"]


def test_post_keep_refusals_map_to_http(app, worker, redis_client, flower):
    task_id = finished_task(app)
    expire_now(app, redis_client, task_id)
    gone = http_post(flower.url(f"/api/fileintel/task/{task_id}/keep"), "for=7d", auth=AUTH)
    assert gone.status == 410 and gone.json()["code"] == "result_expired"
    assert gone.json()["task"]["outcome"] == "expired"
    unknown = http_post(flower.url(f"/api/fileintel/task/{uuid.uuid4()}/keep"), "for=7d", auth=AUTH)
    assert unknown.status == 404 and unknown.json()["code"] == "unknown_task"
    malformed = http_post(flower.url("/api/fileintel/task/a*b/keep"), "for=7d", auth=AUTH)
    assert malformed.status == 400 and malformed.json()["code"] == "invalid_task_id"


def test_post_keep_needs_authentication_like_flowers_own_actions(app, worker, redis_client, monkeypatch):
    task_id = finished_task(app)
    path = f"/api/fileintel/task/{task_id}/keep"
    before = ttls(app, redis_client, task_id)[0]
    with FlowerServer(app, basic_auth=["user:right"]) as server:
        for auth in (None, ("user", "wrong")):
            resp = http_post(server.url(path), "for=7d", auth=auth)
            assert resp.status == 401, (auth, resp.status)
        # Flower's cross-site check on POST: a page of another site cannot use the browser's login.
        cross = http_post(server.url(path), "for=7d", auth=("user", "right"), headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status == 403
        elsewhere = http_post(server.url(path), "for=7d", auth=("user", "right"), headers={"Origin": "https://elsewhere.example"})
        assert elsewhere.status == 403
    secret = "test-cookie-secret"
    with FlowerServer(app, auth=".*@example.com", cookie_secret=secret) as server:
        assert http_post(server.url(path), "for=7d").status == 403  # no session: refused, never redirected
    monkeypatch.delenv("FLOWER_UNAUTHENTICATED_API", raising=False)
    with FlowerServer(app) as server:  # no auth configured: Flower's API switch applies
        assert http_post(server.url(path), "for=7d").status == 401
    assert ttls(app, redis_client, task_id)[0] <= before  # none of them kept anything


def test_the_result_api_marks_the_fetch_and_the_board_tells_who_nobody_fetched(app, worker, redis_client, flower):
    from flower_fileintel.state import get_state

    fetched, untouched = finished_task(app), finished_task(app)
    state = get_state(flower.flower_app)
    state.settings = replace(state.settings, expiry_warning=2 * 3600)  # the test app's results live 1 h
    record = store_for(app).record_key(fetched)
    assert http_get(flower.url(f"/api/fileintel/task/{fetched}/result"), auth=AUTH).json() == 5
    harness.wait_for(lambda: redis_client.hget(record, "fetched_at"), what="the fetch mark")

    board = http_get(flower.url("/fileintel/board.json"), auth=AUTH).json()
    by_id = {e["task_id"]: e for e in board["expiring"]}
    assert by_id[fetched]["fetched_at"] is not None and by_id[untouched]["fetched_at"] is None
    assert board["expiring_unfetched"] == 1

    # The page's download link counts as a fetch too.
    downloaded = finished_task(app)
    resp = http_get(flower.url(f"/fileintel/task/{downloaded}/download"), auth=AUTH)
    assert resp.status == 200 and json.loads(resp.body) == 5
    harness.wait_for(lambda: redis_client.hget(store_for(app).record_key(downloaded), "fetched_at"), what="the mark")

    # A kept result leaves "expiring soon" on the next snapshot, though its entry is cached.
    assert http_post(flower.url(f"/api/fileintel/task/{untouched}/keep"), "for=7d", auth=AUTH).status == 200
    board = http_get(flower.url("/fileintel/board.json"), auth=AUTH).json()
    assert untouched not in {e["task_id"] for e in board["expiring"]}
    kept = next(e for e in board["finished"] if e["task_id"] == untouched)
    assert kept["expires_in_s"] > WEEK - 60


# --------------------------------------------------------------------------------------------
# the task page's button, in Chromium (at phone width too)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}], ids=["1280px", "390px"])
def test_keep_button_shows_the_new_expiry_or_why_not(app, worker, redis_client, flower, browser, viewport):
    kept_id, gone_id = finished_task(app), finished_task(app)
    context = browser.new_context(http_credentials={"username": AUTH[0], "password": AUTH[1]}, viewport=viewport)
    page = context.new_page()
    try:
        page.goto(flower.url(f"/fileintel/task/{kept_id}"))
        page.wait_for_function("() => document.documentElement.getAttribute('data-fileintel-ready') === '1'")
        button = page.locator("#fi-keep")
        assert button.is_visible() and button.text_content() == "Keep 7 days"
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        button.click()
        page.wait_for_function("() => /Kept until|Not kept/.test(document.getElementById('fi-keep-status').textContent)")
        message = page.locator("#fi-keep-status").text_content()
        assert message.startswith("Kept until "), message
        assert WEEK - 60 < ttls(app, redis_client, kept_id)[0] <= WEEK
        shown = page.locator("#fi-expires time").get_attribute("datetime")
        assert shown is not None and abs(time.time() + WEEK - _epoch(shown)) < 60
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

        page.goto(flower.url(f"/fileintel/task/{gone_id}"))
        page.wait_for_function("() => document.documentElement.getAttribute('data-fileintel-ready') === '1'")
        expire_now(app, redis_client, gone_id)  # it expires while the page is open
        page.locator("#fi-keep").click()
        page.wait_for_function("() => /Kept until|Not kept/.test(document.getElementById('fi-keep-status').textContent)")
        message = page.locator("#fi-keep-status").text_content()
        assert message.startswith("Not kept: ") and "cannot be kept" in message, message
        assert page.locator("#fi-keep-status").get_attribute("data-error") == "1"
    finally:
        context.close()


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
