"""The record writer's decisions, without Redis: which writes are deferred and dropped, which
fold, which go as plain commands, and how a stored result is measured. (test_records.py
proves the same against a real Redis and a real worker.)"""

from __future__ import annotations

import json
import threading
import time
import types
import uuid
import weakref
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Ignore, Reject

from celery_ext import end_script, measure, receivers, running, trace_hook, written_ids
from celery_ext.liveness import INCARNATION_ENV
from celery_ext.receivers import Receipt
from celery_ext.record_writes import DeferredLane, RecordWrite, coalesce
from celery_ext.records import store_for
from celery_ext.running import RecordEnd, Run
from celery_ext.task_record import Rank
from celery_ext.writer import RecordWriter
from celery_ext.written_ids import WrittenIds


def _write(task_id: str, state: str | None, *, at: float = 1.0, **options: Any) -> RecordWrite:
    fields = options.pop("fields", {f"{(state or 'live').lower()}_field": "x"})
    return RecordWrite(task_id, state, fields, at=at, **options)


class _Deferred:
    """A deferred write as the writer sees it (``record_writes.Deferred``)."""

    def __init__(self, task_id: str, due: float, needed: bool = True) -> None:
        self.task_id, self.due, self.needed = task_id, due, needed
        self.asked = 0
        self.is_settled = False

    def settled(self) -> bool:
        return self.is_settled

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

    def test_settled_writes_at_the_head_go_as_new_ones_come_so_the_writer_wakes_for_the_rest(self):
        lane = DeferredLane()
        first, second, third = (_Deferred(task_id, due) for task_id, due in (("a", 1.0), ("b", 2.0), ("c", 3.0)))
        for item in (first, second, third):
            lane.append(item)
        first.is_settled = third.is_settled = True  # "a" and "c" ended; "b" still runs
        lane.append(_Deferred("d", due=4.0))
        assert lane.next_due() == 2.0 and len(lane) == 3  # only the head is pruned
        assert first.asked == 0  # a settled write is never asked for
        second.is_settled = True
        lane.append(_Deferred("e", due=5.0))
        assert lane.next_due() == 4.0  # "b" and "c" went; "d" may still be needed
        assert [w.task_id for w in lane.take_due(now=5.0)] == ["d", "e"]

    def test_flush_makes_every_write_due(self):
        lane = DeferredLane()
        lane.append(_Deferred("a", due=10.0))
        lane.append(_Deferred("b", due=11.0))
        assert [w.task_id for w in lane.take_due(now=0.0, flush=True)] == ["a", "b"]


