"""Whether a live worker consumes a queue, from what Flower knows of its workers.

Flower keeps two views of its workers, in every 2.x version we support (2.0.1 onwards):

- its events state (``application.events.state.workers``): which workers are alive (they
  sent a heartbeat lately);
- its inspector's cache (``application.workers``: worker name -> the replies to ``inspect``,
  among them ``active_queues``): which queues each worker consumes, as of the last inspection
  (Flower inspects at start and when its Workers page is opened).

A live worker the inspector has not answered for yet makes the answer ``unknown`` unless
another live worker is known to consume the queue: we never say "nobody consumes it" without
knowing every live worker's queues. ``QueueConsumers.word()`` is the one sentence every page
shows. (The queue is the routing key the task was sent with: the queue's name with Celery's
default direct exchanges.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["QueueConsumers", "live_worker_queues", "consumers_of"]

#: A worker's queues: their names, or None when Flower has not inspected it yet.
WorkerQueues = frozenset[str] | None


@dataclass(frozen=True)
class QueueConsumers:
    """``consumed`` (by ``workers`` live workers), ``none`` (every live worker is known and
    none consumes it), or ``unknown`` (Flower has not seen every live worker's queues)."""

    state: Literal["consumed", "none", "unknown"]
    workers: int = 0

    def word(self, queue: str | None) -> str:
        name = queue or "its queue"
        if self.state == "consumed":
            return f"consumed by {self.workers} live worker{'s' if self.workers != 1 else ''}"
        if self.state == "none":
            return f"no live worker consumes {name}"
        return f"not known yet whether a live worker consumes {name}"

    def to_dict(self, queue: str | None) -> dict[str, Any]:
        return {"state": self.state, "workers": self.workers, "text": self.word(queue)}


def live_worker_queues(events_workers: Mapping[str, Any] | None, inspected: Mapping[str, Any] | None) -> dict[str, WorkerQueues] | None:
    """Each live worker's queues (None for a worker not inspected yet); None as a whole when
    Flower's events have never shown a worker (events off, or Flower just started)."""
    if not events_workers:
        return None
    result: dict[str, WorkerQueues] = {}
    for name, worker in events_workers.items():
        if not getattr(worker, "alive", False):
            continue
        info = (inspected or {}).get(name)
        replies = info.get("active_queues") if isinstance(info, Mapping) else None
        if not isinstance(replies, list):
            result[str(name)] = None
            continue
        result[str(name)] = frozenset(
            str(q["name"]) for q in replies if isinstance(q, Mapping) and q.get("name") is not None
        )
    return result


def consumers_of(queue: str | None, workers: Mapping[str, WorkerQueues] | None) -> QueueConsumers:
    """Who consumes ``queue`` among ``workers`` (``live_worker_queues``' answer)."""
    if workers is None or queue is None:
        return QueueConsumers("unknown")
    consuming = sum(1 for queues in workers.values() if queues is not None and queue in queues)
    if consuming:
        return QueueConsumers("consumed", consuming)
    if any(queues is None for queues in workers.values()):
        return QueueConsumers("unknown")
    return QueueConsumers("none")


def needs_inspection(workers: Mapping[str, WorkerQueues] | None) -> bool:
    """Whether a live worker's queues are unknown (worth asking Flower to inspect again)."""
    return workers is not None and any(queues is None for queues in workers.values())
