"""The board's "stuck" section: which queued ids stay, which leave the index, what one read
costs (``celery_ext.stuck``), and who consumes a queue (``flower_fileintel.consumers``), on
hand-built inputs, a fake Redis and a fixed clock."""

from __future__ import annotations

import types
import uuid
from datetime import datetime, timezone
from typing import Any

import fakeredis
import pytest
from celery import Celery

from celery_ext import lookup
from celery_ext.records import IndexPages, RecordStore, forget_store, store_for
from celery_ext.status import Phase, TaskStatus
from celery_ext.stuck import StuckTask, queued_for_s, split_still_queued, stuck_among
from flower_fileintel.consumers import (
    QueueConsumers,
    consumers_of,
    live_worker_queues,
    needs_inspection,
)

NOW = 1_800_000_000.0


def status(task_id: str, phase: Phase, queued_at: float | None = None) -> TaskStatus:
    at = datetime.fromtimestamp(queued_at, timezone.utc) if queued_at is not None else None
    return TaskStatus(task_id=task_id, phase=phase, state=None, queued_at=at)


def test_only_queued_tasks_stay_and_every_other_phase_leaves_the_index():
    statuses = [status(f"t{i}", phase) for i, phase in enumerate(Phase)]
    queued, moved_on = split_still_queued(statuses)
    assert [s.phase for s in queued] == [Phase.QUEUED]
    assert sorted(moved_on) == sorted(f"t{i}" for i, p in enumerate(Phase) if p is not Phase.QUEUED)


def test_the_age_comes_from_the_record_else_from_the_index():
    assert queued_for_s(status("a", Phase.QUEUED, NOW - 90), NOW - 5, NOW) == 90
    assert queued_for_s(status("a", Phase.QUEUED), NOW - 5, NOW) == 5
    assert queued_for_s(status("a", Phase.QUEUED, NOW + 3), NOW, NOW) == 0  # a clock ahead: never negative


class FakeWorker:
    def __init__(self, alive: bool) -> None:
        self.alive = alive


def queues(*names: str) -> dict[str, Any]:
    return {"active_queues": [{"name": n, "exchange": {"name": n}} for n in names]}


class TestConsumers:
    def test_a_queue_no_live_worker_consumes(self):
        workers = live_worker_queues({"w1": FakeWorker(True)}, {"w1": queues("celery")})
        assert consumers_of("orphan", workers) == QueueConsumers("none")
        assert consumers_of("orphan", workers).word("orphan") == "no live worker consumes orphan"

    def test_live_workers_that_consume_it_are_counted_and_dead_ones_are_not(self):
        events = {"w1": FakeWorker(True), "w2": FakeWorker(True), "w3": FakeWorker(False)}
        inspected = {"w1": queues("a", "b"), "w2": queues("b"), "w3": queues("b")}
        result = consumers_of("b", live_worker_queues(events, inspected))
        assert result == QueueConsumers("consumed", 2)
        assert result.word("b") == "consumed by 2 live workers"
        assert consumers_of("a", live_worker_queues(events, inspected)).word("a") == "consumed by 1 live worker"

    def test_a_live_worker_not_inspected_yet_makes_it_unknown_unless_another_consumes_it(self):
        events = {"w1": FakeWorker(True), "w2": FakeWorker(True)}
        workers = live_worker_queues(events, {"w1": queues("a")})
        assert workers == {"w1": frozenset({"a"}), "w2": None}
        assert consumers_of("b", workers).state == "unknown"
        assert consumers_of("a", workers) == QueueConsumers("consumed", 1)
        assert needs_inspection(workers)

    def test_no_events_seen_is_unknown_and_no_live_worker_is_none(self):
        assert consumers_of("a", live_worker_queues({}, {})).state == "unknown"
        assert consumers_of("a", live_worker_queues(None, None)).state == "unknown"
        assert consumers_of("a", live_worker_queues({"w1": FakeWorker(False)}, queues("a"))).state == "none"

    def test_a_malformed_inspector_reply_reads_as_not_inspected(self):
        workers = live_worker_queues({"w1": FakeWorker(True)}, {"w1": {"active_queues": "garbage"}})
        assert workers == {"w1": None}
        workers = live_worker_queues({"w1": FakeWorker(True)}, {"w1": {"active_queues": [{"x": 1}, "y"]}})
        assert workers == {"w1": frozenset()}

    def test_an_unknown_queue_is_unknown(self):
        assert consumers_of(None, {"w1": frozenset({"a"})}).state == "unknown"


