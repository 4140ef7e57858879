"""The record writer's decisions, without Redis: which writes are deferred and dropped, which
fold, which go as plain commands, and how a stored result is measured. (test_records.py
proves the same against a real Redis and a real worker.)"""

from __future__ import annotations

import math
import types
import uuid
from typing import Any

import pytest
from celery import Celery

from celery_ext import measure
from celery_ext.bootstep import Receipt
from celery_ext.liveness import INCARNATION_ENV
from celery_ext.record_writes import DeferredLane, RecordWrite, coalesce
from celery_ext.records import store_for
from celery_ext.running import RecordEnd, Run
from celery_ext.writer import RecordWriter


def _write(task_id: str, state: str | None, *, at: float = 1.0, **options: Any) -> RecordWrite:
    fields = options.pop("fields", {f"{(state or 'live').lower()}_field": "x"})
    return RecordWrite(task_id, state, fields, at=at, **options)


class _Deferred:
    """A deferred write as the writer sees it (``record_writes.Deferred``)."""

    def __init__(self, task_id: str, due: float, needed: bool = True) -> None:
        self.task_id, self.due, self.needed = task_id, due, needed
        self.asked = 0

    def write_if_needed(self) -> RecordWrite | None:
        self.asked += 1
        return _write(self.task_id, "STARTED") if self.needed else None


class TestDeferredLane:
    def test_a_write_is_made_when_it_falls_due_and_not_before(self):
        lane = DeferredLane()
        item = _Deferred("a", due=10.0)
        lane.append(item)
        assert lane.next_due() == 10.0
        assert lane.take_due(now=9.9) == [] and item.asked == 0
        [write] = lane.take_due(now=10.0)
        assert write.task_id == "a" and write.state == "STARTED"
        assert len(lane) == 0 and lane.next_due() is None

    def test_writes_fall_due_in_the_order_they_came(self):
        lane = DeferredLane()
        for task_id, due in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
            lane.append(_Deferred(task_id, due))
        assert [w.task_id for w in lane.take_due(now=2.5)] == ["a", "b"]
        assert lane.next_due() == 3.0

    def test_a_due_write_no_longer_needed_is_dropped(self):
        lane = DeferredLane()
        stale = _Deferred("a", due=1.0, needed=False)
        lane.append(stale)
        lane.append(_Deferred("b", due=1.0))
        assert [w.task_id for w in lane.take_due(now=1.0)] == ["b"]
        assert stale.asked == 1 and len(lane) == 0

    def test_flush_makes_every_write_due(self):
        lane = DeferredLane()
        lane.append(_Deferred("a", due=10.0))
        lane.append(_Deferred("b", due=11.0))
        assert [w.task_id for w in lane.take_due(now=0.0, flush=True)] == ["a", "b"]


class TestRunClaims:
    """A task's "started" write and its end decide, each for the other, what is written."""

    @pytest.fixture
    def run(self, writer) -> Run:
        fields = {"started_at": 100.5, "name": "t", "worker": "w@h", "retries": 0}
        return Run("abc", object(), writer, 1, 0.0, fields, due=1.0)

    def test_a_task_that_ends_first_never_has_a_started_write(self, run):
        assert run.claim_end() is False  # nothing to take out of "active"
        assert run.write_if_needed() is None

    def test_a_started_write_is_made_once_and_the_end_then_leaves_active(self, run, monkeypatch):
        monkeypatch.setenv(INCARNATION_ENV, "inc-1")
        write = run.write_if_needed()
        assert write is not None and write.state == "STARTED" and write.at == 100.5
        assert write.fields == {
            "started_at": "100.5", "name": "t", "worker": "w@h", "retries": "0", "incarnation": "inc-1",
        }  # the incarnation tells readers when its worker died; the end leaves it out
        assert run.write_if_needed() is None
        assert run.claim_end() is True

    def test_progress_that_claims_the_started_write_leaves_none_for_the_writer(self, run):
        assert run.claim_start() is True
        assert run.write_if_needed() is None


