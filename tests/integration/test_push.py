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
