"""``wait()`` on a fake clock: deadlines, the re-reads of running tasks that notice a dead
worker, and the push source's safety re-read. No Redis, no sleeping: the fake source moves
the clock as far as the wait loop asked it to block.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from celery import Celery

import celery_ext
from celery_ext import watch
from celery_ext.status import Outcome, Phase, ResultInfo, TaskStatus

TID = "3b7c5f2e-8d41-4c55-9f0e-2f6f0b1d7a10"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """Nothing is ever pushed: each wait blocks for as long as it is allowed to."""

    connected = False

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.blocks: list[float | None] = []
        self.closes: list[str] = []

    def open(self, task_ids, timeout):
        self.connected = True

    def wait(self, task_ids, timeout):
        self.blocks.append(timeout)
        assert timeout is not None, "a fake clock cannot block forever"
        self.clock.now += timeout
        return {}

    def on_change(self):
        pass

    def close(self, *, in_background=False):
        self.connected = False
        self.closes.append("in the background" if in_background else "at once")


@pytest.fixture
def fake(monkeypatch):
    app = Celery("clock", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0", set_as_current=False)
    celery_ext.install(app)
    clock = FakeClock()
    source = FakeSource(clock)
    reads: list[float] = []
    script: list[TaskStatus] = []

    def observe_many(app_, ids):
        reads.append(clock.now - 1000.0)
        status = script.pop(0) if len(script) > 1 else script[0]
        return [replace(status, task_id=i) for i in ids]

    monkeypatch.setattr(watch, "_make_source", lambda app_, push, clock_: source)
    # The scripted statuses stand in for the facts read, and classify as themselves.
    monkeypatch.setattr("celery_ext.lookup.observe_many", observe_many)
    monkeypatch.setattr("celery_ext.lookup.status_of", lambda app_, facts: facts)
    return app, clock, source, reads, script


def status(phase: Phase, outcome: Outcome) -> TaskStatus:
    return TaskStatus(task_id=TID, phase=phase, state=None, result_info=ResultInfo(reason=outcome))


QUEUED = status(Phase.QUEUED, Outcome.NOT_READY)
RUNNING = status(Phase.RUNNING, Outcome.NOT_READY)
LOST = status(Phase.LOST, Outcome.LOST)


def test_the_deadline_is_exact_and_a_queued_task_is_read_once(fake):
    app, clock, source, reads, script = fake
    script.append(QUEUED)
    outcome = celery_ext.wait(app, [TID], timeout=30, clock=clock)
    assert outcome.elapsed_s == 30.0 and outcome.timed_out
    assert reads == [0.0]  # push carries the news: no re-read while it is queued
    assert source.blocks == [30.0]


def test_running_tasks_are_re_read_every_half_lost_after(fake):
    app, clock, source, reads, script = fake
    script.append(RUNNING)
    outcome = celery_ext.wait(app, [TID], timeout=100, clock=clock)
    assert reads == [0.0, 30.0, 60.0, 90.0]  # fileintel_lost_after=60 s by default
    assert outcome.elapsed_s == 100.0 and outcome.unfinished == (TID,)


def test_a_lost_task_ends_the_wait_at_the_next_re_read(fake):
    app, clock, source, reads, script = fake
    script.extend([RUNNING, LOST])
    outcome = celery_ext.wait(app, [TID], timeout=600, clock=clock)
    assert reads == [0.0, 30.0]
    assert outcome[TID].phase is Phase.LOST and not outcome.timed_out


def test_the_push_source_re_reads_everything_after_the_safety_interval():
    clock = FakeClock()

    class QuietPubSub:
        def get_message(self, timeout=0.0):
            clock.now += timeout
            return None

    app = Celery("push", backend="redis://127.0.0.1:1/0", set_as_current=False)
    source = watch._PushSource(app, clock)
    source._subscriber._pubsub = QuietPubSub()
    source._next_safety = clock.now + watch.SAFETY_INTERVAL
    assert source.wait([TID], 50.0) == {}  # a quiet connection: nothing to re-read yet
    assert source.wait([TID], None) == {TID: None}  # blocked until the safety interval, then re-read
    assert clock.now == 1000.0 + watch.SAFETY_INTERVAL


def test_a_wait_that_ends_leaves_closing_its_connection_off_the_callers_path(fake):
    app, clock, source, reads, script = fake
    script.append(LOST)
    celery_ext.wait(app, [TID], timeout=600, clock=clock)
    assert source.closes == ["in the background"]


def test_ctrl_c_closes_the_connection_at_once_and_propagates(fake):
    app, clock, source, reads, script = fake
    script.append(QUEUED)

    def interrupted(task_ids, timeout):
        raise KeyboardInterrupt

    source.wait = interrupted
    with pytest.raises(KeyboardInterrupt):
        celery_ext.wait(app, [TID], timeout=600, clock=clock)
    assert source.closes == ["at once"]


def test_a_subscriber_closed_in_the_background_is_closed_soon_by_the_closer_thread():
    from celery_ext.push import Subscriber

    class PubSub:
        def __init__(self):
            self.closed = threading.Event()

        def close(self):
            self.closed.set()

    app = Celery("closer", backend="redis://127.0.0.1:1/0", set_as_current=False)
    subscriber = Subscriber(app)
    pubsub = subscriber._pubsub = PubSub()
    subscriber.close(in_background=True)
    assert subscriber._pubsub is None  # released by the caller at once
    assert pubsub.closed.wait(10.0), "the closer thread did not close the connection"