def test_a_stream_of_short_tasks_does_not_wake_the_writer_for_each(monkeypatch):
    """The writer sleeps until the head of the lane falls due (and its slack). A task that
    starts while the one before has ended replaces it at the head, later: no wake."""
    from celery_ext.writer import DUE_SLACK

    monkeypatch.setattr(RecordWriter, "_run", lambda self: None)  # the test plays the thread's part
    writer = RecordWriter(Celery("wakes", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0"))
    writer._wake_at = float("inf")  # idle: nothing to wait for
    wakes: list[None] = []
    monkeypatch.setattr(writer, "_wake", lambda: wakes.append(None))

    def start(due: float) -> Run:
        run = Run(str(uuid.uuid4()), types.SimpleNamespace(delivery_info={}), writer, 1, 0.0, {"started_at": 1.0}, due=due)
        writer.defer(run)
        return run

    run = start(10.0)
    assert len(wakes) == 1  # an idle writer wakes for the first
    writer._wake_at = 10.0 + DUE_SLACK  # as the thread then sleeps
    for i in range(1, 50):
        run.end()
        run = start(10.0 + i / 1000)
    assert len(wakes) == 1
    assert len(writer._lanes[Run]) == 1  # the ended runs went as the next ones came


class TestRunClaims:
    """A task's "started" write and its end decide, each for the other, what is written."""

    @pytest.fixture
    def run(self, writer) -> Run:
        fields = {"started_at": 100.5, "name": "t", "worker": "w@h", "retries": 0}
        return Run("abc", types.SimpleNamespace(delivery_info={}), writer, 1, 0.0, fields, due=1.0)

    def test_a_task_that_ends_first_never_has_a_started_write(self, run):
        assert run.end() is False  # nothing to take out of "active"
        assert run.write_if_needed() is None

    def test_a_started_write_is_made_once_and_the_end_then_leaves_active(self, run, monkeypatch):
        monkeypatch.setenv(INCARNATION_ENV, "inc-1")
        write = run.write_if_needed()
        assert write is not None and write.state == "STARTED" and write.at == 100.5
        assert write.fields == {
            "started_at": "100.5", "name": "t", "worker": "w@h", "retries": "0", "incarnation": "inc-1",
        }  # the incarnation tells readers when its worker died; the end leaves it out
        assert run.write_if_needed() is None
        assert run.end() is True

    def test_progress_that_claims_the_started_write_leaves_none_for_the_writer(self, run):
        assert run.claim_start() is True
        assert run.write_if_needed() is None


def test_a_retry_takes_only_its_own_threads_run_not_the_next_runs():
    """Retried at once, a task can start again in another thread before its retry signal
    (in the old run's thread) ends the old run: the new run is left alone."""
    new_run = Run("abc", object(), None, threading.get_ident() + 1, 0.0, {}, due=1.0)
    running.start("abc", new_run)
    try:
        assert running.take("abc", threading.get_ident()) is None
        assert running.current("abc") is new_run
    finally:
        assert running.take("abc", new_run.thread) is new_run


class TestIgnoreAndReject:
    """A task that raised Ignore or Reject: its run ends, and its record says how."""

    @pytest.fixture
    def queued(self, monkeypatch) -> list[tuple[Any, ...]]:
        calls: list[tuple[Any, ...]] = []
        monkeypatch.setattr(receivers, "_queue_write", lambda app, task_id, state, fields, **kw: calls.append((task_id, state, fields, kw)))
        return calls

    def _end(self, writer, exc: BaseException) -> None:
        task = types.SimpleNamespace(name="t", _app=writer.app)
        request = types.SimpleNamespace(id="abc", hostname="w@h")
        running.start("abc", Run("abc", request, writer, threading.get_ident(), 0.0, {"started_at": 1.0}, due=1.0))
        receivers._on_ignore_or_reject(task, request, exc)
        assert running.current("abc") is None  # the run is over: no "started" write, no leak

    def test_ignore_ends_the_task_with_nothing_stored(self, writer, queued):
        self._end(writer, Ignore())
        [(task_id, state, fields, kw)] = queued
        assert (task_id, state, kw) == ("abc", "IGNORED", {"direct": True, "leaves_active": False})
        assert fields["result_bytes"] == 0 and fields["started_at"] == 1.0 and fields["runtime_s"] is not None

    def test_reject_without_requeue_fails_the_task(self, writer, queued):
        self._end(writer, Reject("bad input", requeue=False))
        [(_, state, fields, _)] = queued
        assert state == "REJECTED" and fields["error_type"] == "Reject" and fields["error_message"] == "bad input"

    def test_reject_with_requeue_is_a_task_that_runs_again(self, writer, queued):
        self._end(writer, Reject("not yet", requeue=True))
        [(_, state, fields, _)] = queued
        assert state == "RETRY" and Rank.of(state) is Rank.RUNNING  # not terminal: its next run writes on
        assert "completed_at" not in fields and "requeued" in fields["error_message"]

    def test_celerys_tracer_calls_the_hook(self, writer, queued):
        from celery.app.task import Context
        from celery.app.trace import TraceInfo

        task = types.SimpleNamespace(name="t", _app=writer.app)
        try:
            raise Ignore()
        except Ignore as exc:  # the tracer handles it in its except clause, and logs it
            TraceInfo("IGNORED", exc).handle_ignore(task, Context(id="x", hostname="w@h"))
        assert [(c[0], c[1]) for c in queued] == [("x", "IGNORED")]

    def test_the_hook_wraps_celerys_tracer_once_per_process(self):
        from celery.app.trace import TraceInfo

        hooked = (TraceInfo.handle_ignore, TraceInfo.handle_reject)  # by importing receivers
        trace_hook.connect_ignore_or_reject(lambda task, request, exc: None)
        assert (TraceInfo.handle_ignore, TraceInfo.handle_reject) == hooked


class TestReceipt:
    class Request:  # Celery's requests take weak references; SimpleNamespace does not
        def __init__(self, time_start: float | None) -> None:
            self.id, self.name, self.hostname, self.time_start = "abc", "t", "w@h", time_start

    def _request(self, time_start: float | None) -> Any:
        return self.Request(time_start)

    def test_a_task_still_in_the_prefetch_buffer_when_due_is_written_as_received(self):
        request = self._request(None)  # the worker holds it while it waits
        receipt = Receipt(request)
        write = receipt.write_if_needed()
        assert write is not None and write.state == "RECEIVED" and write.at == receipt.received_at
        assert set(write.fields) == {"received_at", "name", "worker"}

    def test_a_task_a_pool_process_started_meanwhile_has_no_received_write(self):
        request = self._request(None)
        receipt = Receipt(request)
        request.time_start = 5.0
        assert receipt.write_if_needed() is None

    def test_a_receipt_does_not_keep_a_done_tasks_request_alive(self):
        request = self._request(None)
        receipt = Receipt(request)
        gone = weakref.ref(request)
        del request
        assert gone() is None and receipt.write_if_needed() is None

    def test_a_request_without_weak_references_is_still_written(self):
        receipt = Receipt(types.SimpleNamespace(id="abc", name="t", hostname="w@h", time_start=None))
        assert receipt.write_if_needed() is not None


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


def test_an_end_whose_run_may_be_in_active_takes_it_out(writer):
    task_id = str(uuid.uuid4())
    assert _commands(writer, [_write(task_id, "SUCCESS", direct=True, leaves_active=True)]) == ["hset", "zrem", "zadd", "expire"]


def test_the_write_that_sets_the_end_decides_whether_it_leaves_active():
    end = _write("a", "FAILURE", direct=True, leaves_active=True)
    [folded] = coalesce([_write("a", "STARTED"), end])
    assert folded.direct and folded.leaves_active
    [folded] = coalesce([end, _write("a", "FAILURE", direct=True)])  # a duplicate changes nothing
    assert folded.leaves_active


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


def test_an_end_that_rode_owes_the_indexes_a_trim_that_needs_no_batch(writer):
    """A worker whose every end rides with its result writes no batch: the trim is made alone."""
    writer._last_trim = 0.0  # long ago
    assert not writer._trim_due(time.monotonic())  # nothing rode: nothing to trim
    task_id = str(uuid.uuid4())
    writer.note_end_written(task_id)
    assert writer._trim_due(time.monotonic())
    client = FakeClient()
    writer._write(store_for(writer.app), client, [])
    assert [c[0] for c in client.calls] == [
        "zremrangebyscore", "zremrangebyrank", "zremrangebyrank", "zremrangebyscore", "zremrangebyrank", "zrem",
    ]
    assert client.calls[-1][2:] == (task_id,)  # it left the queue, too
    assert not writer._trim_due(time.monotonic())  # paid
    writer.note_end_written(str(uuid.uuid4()))
    assert not writer._trim_due(time.monotonic())  # owed again, due TRIM_INTERVAL after the last


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


class RecordingClient:
    """The client a ride gets: records the script calls, replies as told."""

    def __init__(self, reply: Any = 1) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.reply = reply

    def evalsha(self, *args: Any) -> Any:
        self.calls.append(("evalsha", *args))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply

    def script_load(self, script: str) -> str:
        self.calls.append(("script_load",))
        self.reply = 1
        return "sha"


def _record_end(writer, shown_running: bool = False, nbytes: int = 10) -> RecordEnd:
    store = store_for(writer.app)
    run = Run("abc", types.SimpleNamespace(), writer, 1, 0.0, {"started_at": 1.0}, due=1.0)
    if shown_running:
        run.claim_start()
    return RecordEnd("abc", run, store, measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", nbytes, None))


@pytest.mark.parametrize("shown_running", [False, True], ids=["short task", "shown as running"])
def test_the_end_rides_in_one_script_call_with_the_result_and_leaves_active_only_if_shown_running(writer, shown_running):
    store = store_for(writer.app)
    end = _record_end(writer, shown_running)
    client = RecordingClient()
    assert end.ride(client, b"celery-task-meta-abc", "value", 3600, keep_success=True) is measure.RideOutcome.BOTH
    [(_, sha, numkeys, *keys_and_args)] = client.calls
    assert sha == end_script.END_SCRIPT_SHA and numkeys == 4
    keys, args = keys_and_args[:4], keys_and_args[4:]
    assert keys == [b"celery-task-meta-abc", store.record_key("abc"), store.finished_key, store.active_key]
    value, result_ttl, fields, record_ttl, task_id, at, leaves_active, keep_success = args
    assert (value, result_ttl, record_ttl, task_id) == ("value", 3600, store.record_ttl, "abc")
    assert json.loads(fields) | {"completed_at": "x", "runtime_s": "x"} == {
        "started_at": "1.0", "completed_at": "x", "runtime_s": "x", "state": "SUCCESS", "rank": "3",
        "result_bytes": "10", "result_expires_ts": "never", **(
            {"result_expires_s": str(store.result_expires_s)} if store.result_expires_s is not None else {}
        ),
    }
    assert float(at) == end.completed_at and leaves_active == ("1" if shown_running else "0") and keep_success == "1"


@pytest.mark.parametrize(
    ("fields", "delivery_info", "leaves"),
    [
        ({"retries": 0}, {}, False),
        ({"retries": 2}, {}, True),  # its RETRY put the id in "active"
        ({"retries": 0}, {"redelivered": True}, True),  # its dead worker's run did
    ],
    ids=["first run", "retried", "redelivered"],
)
def test_an_end_takes_the_id_out_of_active_when_an_earlier_run_may_have_put_it_there(
    writer, monkeypatch, fields, delivery_info, leaves
):
    def run() -> Run:
        request = types.SimpleNamespace(delivery_info=delivery_info)
        return Run("abc", request, writer, threading.get_ident(), 0.0, {"started_at": 1.0, **fields}, due=1.0)

    end = RecordEnd("abc", run(), store_for(writer.app), measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", 10, None))
    assert end.leaves_active is leaves
    # The same rule for an end the writer makes, e.g. a failure after a retry in another process.
    queued: list[tuple[str | None, dict[str, Any]]] = []
    monkeypatch.setattr(receivers, "_queue_write", lambda app, task_id, state, fields, **kw: queued.append((state, kw)))
    running.start("abc", run())
    receivers._on_failure(types.SimpleNamespace(name="t", _app=writer.app), "abc", ValueError("x"))
    [(state, kw)] = queued
    assert state == "FAILURE" and kw["leaves_active"] is leaves


def test_a_big_result_does_not_ride_celery_writes_it(writer):
    from celery_ext.receivers import end_riding_along

    backend = writer.app.backend
    key = backend.get_key_for_task("abc")
    run = Run("abc", types.SimpleNamespace(), writer, threading.get_ident(), 0.0, {}, due=1.0)
    running.start("abc", run)
    try:
        big = measure.StoredResult(key, "SUCCESS", end_script.MAX_RESULT_BYTES + 1, None)
        assert end_riding_along(backend, key, big) is None
        assert not run.ended  # its end is still the writer's to make
        at_limit = measure.StoredResult(key, "SUCCESS", end_script.MAX_RESULT_BYTES, None)
        assert isinstance(end_riding_along(backend, key, at_limit), RecordEnd)
    finally:
        running.take("abc", threading.get_ident())


def test_the_script_is_loaded_once_when_the_server_lacks_it(writer):
    from redis.exceptions import NoScriptError

    client = RecordingClient(NoScriptError("NOSCRIPT"))
    assert _record_end(writer).ride(client, b"celery-task-meta-abc", "value", None, False) is measure.RideOutcome.BOTH
    assert [c[0] for c in client.calls] == ["evalsha", "script_load", "evalsha"]
    assert client.calls[-1][8] == 0  # no TTL for the result: stored without one, as Celery does


def test_a_refused_script_leaves_results_to_celery_for_a_while(writer, monkeypatch, caplog):
    from redis.exceptions import ConnectionError, ResponseError

    monkeypatch.setattr(end_script, "_refused_until", 0.0)
    client = RecordingClient(ResponseError("NOPERM this user has no permissions to run the 'evalsha' command"))
    assert _record_end(writer).ride(client, b"celery-task-meta-abc", "value", 3600, False) is None
    assert "Celery stores results its own way" in caplog.text
    assert _record_end(writer).ride(client, b"celery-task-meta-abc", "value", 3600, False) is None
    assert len(client.calls) == 1  # not tried again meanwhile
    monkeypatch.setattr(end_script, "_refused_until", 0.0)
    client = RecordingClient(ConnectionError("gone"))
    with pytest.raises(ConnectionError):  # Celery's own error: its retry policy takes it
        _record_end(writer).ride(client, b"celery-task-meta-abc", "value", 3600, False)


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
        from celery_ext.receivers import _stored_result_fields

        measure._note.stored = measure.StoredResult(b"celery-task-meta-abc", "SUCCESS", 10, 100.0, 120)
        fields, direct = _stored_result_fields("abc", "SUCCESS", ran_here=True)
        assert fields == {"result_bytes": 10, "result_expires_ts": "100.0", "result_expires_s": 120}
        assert direct is True

    def test_a_result_without_ttl_leaves_the_apps_setting_in_the_record(self):
        from celery_ext.receivers import _stored_result_fields

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
    """A rider writes the result with its own commands; only Celery's errors fail the store."""

    class Pipeline(FakePipeline):
        def execute(self, raise_on_error: bool = True) -> None:
            self.calls.append(("execute", raise_on_error))

    class Backend:
        """What Celery's Redis backend's ``_set_with_state`` and ``_set`` use of themselves."""

        expires = 3600
        failure_expires = None

        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []
            pipeline = TestRideAlong.Pipeline(self.calls)
            self.client = type("Client", (), {"pipeline": lambda _self: pipeline})()

        def set(self, key: Any, value: Any, expires: Any = None) -> None:
            from celery.backends.redis import RedisBackend

            RedisBackend._set(self, key, value)

    class Rider:
        def __init__(self, rides: Any) -> None:
            self.rides = rides
            self.asked: list[tuple[Any, ...]] = []
            self.landings = 0

        def ride(self, client: Any, key: Any, value: Any, expires: int | None, keep_success: bool) -> measure.RideOutcome | None:
            self.asked.append((key, value, expires))
            self.keep_success = keep_success
            if isinstance(self.rides, Exception):
                raise self.rides
            return self.rides

        def landed(self) -> None:
            self.landings += 1

    def _store(self, monkeypatch, rides: Any, state: str = "SUCCESS", backend: Any = None) -> tuple[Any, Rider, list[tuple[Any, ...]]]:
        from celery.backends.redis import RedisBackend

        measure.wrap_redis_backend()
        rider = self.Rider(rides)
        asked: list[tuple[Any, ...]] = []

        def rider_for(backend: Any, key: bytes, stored: measure.StoredResult) -> TestRideAlong.Rider:
            asked.append((key, stored.state, stored.nbytes))
            return rider

        monkeypatch.setattr(measure, "_rider_for", rider_for)
        backend = backend or self.Backend()
        RedisBackend._set_with_state(backend, b"celery-task-meta-abc", "value", state)
        return backend, rider, asked

    def test_the_rider_writes_the_result_with_celerys_key_value_and_ttl(self, monkeypatch):
        backend, rider, asked = self._store(monkeypatch, measure.RideOutcome.BOTH)
        assert rider.asked == [(b"celery-task-meta-abc", "value", 3600)] and backend.calls == []
        assert asked == [(b"celery-task-meta-abc", "SUCCESS", 5)] and rider.landings == 1
        assert measure.take_stored("abc", "SUCCESS") is not None  # still measured for the receivers

    def test_a_result_stored_without_the_riders_part_is_not_landed(self, monkeypatch):
        backend, rider, _ = self._store(monkeypatch, measure.RideOutcome.RESULT_ONLY)
        assert backend.calls == [] and rider.landings == 0  # the receivers write the record the usual way

    def test_a_rider_that_cannot_ride_leaves_the_write_to_celery(self, monkeypatch):
        backend, rider, _ = self._store(monkeypatch, None)
        assert backend.calls == [
            ("setex", b"celery-task-meta-abc", 3600, "value"), ("publish", b"celery-task-meta-abc", "value"), ("execute", True)
        ]
        assert rider.landings == 0

    def test_celerys_own_error_fails_the_store_as_it_would_without_a_rider(self, monkeypatch):
        from redis.exceptions import ConnectionError

        with pytest.raises(ConnectionError):
            self._store(monkeypatch, ConnectionError("gone"))

    def test_a_write_of_another_key_meanwhile_gets_no_rider(self, monkeypatch):
        from celery.backends.redis import RedisBackend

        class Elsewhere(self.Backend):
            def set(self, key: Any, value: Any, expires: Any = None) -> None:
                RedisBackend._set(self, b"celery-task-meta-other", value)

        backend, rider, _ = self._store(monkeypatch, measure.RideOutcome.BOTH, backend=Elsewhere())
        assert [c[0] for c in backend.calls] == ["setex", "publish", "execute"] and rider.asked == []

    def test_only_a_success_gets_a_rider(self, monkeypatch):
        backend, rider, asked = self._store(monkeypatch, measure.RideOutcome.BOTH, state="PROGRESS")
        assert asked == [] and rider.landings == 0
        assert backend.calls == [  # Celery's own _set, unchanged
            ("setex", b"celery-task-meta-abc", 3600, "value"), ("publish", b"celery-task-meta-abc", "value"), ("execute", True)
        ]


class TestTheCheckBeforeAStore:
    """Celery reads the stored result before it stores a success and keeps a stored success.
    For a success, that read is put off to the write: the rider's script makes it, or Celery's
    own read runs right before Celery's write. Celery's real Redis backend, a fake client."""

    NO_RIDER = object()

    class Client:
        def __init__(self, stored: bytes | None) -> None:
            self.stored = stored
            self.calls: list[tuple[Any, ...]] = []

        def get(self, key: Any) -> bytes | None:
            self.calls.append(("get", key))
            return self.stored

        def pipeline(self, *args: Any, **kwargs: Any) -> FakePipeline:
            return TestRideAlong.Pipeline(self.calls)

    def _store(
        self, monkeypatch, stored: str | None, rides: Any, *, state: str = "SUCCESS", serializer: str = "json"
    ) -> tuple[Client, TestRideAlong.Rider]:
        measure.wrap_redis_backend()
        app = Celery("check", backend="redis://127.0.0.1:1/0", set_as_current=False)
        app.conf.update(result_serializer=serializer, result_accept_content=["json", "pickle"])
        backend = app.backend
        earlier = {"status": stored, "result": "first", "task_id": "abc"}
        client = self.Client(None if stored is None else backend.encode(earlier))
        backend.client = client
        rider = TestRideAlong.Rider(rides)
        monkeypatch.setattr(measure, "_rider_for", lambda *_: None if rides is self.NO_RIDER else rider)
        backend.store_result("abc", "second", state)
        assert getattr(measure._note, "read_later", None) is None and getattr(measure._note, "check_owed", None) is None
        return client, rider

    KEY = b"celery-task-meta-abc"

    @pytest.mark.parametrize("stored", [None, "STARTED", "SUCCESS"])
    def test_a_riding_success_leaves_the_check_to_its_script(self, monkeypatch, stored):
        client, rider = self._store(monkeypatch, stored, measure.RideOutcome.BOTH)
        assert client.calls == [] and rider.keep_success is True and rider.landings == 1

    def test_a_stored_success_the_script_kept_is_neither_landed_nor_measured(self, monkeypatch):
        client, rider = self._store(monkeypatch, "SUCCESS", measure.RideOutcome.KEPT_STORED_SUCCESS)
        assert client.calls == [] and rider.landings == 0
        assert measure.take_stored("abc", "SUCCESS") is None  # nothing was stored: the record measures what is

    @pytest.mark.parametrize("rides", [NO_RIDER, None], ids=["no rider", "a rider that cannot ride"])
    def test_without_the_script_celerys_read_comes_right_before_the_write_and_keeps_a_success(self, monkeypatch, rides):
        client, rider = self._store(monkeypatch, "SUCCESS", rides)
        assert client.calls == [("get", self.KEY)] and rider.landings == 0
        assert measure.take_stored("abc", "SUCCESS") is None

    @pytest.mark.parametrize("rides", [NO_RIDER, None], ids=["no rider", "a rider that cannot ride"])
    def test_without_the_script_a_result_that_did_not_succeed_is_overwritten(self, monkeypatch, rides):
        client, _ = self._store(monkeypatch, "STARTED", rides)
        assert [c[0] for c in client.calls] == ["get", "setex", "publish", "execute"]

    @pytest.mark.parametrize(
        ("serializer", "state"), [("pickle", "SUCCESS"), ("json", "FAILURE")], ids=["unreadable by the script", "failure"]
    )
    def test_otherwise_celery_reads_first_as_always(self, monkeypatch, serializer, state):
        client, rider = self._store(monkeypatch, "STARTED", measure.RideOutcome.BOTH, state=state, serializer=serializer)
        assert client.calls[0] == ("get", self.KEY)
        if state == "SUCCESS":
            assert rider.keep_success is False and rider.landings == 1

    def test_a_read_outside_a_store_is_celerys_own(self):
        measure.wrap_redis_backend()
        app = Celery("check", backend="redis://127.0.0.1:1/0", set_as_current=False)
        backend = app.backend
        backend.client = client = self.Client(backend.encode({"status": "SUCCESS", "result": 1, "task_id": "abc"}))
        assert backend._get_task_meta_for("abc")["status"] == "SUCCESS" and client.calls == [("get", self.KEY)]


class TestWrittenIds:
    """What the writer knows of the ids it wrote, which decides plain commands or the script."""

    def test_an_end_is_remembered_and_a_late_start_does_not_undo_it(self):
        written = WrittenIds()
        written.note("a", Rank.RUNNING)
        assert not written.ended("a")
        written.note("a", Rank.TERMINAL)
        written.note("a", Rank.RUNNING)  # a "started" write that lost the race to the end
        assert written.ended("a")

    def test_it_remembers_only_the_newest_ends(self, monkeypatch):
        monkeypatch.setattr(written_ids, "REMEMBERED_TERMINAL", 2)
        written = WrittenIds()
        for task_id in "abc":
            written.note(task_id, Rank.TERMINAL)
        assert [written.ended(t) for t in "abc"] == [False, True, True]

    def test_ids_that_left_the_queue_are_taken_once_and_a_sent_one_never_left(self, monkeypatch):
        monkeypatch.setattr(written_ids, "LEFT_QUEUE_BATCH", 2)
        written = WrittenIds()
        written.note("sent", Rank.SENT)
        for task_id, rank in (("a", Rank.RECEIVED), ("b", Rank.RUNNING), ("c", Rank.TERMINAL)):
            written.note(task_id, rank)
        assert written.take_left_queue() == {"a", "b"}  # "c" is past the batch: readers drop it lazily
        assert written.take_left_queue() == set()