class TestReceipt:
    def _request(self, time_start: float | None) -> Any:
        return types.SimpleNamespace(id="abc", name="t", hostname="w@h", time_start=time_start)

    def test_a_task_still_in_the_prefetch_buffer_when_due_is_written_as_received(self):
        receipt = Receipt(self._request(None))
        write = receipt.write_if_needed()
        assert write is not None and write.state == "RECEIVED" and write.at == receipt.received_at
        assert set(write.fields) == {"received_at", "name", "worker"}

    def test_a_task_a_pool_process_started_meanwhile_has_no_received_write(self):
        request = self._request(None)
        receipt = Receipt(request)
        request.time_start = 5.0
        assert receipt.write_if_needed() is None


def test_a_duplicate_end_does_not_inherit_directness():
    first = _write("a", "FAILURE", fields={"error_message": "first"}, direct=False)
    second = _write("a", "FAILURE", fields={"error_message": "second"}, direct=True)
    [folded] = coalesce([first, second])
    assert folded.fields["error_message"] == "first" and not folded.direct


class FakePipeline:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def __enter__(self) -> FakePipeline:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name == "execute":
            return lambda: None
        return lambda *args, **kwargs: self.calls.append((name, *args))


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def script_load(self, script: str) -> str:
        return "sha"

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self.calls)

    def evalsha(self, *args: Any) -> None:
        self.calls.append(("evalsha", *args))


