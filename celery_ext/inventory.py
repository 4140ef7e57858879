"""Counts for monitoring: what the bootstep's indexes say about the cluster right now.

``take_inventory(app)`` costs one pipelined round trip for the indexes plus one
``describe_many`` of at most ``ACTIVE_READ_LIMIT`` active tasks, whatever the number of tasks in
Redis: Flower's metrics refresher calls it every 30 s (never on its IOLoop).

- **active tasks by phase**: the started-not-finished index, classified like every reader
  (so a task whose worker died counts as ``lost``);
- **results and records by remaining lifetime**: among the finished tasks the index keeps
  (the newest ``FINISHED_INDEX_SIZE``, 1,000), how many results expire within an hour or a day
  (from ``result_expires``), how many have already expired, and the same for records
  (from the record TTL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from celery_ext.records import (
    ACTIVE_READ_LIMIT,
    backend_errors,
    recent_task_ids,
    store_for,
    unavailable,
)
from celery_ext.settings import result_expires_seconds
from celery_ext.status import Phase

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["Inventory", "take_inventory", "WINDOWS"]

#: The "expires within" windows, by label.
WINDOWS: dict[str, int] = {"1h": 3600, "1d": 86400}


@dataclass(frozen=True)
class Inventory:
    """One snapshot of the indexes (see the module docstring)."""

    active_by_phase: dict[Phase, int] = field(default_factory=dict)
    #: ``window label -> count`` of indexed finished results expiring within it; "expired" too.
    results_expiring: dict[str, int] = field(default_factory=dict)
    records_expiring: dict[str, int] = field(default_factory=dict)
    finished_indexed: int = 0


def take_inventory(app: Celery, *, now: float | None = None) -> Inventory:
    """Count what the indexes hold (``BackendUnavailable`` when Redis does not answer)."""
    from celery_ext.lookup import METADATA_ONLY_BYTES, describe_many

    store = store_for(app)
    if not store.enabled:
        return Inventory()
    now = time.time() if now is None else now
    result_ttl = result_expires_seconds(app)
    record_ttl = store.record_ttl
    key = store.finished_key
    try:
        pipe = store.client().pipeline(transaction=False)
        pipe.zcard(key)
        # A task that finished at t: its result expires at t + result_ttl, so it expires
        # within w seconds when t <= now - result_ttl + w; it has expired when t <= now - result_ttl.
        for ttl in (result_ttl, record_ttl):
            if ttl is None:
                continue
            pipe.zcount(key, "-inf", now - ttl)
            for seconds in WINDOWS.values():
                pipe.zcount(key, f"({now - ttl}", now - ttl + seconds)
        replies = pipe.execute()
        active_ids = recent_task_ids(app, "active", ACTIVE_READ_LIMIT)
        statuses = describe_many(app, active_ids, max_result_bytes=METADATA_ONLY_BYTES) if active_ids else []
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc

    finished = int(replies[0])
    counts = iter(int(n) for n in replies[1:])

    def by_window(ttl: int | None) -> dict[str, int]:
        if ttl is None:  # never expires
            return {"expired": 0, **{label: 0 for label in WINDOWS}}
        return {"expired": next(counts), **{label: next(counts) for label in WINDOWS}}

    results = by_window(result_ttl)
    records = by_window(record_ttl)
    active: dict[Phase, int] = {}
    for status in statuses:
        active[status.phase] = active.get(status.phase, 0) + 1
    return Inventory(active, results, records, finished)
