"""Tasks queued longer than a threshold ("stuck"): what the board's "stuck" section shows.

A producer that called ``install(app)`` adds each task it sends to the "queued" index in the
same script call that writes its "sent" record (``task_record.WRITE_SCRIPT``), scored by the
send time. Workers add no command per task: each writer takes the ids its worker received
out of the index in one ZREM at its index trim (every five seconds), and readers drop the rest lazily.

A reader takes the oldest ``limit`` ids sent before the threshold (``RecordStore.index_pages``,
in the same round trip as its other index reads); ``stuck_among`` classifies them like every
reader (``describe_many``: one round trip), keeps those still ``queued`` and removes the others
from the index (one ZREM). Its cost is bounded by ``limit``, not by the number of tasks
in Redis. The one catch of pruning lazily: when every id read has moved on, that read shows
fewer stuck tasks than there are; the next read (the index pruned) shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery_ext.status import Phase, TaskStatus

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["StuckTask", "split_still_queued", "stuck_among", "queue_of"]


@dataclass(frozen=True)
class StuckTask:
    """A task still queued ``queued_for_s`` seconds after it was sent, on ``queue`` (the
    routing key it was sent with; None when the record does not say)."""

    status: TaskStatus
    queue: str | None
    queued_for_s: float


def split_still_queued(statuses: Sequence[TaskStatus]) -> tuple[list[TaskStatus], list[str]]:
    """The statuses still ``queued`` (as ``classify.py`` decided), and the ids of the others:
    received, running, finished, or whose record is gone. Those left the queue for good (a
    task never goes back to "sent"), so they can leave the index."""
    queued = [s for s in statuses if s.phase is Phase.QUEUED]
    moved_on = [s.task_id for s in statuses if s.phase is not Phase.QUEUED]
    return queued, moved_on


def stuck_among(app: Celery, candidates: Sequence[tuple[str, float]], now: float) -> list[StuckTask]:
    """Of ``candidates``, a page of the queued index (ids and send times, oldest first, as
    ``RecordStore.index_pages(queued_before=...)`` reads them), the tasks still queued; the
    others leave the index. Raises ``BackendUnavailable`` when Redis does not answer."""
    from celery_ext.lookup import METADATA_ONLY_BYTES, describe_many
    from celery_ext.records import store_for

    if not candidates:
        return []
    store = store_for(app)
    sent_at = dict(candidates)
    statuses = describe_many(app, list(sent_at), max_result_bytes=METADATA_ONLY_BYTES)
    queued, moved_on = split_still_queued(statuses)
    store.forget_queued(moved_on)
    queues = store.queues_of([s.task_id for s in queued])
    return [
        StuckTask(status, queue, queued_for_s(status, sent_at[status.task_id], now))
        for status, queue in zip(queued, queues)
    ]


def queued_for_s(status: TaskStatus, sent_at: float, now: float) -> float:
    """How long ``status`` has been queued: from its record's ``queued_at``, else from the
    index's score (the same moment, unless the record was damaged)."""
    start = status.queued_at.timestamp() if status.queued_at is not None else sent_at
    return max(0.0, now - start)


def queue_of(app: Celery, task_id: str) -> str | None:
    """The queue (routing key) ``task_id`` was sent to, as its record says; None when the
    record does not say. Raises ``BackendUnavailable`` when Redis does not answer."""
    from celery_ext.records import store_for

    return store_for(app).queues_of([task_id])[0]
