"""``celery_ext.push``: one push implementation for ``wait()`` and Flower's live hub.

The same backends push for both (Sentinel included) and a pushed message is decoded with the
same settings ``describe`` applies.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from celery import Celery

import celery_ext
from celery_ext import push, watch
from celery_ext.lookup import describe
from celery_ext.status import Phase


def _unit_app(**conf):
    app = Celery("push-unit", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.update(**conf)
    return app


def test_decode_update_applies_the_progress_message_limit():
    app = _unit_app(fileintel_progress_message_max=10)
    data = app.backend.encode({"status": "PROGRESS", "result": {"current": 1, "total": 4, "message": "m" * 50}})
    update = push.decode_update(app, push.Message("t1", data))
    assert update is not None and update.phase is Phase.RUNNING and update.state == "PROGRESS"
    assert update.progress is not None and update.progress.percent == 25.0
    assert update.progress.message == "m" * 10
    assert any("message" in issue for issue in update.progress.issues)


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"no_status": 1}',
        b'{"status": ["a", "list"]}',
        b'"a bare string"',
    ],
)
def test_decode_update_leaves_what_it_cannot_read_to_a_real_read(data):
    assert push.decode_update(_unit_app(), push.Message("t1", data)) is None


def test_a_large_message_is_not_decoded():
    app = _unit_app()
    big = app.backend.encode({"status": "SUCCESS", "result": "x" * (push.SMALL_MESSAGE + 1)})
    assert push.decode_update(app, push.Message("t1", big)) is None


def test_parse_message_keeps_only_task_channels():
    app = _unit_app()
    channel = app.backend.get_key_for_task("t1")
    assert push.parse_message(app, {"type": "message", "channel": channel, "data": b"x"}) == push.Message("t1", b"x")
    assert push.parse_message(app, {"type": "pmessage", "channel": channel, "data": "x"}) == push.Message("t1", b"x")
    assert push.parse_message(app, {"type": "subscribe", "channel": channel, "data": 1}) is None
    assert push.parse_message(app, {"type": "message", "channel": b"other", "data": b"x"}) is None
    assert push.parse_message(app, None) is None


def test_backoff_grows_to_its_cap_and_resets():
    backoff = push.Backoff(0.5, 4.0, factor=2.0)
    delays = [backoff.next() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6 and max(delays) <= 4.0 and delays[-1] >= 3.2
    backoff.reset()
    assert backoff.next() <= 0.6


def test_only_redis_backends_push():
    assert push.supports_push(_unit_app())
    assert not push.supports_push(Celery("rpc", backend="rpc://", set_as_current=False))


@pytest.mark.integration
def test_a_pushed_update_reads_like_describe(app):
    """The board's fast path (decode_update) and describe agree on one stored progress."""
    short = Celery("short-messages", backend=app.conf.result_backend, set_as_current=False)
    short.conf.fileintel_progress_message_max = 12
    try:
        task_id = str(uuid.uuid4())
        meta = {"current": 3, "total": 12, "message": "copying a long list of files"}
        short.backend.store_result(task_id, meta, "PROGRESS")
        stored = push.Message(task_id, short.backend.client.get(short.backend.get_key_for_task(task_id)))
        update = push.decode_update(short, stored)
        status = describe(short, task_id)
        assert update is not None and update.phase is status.phase is Phase.RUNNING
        assert update.progress is not None and status.progress is not None
        assert update.progress.message == status.progress.message == "copying a lo"
        assert update.progress.percent == status.progress.percent == 25.0
    finally:
        short.close()


# -- Sentinel: push for wait() and for Flower's live hub -----------------------------------


@pytest.fixture
def sentinel_app(app, sentinel_url):
    sentinel = Celery("sentinel-push", broker=app.conf.broker_url, backend=sentinel_url, set_as_current=False)
    sentinel.conf.result_backend_transport_options = {"master_name": "fileintel"}
    celery_ext.install(sentinel)
    yield sentinel
    sentinel.close()


@pytest.mark.integration
def test_wait_is_pushed_through_sentinel(sentinel_app, monkeypatch):
    assert push.supports_push(sentinel_app)

    class NoPolling:
        def __init__(self):
            raise AssertionError("wait() polled a Sentinel backend instead of subscribing")

    monkeypatch.setattr(watch, "_PollSource", NoPolling)
    task_id = str(uuid.uuid4())
    timer = threading.Timer(0.3, lambda: sentinel_app.backend.store_result(task_id, {"via": "sentinel"}, "SUCCESS"))
    timer.start()
    try:
        outcome = celery_ext.wait(sentinel_app, [task_id], timeout=10)
    finally:
        timer.join()
    assert outcome[task_id].phase is Phase.SUCCEEDED and outcome[task_id].result == {"via": "sentinel"}


@pytest.mark.integration
def test_flowers_live_hub_is_pushed_through_sentinel(sentinel_app):
    from flower_fileintel.live import LiveHub

    task_id = str(uuid.uuid4())

    async def scenario():
        async def describe_many(ids):
            return []

        async def board_snapshot():
            return {}

        hub = LiveHub(sentinel_app, describe_many, board_snapshot)
        try:
            with hub.watch_task(task_id):
                assert await hub.wait_connected(10), hub.last_error
                before = hub.messages
                sentinel_app.backend.store_result(task_id, {"current": 1, "total": 2}, "PROGRESS")
                for _ in range(200):
                    if hub.messages > before:
                        break
                    await asyncio.sleep(0.025)
                return hub.messages - before, hub.connections_opened
        finally:
            await hub.stop()

    received, connections = asyncio.run(scenario())
    assert received == 1 and connections == 1
