"""Readers of metadata read many tasks per call of the read script, against the real Redis:
each task reads as it would alone, in order, and one bad task spoils no other in its batch."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from celery_ext import read_script
from celery_ext.lookup import METADATA_ONLY_BYTES, describe_many, observe_many
from celery_ext.read_script import READ_BATCH_TASKS
from celery_ext.records import store_for
from celery_ext.status import Outcome, Phase
from celery_ext.task_record import Rank
from tests import harness

pytestmark = pytest.mark.integration


def _running(client, store, task_id: str, incarnation: str) -> None:
    client.hset(store.record_key(task_id), mapping={
        "state": "STARTED", "rank": int(Rank.RUNNING), "started_at": "1700000000.0",
        "name": "tests.proj.add", "worker": "w@host", "incarnation": incarnation,
    })


def test_a_batch_reads_each_task_as_alone(app, monkeypatch):
    store = store_for(app)
    client = store.client()
    seconds, micros = client.time()
    now = seconds + micros / 1e6  # the beats are on Redis's clock
    client.set(store.worker_key("beating"), repr(now))
    client.set(store.worker_key("silent"), repr(now - 100))  # lost after 60 s of silence
    ids = [str(uuid.uuid4()) for _ in range(2 * READ_BATCH_TASKS + 20)]
    expected: dict[str, str] = {}
    for number, task_id in enumerate(ids):
        kind = ("beating", "silent", "dead", "stored", "unknown")[number % 5]
        expected[task_id] = kind
        if kind in ("beating", "silent", "dead"):
            _running(client, store, task_id, kind)  # "dead" never beat
        elif kind == "stored":
            app.backend.store_result(task_id, {"n": number}, "SUCCESS")
    corrupt = ids[READ_BATCH_TASKS + 3]  # in the second batch
    client.delete(store.record_key(corrupt))
    client.rpush(store.record_key(corrupt), "not a hash")  # WRONGTYPE for HGETALL
    describe_many(app, ids[:1])  # the script is loaded and the connection made before counting
    batches: list[int] = []
    per_task = read_script._per_task

    def counted(reply, tasks):
        batches.append(tasks)
        return per_task(reply, tasks)

    monkeypatch.setattr(read_script, "_per_task", counted)
    read = []
    trips = harness.round_trips(lambda: read.extend(describe_many(app, ids, max_result_bytes=METADATA_ONLY_BYTES)))

    assert (trips, batches) == (1, [READ_BATCH_TASKS, READ_BATCH_TASKS, 20])
    assert [status.task_id for status in read] == ids
    for number, status in enumerate(read):
        kind = "corrupt" if status.task_id == corrupt else expected[status.task_id]
        if kind == "corrupt":
            assert status.outcome is Outcome.NOT_READABLE, status
            assert any("WRONGTYPE" in note and "user_script" not in note for note in status.notes), status.notes
        elif kind == "beating":
            assert status.phase is Phase.RUNNING, status
        elif kind == "silent":  # its worker's last beat was 100 s ago
            assert status.phase is Phase.LOST and status.worker_last_seen_at is not None, status
            silent = datetime.now(timezone.utc) - status.worker_last_seen_at
            assert timedelta(seconds=99) < silent < timedelta(seconds=200), status
        elif kind == "dead":  # its worker never beat
            assert status.phase is Phase.LOST and status.worker_last_seen_at is None, status
        elif kind == "stored":
            assert status.phase is Phase.SUCCEEDED and status.result == {"n": number}, status
        else:
            assert status.phase is Phase.UNKNOWN, status


def test_results_that_may_be_loaded_whole_are_read_one_task_per_call(app, monkeypatch):
    """A script builds its whole reply in Redis's memory: where results of up to 10 MiB may
    come back, each call reads one task."""
    batches: list[int] = []
    per_task = read_script._per_task
    monkeypatch.setattr(read_script, "_per_task", lambda reply, tasks: batches.append(tasks) or per_task(reply, tasks))
    ids = [str(uuid.uuid4()) for _ in range(3)]
    app.backend.store_result(ids[1], "x" * 1000, "SUCCESS")
    read = observe_many(app, ids)
    assert batches == [1, 1, 1]
    assert [obs.meta["result"] if obs.meta else None for obs in read] == [None, "x" * 1000, None]
