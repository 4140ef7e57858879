"""Who fetched a result: the record's ``fetched_at``, written by readers, never by workers.

When a result is read through ``celery fileintel result`` or the plugin's result API and
downloads, the reader marks the task's record with the time (one small script: one Redis
command, only if the record exists; its TTL is left alone). The board then tells "expiring
soon, and nobody has fetched it" apart from results someone already has.

The mark is a courtesy: it never fails the read that makes it (Redis gone a moment after the
read, a record of the wrong type), it only logs. The worker's per-task commands do not change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["mark_fetched", "RecordMarks", "record_marks"]

logger = logging.getLogger(__name__)

# KEYS: the record. Sets fetched_at (the server's clock, epoch seconds) on an existing record.
FETCH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'fetched_at', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
return 1
"""


def mark_fetched(app: Celery, task_id: str) -> bool:
    """Record that ``task_id``'s result was fetched just now. True when a record was marked;
    False when there is none, or the mark could not be written (logged, never raised)."""
    from celery_ext.records import store_for

    try:
        store = store_for(app)
        if not store.enabled:
            return False
        return bool(store.client().eval(FETCH_SCRIPT, 1, store.record_key(task_id)))
    except Exception as exc:  # a courtesy write: it must never fail the read it follows
        logger.warning("fileintel: could not record that task %s's result was fetched: %s", task_id[:80], exc)
        return False


class RecordMarks:
    """What the board re-reads of a finished task's record on every snapshot: the result's
    expiry (a keep moves it) and when it was last fetched. None where missing or corrupt."""

    __slots__ = ("result_expires_at", "fetched_at")

    def __init__(self, result_expires_at: datetime | None, fetched_at: datetime | None) -> None:
        self.result_expires_at = result_expires_at
        self.fetched_at = fetched_at


def record_marks(app: Celery, task_ids: Sequence[str]) -> list[RecordMarks]:
    """Each task's ``RecordMarks``, in one pipelined round trip (cost: one HMGET per id, so
    bounded by the caller's page). Raises ``BackendUnavailable`` when Redis does not answer."""
    from celery_ext.records import backend_errors, store_for, unavailable
    from celery_ext.task_record import TaskRecord, text_of

    store = store_for(app)
    if not store.enabled or not task_ids:
        return [RecordMarks(None, None) for _ in task_ids]
    try:
        pipe = store.client().pipeline(transaction=False)
        for task_id in task_ids:
            pipe.hmget(store.record_key(task_id), "result_expires_ts", "fetched_at")
        replies = pipe.execute(raise_on_error=False)
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc
    marks = []
    for reply in replies:
        if isinstance(reply, Exception):  # WRONGTYPE: not our record; this task only
            marks.append(RecordMarks(None, None))
            continue
        expires, fetched = (text_of(v) if v is not None else None for v in reply)
        fields = {k: v for k, v in (("result_expires_ts", expires), ("fetched_at", fetched)) if v is not None}
        record = TaskRecord.from_fields(fields)
        marks.append(
            RecordMarks(record.result_expires_at, record.fetched_at) if record else RecordMarks(None, None)
        )
    return marks