@pytest.fixture
def writer() -> RecordWriter:
    app = Celery("writer-logic", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")
    writer = RecordWriter(app)  # its thread waits on an empty queue; nothing reaches Redis
    writer._last_trim = float("inf")  # no trim in these batches
    return writer


def _commands(writer: RecordWriter, batch: list[RecordWrite]) -> list[str]:
    client = FakeClient()
    writer._write(store_for(writer.app), client, batch)
    return [call[0] for call in client.calls]


def test_a_short_task_costs_three_plain_commands(writer):
    task_id = str(uuid.uuid4())
    [folded] = coalesce([_write(task_id, "STARTED"), _write(task_id, "SUCCESS", direct=True)])
    assert _commands(writer, [folded]) == ["hset", "zadd", "expire"]


def test_a_failure_is_also_pinned_in_the_failed_index(writer):
    assert _commands(writer, [_write(str(uuid.uuid4()), "FAILURE", direct=True)]) == ["hset", "zadd", "zadd", "expire"]


def test_the_end_of_a_task_whose_start_was_written_leaves_the_active_index(writer):
    task_id = str(uuid.uuid4())
    assert _commands(writer, [_write(task_id, "STARTED")]) == ["evalsha"]
    assert _commands(writer, [_write(task_id, "SUCCESS", direct=True)]) == ["hset", "zrem", "zadd", "expire"]


def test_a_second_end_goes_through_the_script_which_keeps_the_first(writer):
    task_id = str(uuid.uuid4())
    _commands(writer, [_write(task_id, "FAILURE", direct=True)])
    assert _commands(writer, [_write(task_id, "FAILURE", direct=True)]) == ["evalsha"]


def test_writes_that_are_not_direct_use_the_script(writer):
    batch = [_write(str(uuid.uuid4()), state) for state in ("SENT", "RECEIVED", "SUCCESS")]
    assert _commands(writer, batch) == ["evalsha"] * 3


def test_the_indexes_are_trimmed_at_most_once_per_interval(writer):
    writer._last_trim = 0.0
    first = _commands(writer, [_write(str(uuid.uuid4()), "SENT")])
    second = _commands(writer, [_write(str(uuid.uuid4()), "SENT")])
    assert first == [
        "evalsha", "zremrangebyscore", "zremrangebyrank", "zremrangebyrank",
        "zremrangebyscore", "zremrangebyrank",  # the "queued" index: by age, then by count
    ]
    assert second == ["evalsha"]


def test_ids_a_worker_took_off_the_queue_leave_the_queued_index_at_the_next_trim_in_one_command(writer):
    store = store_for(writer.app)
    started = [str(uuid.uuid4()) for _ in range(3)]
    client = FakeClient()
    writer._write(store, client, [_write(i, "STARTED") for i in started])
    assert not [c for c in client.calls if c[0] == "zrem"]  # nothing per task
    writer._last_trim = 0.0
    client = FakeClient()
    writer._write(store, client, [_write(str(uuid.uuid4()), "SENT")])
    [zrem] = [c for c in client.calls if c[0] == "zrem"]
    assert zrem[1] == store.queued_key and sorted(zrem[2:]) == sorted(started)
    writer._last_trim = 0.0
    client = FakeClient()
    writer._write(store, client, [_write(str(uuid.uuid4()), "SENT")])
    assert not [c for c in client.calls if c[0] == "zrem"]  # a sent task has not left the queue


def test_ends_that_rode_along_join_the_finished_index_in_one_command_per_batch(writer):
    store = store_for(writer.app)
    writer._wake_at = -math.inf  # as if awake: the writer's own thread must not take them first
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, task_id in enumerate(ids):
        writer.note_end_written(task_id, index_at=100.0 + n)
    writer.note_end_written(str(uuid.uuid4()))  # its end indexed itself
    client = FakeClient()
    writer._write(store, client, [], writer._take_to_index())
    assert client.calls == [("zadd", store.finished_key, {ids[0]: 100.0, ids[1]: 101.0, ids[2]: 102.0})]
    assert writer._take_to_index() == {} and writer._index_due == math.inf


@pytest.mark.parametrize(
    ("shown_running", "commands"),
    [(False, ["hset", "expire"]), (True, ["hset", "zrem", "zadd", "expire"])],
    ids=["short task: indexed later by the writer", "shown as running: moves to finished at once"],
)
def test_the_end_that_rides_along_indexes_itself_only_for_a_task_shown_as_running(writer, shown_running, commands):
    store = store_for(writer.app)
    run = Run("abc", types.SimpleNamespace(request=types.SimpleNamespace()), writer, 1, 0.0, {"started_at": 1.0}, due=1.0)
    if shown_running:
        run.claim_start()
    end = RecordEnd("abc", run, store, measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", 10, None))
    calls: list[tuple[Any, ...]] = []
    end.add_to(FakePipeline(calls))
    assert [c[0] for c in calls] == commands


class TestMeasure:
    def test_the_note_is_taken_once_and_only_for_its_task_and_state(self):
        measure._note.stored = measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", 10, 100.0)
        assert measure.take_stored("abd", "SUCCESS") is None
        assert measure.take_stored("abc", "FAILURE") is None
        assert measure.take_stored("abc", "SUCCESS") == measure.StoredResult(
            b"celery-task-meta-abc", "SUCCESS", 10, 100.0
        )
        assert measure.take_stored("abc", "SUCCESS") is None

    def test_the_record_keeps_the_ttl_this_result_got_not_the_apps_setting(self):
        from celery_ext.bootstep import _stored_result_fields

        measure._note.stored = measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", 10, 100.0, 120)
        fields, direct = _stored_result_fields("abc", "SUCCESS", ran_here=True)
        assert fields == {"result_bytes": 10, "result_expires_ts": "100.0", "result_expires_s": 120}
        assert direct is True

    def test_a_result_without_ttl_leaves_the_apps_setting_in_the_record(self):
        from celery_ext.bootstep import _stored_result_fields

        measure._note.stored = measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", 10, None)
        fields, _ = _stored_result_fields("abc", "SUCCESS", ran_here=False)
        assert fields == {"result_bytes": 10, "result_expires_ts": "never"}

    @pytest.mark.parametrize(
        ("value", "nbytes"), [("plain", 5), ("é", 2), ("\udcff", 3), (b"\x00\x01", 2)], ids=["ascii", "utf8", "surrogate", "bytes"]
    )
    def test_sizes_are_bytes_as_redis_counts_them(self, value, nbytes):
        assert measure._byte_length(value) == nbytes


def test_every_field_a_receiver_may_write_is_read_back():
    """RecordFields is what receivers write (mypy checks their keys); TaskRecord must read
    each of them, or a written fact would be lost on the way to readers."""
    from celery_ext.task_record import RecordFields, TaskRecord

    sample = {"queued_at": "100.5", "received_at": "101", "started_at": "102", "completed_at": "103"}
    sample |= {"result_expires_ts": "200.25", "ignore_result": "1", "progress": "{}"}
    texts = {name: sample.get(name, "7") for name in RecordFields.__annotations__}
    record = TaskRecord.from_fields(texts)
    assert record is not None
    stored_as = {"result_expires_ts": "result_expires_at"}
    unread = [name for name in texts if getattr(record, stored_as.get(name, name)) in (None, False)]
    assert unread == []


class TestRideAlong:
    """A rider's commands go in Celery's own result transaction; only Celery's errors fail it."""

    class Pipeline(FakePipeline):
        def __init__(self, calls: list[tuple[Any, ...]], replies: list[Any]) -> None:
            super().__init__(calls)
            self.replies = replies

        def execute(self, raise_on_error: bool = True) -> list[Any]:
            self.calls.append(("execute", raise_on_error))
            return self.replies

    class Backend:
        """What Celery's Redis backend's ``_set_with_state`` and ``_set`` use of themselves."""

        expires = 3600
        failure_expires = None

        def __init__(self, replies: list[Any]) -> None:
            self.calls: list[tuple[Any, ...]] = []
            pipeline = TestRideAlong.Pipeline(self.calls, replies)
            self.client = type("Client", (), {"pipeline": lambda _self: pipeline})()

        def set(self, key: Any, value: Any, expires: Any = None) -> None:
            from celery.backends.redis import RedisBackend

            RedisBackend._set(self, key, value)

    class Rider:
        def __init__(self) -> None:
            self.landings = 0

        def add_to(self, pipe: Any) -> None:
            pipe.hset("record", "state", "SUCCESS")

        def landed(self) -> None:
            self.landings += 1

    def _store(self, monkeypatch, replies: list[Any], state: str = "SUCCESS") -> tuple[Backend, Rider, list[tuple[Any, ...]]]:
        from celery.backends.redis import RedisBackend

        measure.wrap_redis_backend()
        rider = self.Rider()
        asked: list[tuple[Any, ...]] = []

        def rider_for(backend: Any, key: bytes, stored: measure.StoredResult) -> TestRideAlong.Rider:
            asked.append((key, stored.state, stored.nbytes))
            return rider

        monkeypatch.setattr(measure, "_rider_for", rider_for)
        backend = self.Backend(replies)
        RedisBackend._set_with_state(backend, b"celery-task-meta-abc", "value", state)
        return backend, rider, asked

    def test_the_riders_commands_go_in_celerys_pipeline_after_its_own(self, monkeypatch):
        backend, rider, asked = self._store(monkeypatch, [True, 1, 1])
        assert [c[0] for c in backend.calls] == ["setex", "publish", "hset", "execute"]
        assert backend.calls[-1] == ("execute", False)  # a rider's error must not raise
        assert backend.calls[0] == ("setex", b"celery-task-meta-abc", 3600, "value")
        assert asked == [(b"celery-task-meta-abc", "SUCCESS", 5)] and rider.landings == 1
        assert measure.take_stored("abc", "SUCCESS") is not None  # still measured for the receivers

    def test_a_riders_failed_command_never_fails_the_store_and_is_not_landed(self, monkeypatch):
        from redis.exceptions import ResponseError

        _, rider, _ = self._store(monkeypatch, [True, 1, ResponseError("WRONGTYPE")])
        assert rider.landings == 0  # the receivers write the record the usual way

    def test_celerys_own_error_fails_the_store_as_it_would_without_a_rider(self, monkeypatch):
        from redis.exceptions import ResponseError

        with pytest.raises(ResponseError, match="OOM"):
            self._store(monkeypatch, [ResponseError("OOM"), 1, 1])

    def test_a_write_of_another_key_meanwhile_gets_no_rider(self, monkeypatch):
        from celery.backends.redis import RedisBackend

        class Elsewhere(self.Backend):
            def set(self, key: Any, value: Any, expires: Any = None) -> None:
                RedisBackend._set(self, b"celery-task-meta-other", value)

        monkeypatch.setattr(self, "Backend", Elsewhere)
        backend, rider, _ = self._store(monkeypatch, [True, 1])
        assert [c[0] for c in backend.calls] == ["setex", "publish", "execute"] and rider.landings == 0

    def test_only_a_success_gets_a_rider(self, monkeypatch):
        backend, rider, asked = self._store(monkeypatch, [True, 1], state="PROGRESS")
        assert asked == [] and rider.landings == 0
        assert backend.calls == [  # Celery's own _set, unchanged
            ("setex", b"celery-task-meta-abc", 3600, "value"), ("publish", b"celery-task-meta-abc", "value"), ("execute", True)
        ]
