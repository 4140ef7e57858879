"""Task records: every pool writes them, they never downgrade, keys honour global_keyprefix,
and a broken Redis for records never breaks a task."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest
from celery import Celery, current_app

import celery_ext
from celery_ext import end_script, measure
from celery_ext.record_writes import RecordWrite
from celery_ext.records import FINISHED_INDEX_SIZE, IndexPages, store_for
from celery_ext.task_record import TaskRecord
from celery_ext.writer import TRIM_INTERVAL, writer_for
from tests import harness, proj
from tests.status_checks import describe_checked, wait_for, wait_for_phase

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def as_current(app):
    """Publish tracking attributes a send to the current app (the signal names no app)."""
    previous = current_app._get_current_object()
    app.set_current()
    try:
        yield app
    finally:
        previous.set_current()


def read_record(app, task_id) -> TaskRecord | None:
    store = store_for(app)
    return TaskRecord.from_redis(store.client().hgetall(store.record_key(task_id)))


def write(app, task_id, state, **fields):
    writer = writer_for(app)
    writer.put(RecordWrite(task_id, state, {k: str(v) for k, v in fields.items()}, at=time.time()))
    assert writer.flush(5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pool", "start_method"),
    [("prefork", None), ("prefork", "spawn"), ("solo", None), ("threads", None)],
    ids=["prefork-fork", "prefork-spawn", "solo", "threads"],
)
def test_every_pool_writes_complete_records(app, subprocess_worker, pool, start_method):
    subprocess_worker(pool=pool, concurrency=2, start_method=start_method)
    ok = proj.add.delay(1, 2)
    bad = proj.fail.delay("nope")
    assert ok.get(timeout=60) == 3
    status = wait_for(app, ok.id, lambda s: s.runtime_s is not None)
    record = read_record(app, ok.id)
    assert record.state == "SUCCESS"
    assert record.worker and record.worker.startswith("fileintel-test-")
    assert record.queued_at <= record.started_at <= record.completed_at
    # "received" is written only for a task still waiting in the prefetch buffer after
    # RECEIVED_WAIT (test below): a task a pool takes at once has its end as its one write.
    assert record.received_at is None or record.queued_at <= record.received_at <= record.started_at
    store = store_for(app)
    assert record.result_bytes == status.result_info.bytes == store.client().strlen(store.meta_key(ok.id))
    ttl = store.client().pttl(store.meta_key(ok.id)) / 1000
    assert abs(record.result_expires_at.timestamp() - (time.time() + ttl)) < 2.0
    failed = wait_for(app, bad.id, lambda s: s.phase.value == "failed" and s.runtime_s is not None)
    assert read_record(app, bad.id).error_type == "ValueError"
    assert failed.error.message == "nope"


@pytest.mark.slow
def test_a_task_waiting_in_the_prefetch_buffer_is_recorded_as_received(app, subprocess_worker):
    # One pool process, busy: the next task waits in the main process's prefetch buffer.
    subprocess_worker(pool="prefork", concurrency=1)
    blocker = proj.sleep.delay(3)
    wait_for(app, blocker.id, lambda s: s.phase.value == "running")
    waiting = proj.add.delay(2, 2)
    record = _wait_for_record(app, waiting.id, lambda r: r.state == "RECEIVED")
    assert record.worker and record.received_at and record.started_at is None
    assert waiting.get(timeout=30) == 4
    done = _wait_for_record(app, waiting.id, lambda r: r.state == "SUCCESS")
    assert done.queued_at <= done.received_at < done.started_at <= done.completed_at


def _wait_for_record(app, task_id, predicate, timeout=15.0) -> TaskRecord:
    deadline = time.monotonic() + timeout
    while (record := read_record(app, task_id)) is None or not predicate(record):
        assert time.monotonic() < deadline, f"timed out; last record: {record}"
        time.sleep(0.05)
    return record


def test_a_terminal_record_is_never_downgraded(app):
    task_id = str(uuid.uuid4())
    write(app, task_id, "STARTED", started_at=100.0)
    write(app, task_id, "SUCCESS", completed_at=200.0)
    # Late and duplicate signals: a second failure, a late "started", a late "sent".
    write(app, task_id, "FAILURE", completed_at=300.0, error_type="WorkerLostError")
    write(app, task_id, "STARTED", started_at=400.0)
    write(app, task_id, "SENT", queued_at=50.0)
    record = read_record(app, task_id)
    assert record.state == "SUCCESS"
    assert record.completed_at.timestamp() == 200.0
    assert record.started_at.timestamp() == 100.0
    assert record.error_type == "WorkerLostError"  # a missing field is filled in, nothing overwritten
    assert record.queued_at.timestamp() == 50.0


def test_first_failure_wins_when_task_failure_fires_twice(app):
    task_id = str(uuid.uuid4())
    write(app, task_id, "FAILURE", error_type="TimeLimitExceeded", error_message="first")
    write(app, task_id, "FAILURE", error_type="WorkerLostError", error_message="second")
    assert read_record(app, task_id).error_message == "first"


def test_a_retried_task_moves_back_to_running(app):
    task_id = str(uuid.uuid4())
    write(app, task_id, "STARTED")
    write(app, task_id, "RETRY", retries=1)
    write(app, task_id, "RECEIVED")  # the retry message arrives again: no step back
    assert read_record(app, task_id).state == "RETRY"
    write(app, task_id, "STARTED")
    assert read_record(app, task_id).state == "STARTED"


def test_record_ttl_outlives_the_result(app, worker):
    result = proj.add.delay(1, 1)
    result.get(timeout=10)
    wait_for(app, result.id, lambda s: s.runtime_s is not None)
    store = store_for(app)
    ttl = store.client().ttl(store.record_key(result.id))
    assert 7 * 86400 - 60 < ttl <= 7 * 86400
    assert ttl > store.client().ttl(store.meta_key(result.id)) + 86400


def test_active_and_finished_indexes(app, worker):
    from celery_ext.records import recent_task_ids

    running = proj.sleep.delay(2)
    wait_for_phase(app, running.id, "running")
    assert running.id in recent_task_ids(app, "active")
    running.get(timeout=10)
    wait_for(app, running.id, lambda s: s.runtime_s is not None)
    assert running.id not in recent_task_ids(app, "active")
    assert recent_task_ids(app, "finished", 1) == [running.id]


def test_the_board_reads_every_index_page_in_one_round_trip(app):
    """The board's four index pages (active, finished, failed and the queued ids old enough
    to be stuck) cost one round trip to the real Redis, not four."""
    store = store_for(app)
    client = store.client()
    ids = [str(uuid.uuid4()) for _ in range(4)]
    client.zadd(store.active_key, {ids[0]: 1})
    client.zadd(store.finished_key, {ids[1]: 2})
    client.zadd(store.failed_key, {ids[2]: 3})
    client.zadd(store.queued_key, {ids[3]: 4})
    client.ping()  # the connection is made before counting
    read = []

    def board_pages() -> None:
        read.append(store.index_pages(active=200, finished=25, failed=10, queued_before=(100.0, 25)))

    assert harness.round_trips(board_pages) == 1
    assert read == [IndexPages([ids[0]], [ids[1]], [ids[2]], [(ids[3], 4.0)])]


@pytest.mark.slow
def test_a_worker_whose_every_end_rides_still_keeps_the_finished_index_to_its_size(
    app, redis_server, subprocess_worker, monkeypatch
):
    """Short successes from a stock producer: the worker writes no batch at all (every end
    rides with its result), and "finished" is still trimmed to its newest FINISHED_INDEX_SIZE."""
    store = store_for(app)
    client = store.client()
    client.zadd(store.finished_key, {f"older-{n}": n for n in range(FINISHED_INDEX_SIZE)})
    monkeypatch.setitem(app.conf, "fileintel_track_sent", False)  # this process writes nothing
    subprocess_worker(pool="prefork", concurrency=1)
    stock = Celery("stock-producer", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    results = [stock.send_task("tests.proj.add", (n, n)) for n in range(3)]
    assert [r.get(timeout=30) for r in results] == [0, 2, 4]
    harness.wait_for(
        lambda: client.zcard(store.finished_key) == FINISHED_INDEX_SIZE,
        timeout=3 * TRIM_INTERVAL,
        what=lambda: f'"finished" trimmed to {FINISHED_INDEX_SIZE} (holds {client.zcard(store.finished_key)})',
    )
    newest = {task_id.decode() for task_id in client.zrange(store.finished_key, -3, -1)}
    assert newest == {r.id for r in results}


@pytest.mark.slow
def test_a_retried_task_leaves_the_active_index_when_it_succeeds(app, subprocess_worker):
    """Its RETRY put it in "active"; its successful run, which rides, takes it out. (One pool
    process: its second run starts after its first stored RETRY. With more, Celery's own
    read-then-write can store RETRY over the second run's SUCCESS.)"""
    from celery_ext.records import recent_task_ids

    subprocess_worker(pool="prefork", concurrency=1)
    result = proj.retried_once.delay()
    assert result.get(timeout=30) == "done"
    status = wait_for(app, result.id, lambda s: s.runtime_s is not None)
    assert status.retries == 1 and status.outcome.value == "ok"
    assert result.id not in recent_task_ids(app, "active")


@pytest.mark.slow
def test_a_task_that_fails_in_another_worker_after_its_retry_leaves_the_active_index(app, subprocess_worker):
    """Its RETRY, written by the first worker, put it in "active"; the worker that runs it
    again wrote nothing for it before, yet its failure takes it out (its retries say so)."""
    from celery_ext.records import recent_task_ids

    first, second = (f"fileintel-retry-{uuid.uuid4().hex[:8]}-{n}" for n in (1, 2))
    subprocess_worker(pool="prefork", concurrency=1, queues=[first])
    subprocess_worker(pool="prefork", concurrency=1, queues=[second])
    result = proj.retried_elsewhere_then_fails.apply_async((second,), queue=first)
    with pytest.raises(RuntimeError):
        result.get(timeout=30)
    status = wait_for(app, result.id, lambda s: s.runtime_s is not None)
    assert status.retries == 1 and status.outcome.value == "failed"
    assert result.id not in recent_task_ids(app, "active")


def _record_at_the_publish(app, task_id: str, send) -> tuple[TaskRecord | None, float | None]:
    """The task's record and "finished" score as read the moment its result is published."""
    store = store_for(app)
    client = store.client()
    pubsub = app.backend.client.pubsub()
    pubsub.subscribe(store.meta_key(task_id))
    try:
        send()
        deadline = time.monotonic() + 30
        while (message := pubsub.get_message(timeout=1.0)) is None or message["type"] != "message":
            assert time.monotonic() < deadline, "no result was published"
        return TaskRecord.from_redis(client.hgetall(store.record_key(task_id))), client.zscore(store.finished_key, task_id)
    finally:
        pubsub.close()


def test_a_successful_tasks_end_is_in_redis_the_moment_its_result_is(app, worker):
    """The end is written in one script with the result: whoever hears the result's PUBLISH
    finds the terminal record and its "finished" entry, with no window where they lag."""
    store = store_for(app)
    client = store.client()
    task_id = str(uuid.uuid4())
    record, finished = _record_at_the_publish(app, task_id, lambda: proj.add.apply_async((2, 3), task_id=task_id))
    assert record is not None and record.state == "SUCCESS" and record.completed_at is not None
    assert finished == pytest.approx(record.completed_at.timestamp(), abs=1e-3)
    assert record.runtime_s is not None and record.started_at <= record.completed_at
    assert record.result_bytes == client.strlen(store.meta_key(task_id))
    assert 0 < client.ttl(store.record_key(task_id)) <= store.record_ttl
    assert 0 < client.ttl(store.meta_key(task_id)) <= app.backend.expires
    assert proj.add.AsyncResult(task_id).get(timeout=5) == 5


def test_the_end_still_rides_after_redis_forgot_its_scripts(app, worker):
    """SCRIPT FLUSH (or a restart) between tasks: the script is loaded again, the end still
    lands with the result."""
    add_task = proj.add.apply_async((1, 1))
    assert add_task.get(timeout=30) == 2
    store_for(app).client().script_flush()
    task_id = str(uuid.uuid4())
    record, finished = _record_at_the_publish(app, task_id, lambda: proj.add.apply_async((2, 2), task_id=task_id))
    assert record is not None and record.state == "SUCCESS" and finished is not None


def test_a_result_too_big_to_ride_is_stored_by_celery_and_its_record_follows(app, worker):
    nbytes = end_script.MAX_RESULT_BYTES + 1
    result = proj.big_result.delay(nbytes)
    assert len(result.get(timeout=30)) == nbytes
    store = store_for(app)

    def ended() -> TaskRecord | None:
        record = read_record(app, result.id)
        return record if record is not None and record.runtime_s is not None else None

    record = harness.wait_for(ended, what="the record's end")
    assert record.state == "SUCCESS" and record.result_bytes == store.client().strlen(store.meta_key(result.id))
    assert store.client().zscore(store.finished_key, result.id) is not None


def test_a_redis_user_refused_scripts_writes_nothing_and_leaves_results_to_celery_for_a_while(app, redis_server, monkeypatch):
    """An ACL that denies EVALSHA (a real Redis user): the script writes nothing and says it
    could not run, so the caller lets Celery write the result (``measure.py``, unit-tested);
    it is not tried again for a while."""
    import redis

    admin = redis_server.client()
    admin.acl_setuser("fileintel-noscripts", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                      commands=["+@all", "-evalsha", "-eval"])
    monkeypatch.setattr(end_script, "_refused_until", 0.0)
    kwargs = admin.connection_pool.connection_kwargs
    limited = redis.Redis(host=kwargs["host"], port=kwargs["port"], username="fileintel-noscripts", password="pw")
    try:
        task_id = str(uuid.uuid4())
        store = store_for(app)
        keys = (store.meta_key(task_id), store.record_key(task_id), store.finished_key, store.active_key)
        args = ("value", 60, '{"state": "SUCCESS"}', 60, task_id, "1.0", "0", "1")
        assert end_script.run_end_script(limited, keys, args) is None
        assert admin.exists(store.meta_key(task_id), store.record_key(task_id)) == 0
        assert end_script._refused_until > time.monotonic() + end_script.REFUSED_RETRY_S / 2
    finally:
        limited.close()
        admin.acl_deluser("fileintel-noscripts")


def test_the_script_keeps_the_result_when_the_record_cannot_take_the_end(app):
    store = store_for(app)
    client = store.client()
    task_id = str(uuid.uuid4())
    client.set(store.record_key(task_id), "not a hash")
    keys = (store.meta_key(task_id), store.record_key(task_id), store.finished_key, store.active_key)
    args = ("value", 60, '{"state": "SUCCESS"}', 60, task_id, "1.0", "0", "1")
    assert end_script.run_end_script(client, keys, args) is measure.RideOutcome.RESULT_ONLY
    assert client.get(store.meta_key(task_id)) == b"value" and 0 < client.ttl(store.meta_key(task_id)) <= 60
    assert client.get(store.record_key(task_id)) == b"not a hash"


@pytest.mark.parametrize(
    ("stored", "kept"),
    [(b'{"status": "SUCCESS", "result": 1}', True), (b'{"status": "STARTED", "result": null}', False),
     (b"\x80\x04not json", False), (None, False)],
    ids=["a success", "started", "not JSON", "nothing"],
)
def test_the_script_keeps_a_stored_success_as_celery_does_and_writes_nothing(app, stored, kept):
    """The check Celery makes before it stores a success, made by the script (``measure.py``
    hands it over): a stored success stays, and the script writes nothing else either."""
    store = store_for(app)
    client = store.client()
    task_id = str(uuid.uuid4())
    if stored is not None:
        client.set(store.meta_key(task_id), stored)
    keys = (store.meta_key(task_id), store.record_key(task_id), store.finished_key, store.active_key)
    args = ("second", 60, '{"state": "SUCCESS"}', 60, task_id, "1.0", "0", "1")
    assert end_script.run_end_script(client, keys, args) is (
        measure.RideOutcome.KEPT_STORED_SUCCESS if kept else measure.RideOutcome.BOTH
    )
    assert client.get(store.meta_key(task_id)) == (stored if kept else b"second")
    assert client.exists(store.record_key(task_id)) == (0 if kept else 1)
    assert (client.zscore(store.finished_key, task_id) is None) == kept


def test_a_task_run_again_keeps_its_first_success_and_its_record_says_what_is_stored(app, worker):
    """A task delivered twice (a lost acknowledgement): the first success stays, as with stock
    Celery (the end script makes the check here); the second end measures the result that stayed."""
    task_id = str(uuid.uuid4())
    assert proj.add.apply_async((1, 1), task_id=task_id).get(timeout=30) == 2
    store = store_for(app)
    first = store.client().get(store.meta_key(task_id))
    harness.wait_for(lambda: (r := read_record(app, task_id)) is not None and r.runtime_s is not None, what="the first end")
    store.client().delete(store.record_key(task_id))  # so the second run's end is the one read back
    proj.add.apply_async((2, 2), task_id=task_id)

    def ended() -> TaskRecord | None:
        record = read_record(app, task_id)
        return record if record is not None and record.runtime_s is not None else None

    record = harness.wait_for(ended, what="the second end")
    assert store.client().get(store.meta_key(task_id)) == first
    assert proj.add.AsyncResult(task_id).get(timeout=5) == 2
    assert record.state == "SUCCESS" and record.result_bytes == len(first)


def test_a_record_that_cannot_take_the_end_never_fails_the_tasks_result(app, worker, caplog):
    """A record key holding another type (WRONGTYPE in the result's script): the result still
    lands and the task succeeds; only the record is missing its end."""
    store = store_for(app)
    task_id = str(uuid.uuid4())
    store.client().set(store.record_key(task_id), "not a hash")
    result = proj.add.apply_async((2, 3), task_id=task_id)
    assert result.get(timeout=30) == 5
    assert result.state == "SUCCESS"
    assert store.client().get(store.record_key(task_id)) == b"not a hash"


def test_global_keyprefix_is_honoured(redis_server):
    url = redis_server.url.replace("/0", "/3")
    prefixed = Celery("prefixed", broker=url, backend=url, set_as_current=False)
    prefixed.conf.result_backend_transport_options = {"global_keyprefix": "tenant1"}
    celery_ext.install(prefixed)
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    task_id = str(uuid.uuid4())
    with as_current(prefixed):
        prefixed.send_task("tests.proj.add", (1, 2), task_id=task_id, queue="fileintel-nobody")
    status = wait_for_phase(prefixed, task_id, "queued")
    assert status.queued_at is not None
    keys = {k.decode() for k in client.keys("*")}
    assert f"tenant1_fileintel-record-{task_id}" in keys
    assert store_for(prefixed).meta_key(task_id) == f"tenant1_celery-task-meta-{task_id}".encode()


def test_records_go_to_the_redis_broker_when_the_backend_is_rpc(redis_server, subprocess_worker):
    """rpc:// keeps no results for other clients; records still tell what happened."""
    subprocess_worker(pool="solo", concurrency=1, env={"FILEINTEL_TEST_RESULT_BACKEND": "rpc://"})
    rpc_app = Celery("rpc", broker=redis_server.url, backend="rpc://", set_as_current=False)
    celery_ext.install(rpc_app)
    assert store_for(rpc_app).enabled and not store_for(rpc_app).result_backend_is_redis
    with as_current(rpc_app):
        result = rpc_app.send_task("tests.proj.add", (2, 2))
    status = wait_for(rpc_app, result.id, lambda s: s.phase.value == "succeeded", timeout=30)
    assert status.result_available is False and status.expired is False
    assert status.outcome.value == "no_result"  # never "expired", never "unknown"
    assert any("rpc://" in n for n in status.notes)


def test_records_are_off_without_any_redis_and_describe_says_so():
    off = Celery("off", broker="memory://", backend="cache+memory://", set_as_current=False)
    celery_ext.install(off)
    status = describe_checked(off, str(uuid.uuid4()))
    assert status.phase.value == "unknown"
    assert any("Task records are off" in n for n in status.notes)


def test_a_dead_records_redis_never_fails_a_task(app, redis_server, caplog):
    from tests.harness import free_port

    dead = Celery("dead-records", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    dead.conf.fileintel_redis_url = f"redis://127.0.0.1:{free_port()}/0"
    celery_ext.install(dead)
    writer = writer_for(dead)
    started = time.monotonic()
    writer.put(RecordWrite(str(uuid.uuid4()), "SUCCESS", {}, at=time.time()))
    assert writer.flush(10), "the writer must give up on a dead Redis, not hang"
    assert time.monotonic() - started < 10
    assert any("could not write 1 task record" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_database_backend_keeps_records_on_the_redis_broker(redis_server, subprocess_worker, postgres_url):
    """The common split: results in PostgreSQL, broker (and so records) in Redis."""
    backend = "db+" + postgres_url
    subprocess_worker(pool="solo", concurrency=1, env={"FILEINTEL_TEST_RESULT_BACKEND": backend})
    db_app = Celery("db", broker=redis_server.url, backend=backend, set_as_current=False)
    celery_ext.install(db_app)
    store = store_for(db_app)
    assert store.enabled and not store.result_backend_is_redis
    with as_current(db_app):
        ok = db_app.send_task("tests.proj.add", (3, 4))
        queued = db_app.send_task("tests.proj.add", (1, 1), queue="fileintel-nobody")
    assert ok.get(timeout=30) == 7
    status = wait_for(db_app, ok.id, lambda s: s.runtime_s is not None, timeout=30)
    assert (status.phase.value, status.result, status.result_available) == ("succeeded", 7, True)
    assert status.started_at is not None and status.worker
    assert wait_for_phase(db_app, queued.id, "queued").queued_at is not None


def test_sentinel_urls_work_as_in_celery(app, worker, sentinel_url):
    sentinel_app = Celery("sentinel", broker=app.conf.broker_url, backend=sentinel_url, set_as_current=False)
    sentinel_app.conf.result_backend_transport_options = {"master_name": "fileintel"}
    celery_ext.install(sentinel_app)
    done = proj.add.delay(5, 5)
    done.get(timeout=10)
    status = wait_for(sentinel_app, done.id, lambda s: s.runtime_s is not None)
    assert (status.phase.value, status.result) == ("succeeded", 10)
    with as_current(sentinel_app):
        queued = sentinel_app.send_task("tests.proj.add", (1, 1), queue="fileintel-nobody")
    assert wait_for_phase(sentinel_app, queued.id, "queued").queued_at is not None


def test_a_producer_that_exits_right_after_sending_keeps_the_sent_record(app):
    """The writer is a background thread: an exiting script flushes it (atexit)."""
    import subprocess
    import sys

    from tests.harness import REPO_ROOT, subprocess_env

    code = (
        "from tests import proj; "
        "print(proj.add.apply_async((1, 2), queue=proj.NOBODY_QUEUE).id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=subprocess_env(), cwd=REPO_ROOT, check=True)
    task_id = out.stdout.strip()
    status = describe_checked(app, task_id)
    assert status.phase.value == "queued" and status.queued_at is not None


def test_a_send_with_the_records_redis_down_still_sends_and_stops_trying_at_once(redis_server):
    """The "sent" record is written in the sender's thread; a dead records Redis costs one
    failed attempt, then writes go to the background thread until it is worth trying again."""
    from tests.harness import free_port

    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    producer = Celery("down", broker=redis_server.url, backend="rpc://", set_as_current=False)
    producer.conf.fileintel_redis_url = down
    celery_ext.install(producer)
    with as_current(producer):
        first = producer.send_task("tests.proj.add", (1, 1), queue=proj.NOBODY_QUEUE)
        writer = writer_for(producer)
        assert writer._sync_off_until > time.monotonic()  # gave up on writing in the sender's thread
        second = producer.send_task("tests.proj.add", (2, 2), queue=proj.NOBODY_QUEUE)
    assert first.id != second.id
    # Handed to the thread instead, which fails in its turn and drops it (logged, not raised).
    assert writer.flush(timeout=10)
    assert writer.pending(second.id) is None


def test_readers_overlay_a_sent_write_still_queued_only_when_redis_has_no_record():
    from celery_ext.lookup import _with_pending

    queued = RecordWrite("t1", "SENT", {"queued_at": "1796250000.5", "queue": "reports"})
    record = _with_pending({}, queued)
    assert record is not None and record.state == "SENT" and record.queue == "reports"
    stored = {"state": "STARTED", "rank": "2", "started_at": "1796250001.0"}
    assert _with_pending(stored, queued).state == "STARTED"  # Redis knows more: it wins
    assert _with_pending({}, None) is None
