"""A Redis that accepts connections and never answers (paused, overloaded, a dead proxy):
every reader gives up after ``fileintel_read_timeout`` with a clear error, never hangs.

The Redis here is one of the test's own, paused with SIGSTOP, so nothing else is disturbed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid

import pytest
from celery import Celery

import celery_ext
from celery_ext.errors import BackendUnavailable
from celery_ext.records import store_for
from tests.harness import RedisServer, run_celery, wait_for

pytestmark = pytest.mark.integration

READ_TIMEOUT = 1.0
#: The contract: a read gives up within its timeout plus this.
MARGIN = 1.0


@pytest.fixture
def paused():
    """An installed app on a Redis of its own, and a context manager that pauses that Redis."""
    server = RedisServer()
    server.start()
    app = Celery("paused", broker=server.url, backend=server.url, set_as_current=False)
    app.conf.fileintel_read_timeout = READ_TIMEOUT
    celery_ext.install(app)

    @contextlib.contextmanager
    def pause():
        os.kill(server.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(server.pid, signal.SIGCONT)

    try:
        yield app, server, pause
    finally:
        app.close()
        server.close()


def test_describe_gives_up_after_the_read_timeout(paused):
    app, server, pause = paused
    task_id = str(uuid.uuid4())
    celery_ext.describe(app, task_id)  # connected before the pause: the read is what hangs
    with pause():
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as raised:
            celery_ext.describe(app, task_id)
        elapsed = time.monotonic() - started
    assert elapsed <= READ_TIMEOUT + MARGIN, elapsed
    assert server.url.split("@")[-1].split("/")[0] in str(raised.value)
    # Once Redis answers again, so does describe (the dead connection is replaced).
    assert celery_ext.describe(app, task_id).task_id == task_id


def test_a_wait_through_a_paused_redis_ends_at_its_deadline(paused):
    from celery_ext.status import Phase
    from celery_ext.writer import flush_all

    app, server, pause = paused
    task_id = app.send_task("tests.proj.add", (1, 1), queue="fileintel-nobody").id
    flush_all()
    first = []
    with pause():
        started = time.monotonic()
        # Paused after the first read: the subscription hears nothing, the deadline ends it.
        try:
            outcome = celery_ext.wait(app, [task_id], timeout=2, on_update=first.append)
            ended = "timed out" if outcome.timed_out else "finished"
        except BackendUnavailable:
            ended = "backend unavailable"
        elapsed = time.monotonic() - started
    assert ended in ("timed out", "backend unavailable")
    assert elapsed <= 2 + READ_TIMEOUT + MARGIN, elapsed
    assert all(status.phase is Phase.QUEUED for status in first)


def test_flowers_live_connection_gives_up_on_a_paused_redis(paused):
    """Flower's hub subscribes through AsyncSubscriber: on a paused Redis its SUBSCRIBE fails
    after the read timeout (and the hub retries with backoff) instead of waiting forever."""
    import asyncio

    from celery_ext.push import AsyncSubscriber
    from celery_ext.records import meta_channel_pattern

    app, server, pause = paused

    async def subscribe_while_paused():
        subscriber = AsyncSubscriber(app)
        await subscriber.connect()
        with pause():
            started = time.monotonic()
            try:
                await subscriber.psubscribe(meta_channel_pattern(app))
                failed = False
            except Exception:  # asyncio's TimeoutError, or the connection's own error
                failed = True
            elapsed = time.monotonic() - started
        await subscriber.close()
        return failed, elapsed

    failed, elapsed = asyncio.run(subscribe_while_paused())
    assert failed and elapsed <= READ_TIMEOUT + MARGIN, (failed, elapsed)


def test_the_cli_exits_69_on_a_paused_redis(paused):
    app, server, pause = paused
    with pause():
        # tests.proj on the paused server, with the default read timeout (5 s).
        run = run_celery("fileintel", "status", str(uuid.uuid4()), env={"FILEINTEL_TEST_REDIS_URL": server.url})
    assert run.returncode == 69, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "error" in run.stderr.lower(), run.stderr


def test_a_bad_setting_is_refused_at_install_naming_it():
    app = Celery("bad-settings", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.fileintel_read_timeout = -1
    with pytest.raises(ValueError, match=r"fileintel_read_timeout must be a number of seconds > 0, not -1"):
        celery_ext.install(app)
    app.conf.fileintel_read_timeout = 5
    app.conf.fileintel_expiry_warning = -10
    with pytest.raises(ValueError, match="fileintel_expiry_warning"):
        celery_ext.install(app)


def test_a_paused_records_redis_never_holds_up_sends_or_the_writer(redis_server):
    """Records on a Redis of their own that stops answering: sends go through after at most
    one write timeout, and the background writer gives up on its batch instead of hanging."""
    from celery_ext.record_writes import RecordWrite
    from celery_ext.writer import writer_for
    from tests import proj

    records = RedisServer()
    records.start()
    producer = Celery("paused-records", broker=redis_server.url, backend="rpc://", set_as_current=False)
    producer.conf.fileintel_redis_url = records.url
    celery_ext.install(producer)
    write_timeout = store_for(producer).settings.record_write_timeout
    previous = proj.app
    producer.set_current()
    os.kill(records.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        sent = [producer.send_task("tests.proj.add", (i, i), queue=proj.NOBODY_QUEUE).id for i in range(3)]
        send_time = time.monotonic() - started
        writer = writer_for(producer)
        writer.put(RecordWrite(str(uuid.uuid4()), "SUCCESS", {}, at=time.time()))
        assert writer.flush(timeout=10), "the writer must give up on a paused Redis, not hang"
    finally:
        os.kill(records.pid, signal.SIGCONT)
        previous.set_current()
        producer.close()
        records.close()
    assert len(set(sent)) == 3
    # The first send waits one write timeout, then the sender stops trying (until Redis is back).
    assert send_time <= write_timeout + MARGIN, send_time


# -- many readers at once ------------------------------------------------------------------------


@pytest.mark.slow
def test_200_concurrent_waits_all_end_with_their_task(app, worker, redis_client, capsys):
    from concurrent.futures import ThreadPoolExecutor

    from celery_ext.status import Phase
    from tests import proj

    ids = [proj.add.delay(i, i).id for i in range(200)]
    clients_before = redis_client.info("clients")["connected_clients"]
    started = time.monotonic()
    with ThreadPoolExecutor(200) as pool:
        outcomes = list(pool.map(lambda task_id: celery_ext.wait(app, [task_id], timeout=60)[task_id], ids))
    elapsed = time.monotonic() - started
    import gc

    assert [s.phase for s in outcomes] == [Phase.SUCCEEDED] * 200
    assert [s.result for s in outcomes] == [2 * i for i in range(200)]

    def clients_now() -> int:
        # Each finished thread's reader pool closes its socket when the thread's locals are
        # freed and collected, which can come after the pool's join() returns; and Redis
        # counts a client gone only once it has read the close. So: eventually, not at once.
        gc.collect()
        clients: int = redis_client.info("clients")["connected_clients"]
        return clients

    # Every waiter closed its subscription: no connection was left behind. A leak never
    # drains, and fails here after the timeout.
    wait_for(
        lambda: clients_now() <= clients_before + 10,
        timeout=20,
        what=lambda: f"Redis clients back to at most {clients_before} + 10 (now {clients_now()})",
    )
    clients_after = clients_now()
    with capsys.disabled():
        print(f"\n200 concurrent wait() calls: all succeeded in {elapsed:.2f} s; "
              f"Redis clients {clients_before} before, {clients_after} after")


@pytest.mark.slow
def test_50_board_viewers_all_get_the_board_over_one_subscription(app, worker, capsys):
    from concurrent.futures import ThreadPoolExecutor

    from flower_fileintel.testing import FlowerServer, sse_events
    from tests import proj

    done = proj.add.delay(1, 1)
    done.get(timeout=30)
    with FlowerServer(app, basic_auth=["u:p"]) as flower:
        def view(_):
            started = time.monotonic()
            events = sse_events(flower.url("/fileintel/events"), auth=("u", "p"), timeout=30,
                                until=lambda item: item[0] == "board")
            return events, time.monotonic() - started

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(view, range(50)))
        connections = flower.call(lambda: flower.flower_app.fileintel_state.hub.connections_opened)
    firsts = sorted(seconds for _, seconds in results)
    assert all(events and events[-1][0] == "board" for events, _ in results)
    assert connections == 1
    with capsys.disabled():
        print(f"\n50 board viewers: all got the board; first snapshot median {firsts[25] * 1000:.0f} ms, "
              f"slowest {firsts[-1] * 1000:.0f} ms; pub/sub connections: {connections}")


@pytest.mark.slow
def test_a_worker_whose_records_redis_is_paused_loses_and_fails_no_task(app, subprocess_worker, capsys):
    """Records on a Redis of their own, paused while a prefork worker runs tasks: every task
    still succeeds (the records are written from a thread, with a short timeout)."""
    from tests import proj

    records = RedisServer()
    records.start()
    try:
        subprocess_worker(pool="prefork", concurrency=2, env={"FILEINTEL_TEST_RECORDS_URL": records.url})
        first = proj.add.delay(0, 0)
        assert first.get(timeout=30) == 0  # the worker is up
        with records.client() as client:  # and writes its records to this Redis
            wait_for(lambda: client.exists(f"fileintel-record-{first.id}"), 10, what="the worker's record")
        os.kill(records.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            results = [proj.add.delay(i, 1) for i in range(20)]
            values = [r.get(timeout=60) for r in results]
            elapsed = time.monotonic() - started
        finally:
            os.kill(records.pid, signal.SIGCONT)
    finally:
        records.close()
    assert values == [i + 1 for i in range(20)]
    assert all(r.state == "SUCCESS" for r in results)
    with capsys.disabled():
        print(f"\n20 tasks on a worker whose records Redis was paused: all succeeded in {elapsed:.2f} s")