@pytest.fixture
def app_and_redis(monkeypatch: pytest.MonkeyPatch) -> Any:
    app = Celery("stuck-logic", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    monkeypatch.setattr(RecordStore, "client", lambda self: client)
    yield app, client
    forget_store(app)


def stuck_now(app: Celery, *, older_than_s: float, limit: int) -> list[StuckTask]:
    """What the board does: a page of the queued index, then the tasks of it still queued."""
    page = store_for(app).index_pages(queued_before=(NOW - older_than_s, limit)).queued
    return stuck_among(app, page, NOW)


def test_stuck_reads_one_page_keeps_the_queued_and_prunes_the_rest(app_and_redis, monkeypatch):
    app, client = app_and_redis
    store = store_for(app)
    ids = [str(uuid.uuid4()) for _ in range(6)]
    # sent 600, 500, ... 100 s ago; the two oldest were consumed, the rest still wait
    for i, task_id in enumerate(ids):
        client.zadd(store.queued_key, {task_id: NOW - 600 + 100 * i})
        client.hset(store.record_key(task_id), mapping={"queue": f"q{i}"})
    moved_on = set(ids[:2])
    asked: list[list[str]] = []

    def fake_describe_many(app: Any, task_ids: list[str], **_: Any) -> list[TaskStatus]:
        asked.append(list(task_ids))
        return [status(i, Phase.RUNNING if i in moved_on else Phase.QUEUED) for i in task_ids]

    monkeypatch.setattr(lookup, "describe_many", fake_describe_many)

    stuck = stuck_now(app, older_than_s=250, limit=3)
    assert asked == [ids[:3]]  # the page, oldest first: never more than the limit
    assert [(t.status.task_id, t.queue, t.queued_for_s) for t in stuck] == [(ids[2], "q2", 400.0)]
    assert client.zscore(store.queued_key, ids[0]) is None and client.zscore(store.queued_key, ids[1]) is None
    assert client.zcard(store.queued_key) == 4

    stuck = stuck_now(app, older_than_s=250, limit=3)  # the next read: pruned, so it sees more
    assert [t.status.task_id for t in stuck] == ids[2:4]  # sent 400 and 300 s ago; 200 s is not stuck yet


def test_a_member_that_is_no_task_id_leaves_the_index_instead_of_holding_a_slot(app_and_redis, monkeypatch):
    app, client = app_and_redis
    store = store_for(app)
    real = str(uuid.uuid4())
    client.zadd(store.queued_key, {"not a task id": NOW - 900, b"\xff\xfe": NOW - 800, real: NOW - 700})
    monkeypatch.setattr(lookup, "describe_many", lambda app, ids, **_: [status(i, Phase.QUEUED) for i in ids])
    assert [t.status.task_id for t in stuck_now(app, older_than_s=300, limit=2)] == []
    assert client.zrange(store.queued_key, 0, -1) == [real.encode()]
    assert [t.status.task_id for t in stuck_now(app, older_than_s=300, limit=2)] == [real]


def test_stuck_with_nothing_old_enough_asks_nothing_more(app_and_redis, monkeypatch):
    app, client = app_and_redis
    client.zadd(store_for(app).queued_key, {str(uuid.uuid4()): NOW - 10})
    monkeypatch.setattr(lookup, "describe_many", lambda *a, **k: pytest.fail("no candidates: no lookup"))
    assert stuck_now(app, older_than_s=300, limit=25) == []


def test_index_pages_reads_each_page_asked_for_newest_first_and_skips_foreign_members(app_and_redis):
    app, client = app_and_redis
    store = store_for(app)
    ids = [str(uuid.uuid4()) for _ in range(6)]
    client.zadd(store.active_key, {ids[0]: 1, ids[1]: 2})
    client.zadd(store.finished_key, {ids[2]: 1, "not a task id": 2, ids[3]: 3})
    client.zadd(store.failed_key, {ids[4]: 1})
    client.zadd(store.queued_key, {ids[5]: NOW - 600, str(uuid.uuid4()): NOW - 10})

    pages = store.index_pages(active=1, finished=3, failed=0, queued_before=(NOW - 300, 5))
    assert pages.active == [ids[1]]  # the newest one only
    assert pages.finished == [ids[3], ids[2]]  # the member that is no task id is skipped
    assert pages.failed == []  # not asked for
    assert pages.queued == [(ids[5], NOW - 600)]  # sent before the cutoff only
    assert store.index_pages() == IndexPages()


def test_the_stuck_threshold_is_a_validated_setting():
    from celery_ext.settings import get_settings

    app = Celery("stuck-setting")
    assert get_settings(app).stuck_after == 300.0
    app.conf.fileintel_stuck_after = 0
    with pytest.raises(ValueError, match="fileintel_stuck_after"):
        get_settings(app)


def test_a_stuck_entry_carries_queue_age_and_an_honest_unknown_until_flower_says():
    from flower_fileintel.state import stuck_entry

    task = types.SimpleNamespace(status=status("a", Phase.QUEUED, NOW - 90), queue="orphan", queued_for_s=90.0004)
    entry = stuck_entry(task)
    assert (entry["queue"], entry["queued_for_s"], entry["phase"]) == ("orphan", 90.0, "queued")
    assert entry["consumers"]["state"] == "unknown"
