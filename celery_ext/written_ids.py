"""Which states this process wrote for which task ids: what lets the writer use plain commands.

The record writer (``writer.py``) notes every state it writes, and a task's thread notes the
end it wrote with its result (``running.RecordEnd``). The writer then asks: did this process
write the task's end already (a second end is a duplicate, for the write script, which keeps
the first), and which ids left the queue since the last trim of the "queued" index.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from celery_ext.task_record import Rank

__all__ = ["WrittenIds", "REMEMBERED_TERMINAL", "LEFT_QUEUE_BATCH"]

#: How many ids of tasks this process finished it remembers: a second terminal write for one
#: of them (a duplicate signal) goes through the write script, which keeps the first.
REMEMBERED_TERMINAL = 10_000
#: At most this many ids a worker took off the queue wait for the next trim to leave the
#: "queued" index (one ZREM per trim); past it, readers drop the others lazily (``stuck.py``).
LEFT_QUEUE_BATCH = 10_000


class WrittenIds:
    """The ids this process wrote states for. Safe to note from any thread."""

    def __init__(self) -> None:
        #: Ids whose end was written (the newest REMEMBERED_TERMINAL), oldest first. An
        #: OrderedDict: it drops its oldest in constant time, where a dict's ``next(iter())``
        #: walks past every slot freed before (5 us per task once full, in a 10,000-task worker).
        self._ended: OrderedDict[str, None] = OrderedDict()
        #: Ids received, started or ended since the last ``take_left_queue``.
        self._left_queue: set[str] = set()
        self._lock = threading.Lock()

    def note(self, task_id: str, rank: Rank) -> None:
        """A state of ``rank`` was written for ``task_id``."""
        with self._lock:
            if rank > Rank.SENT and len(self._left_queue) < LEFT_QUEUE_BATCH:
                self._left_queue.add(task_id)
            if rank is Rank.TERMINAL:
                self._ended[task_id] = None
                if len(self._ended) > REMEMBERED_TERMINAL:
                    self._ended.popitem(last=False)

    def ended(self, task_id: str) -> bool:
        return task_id in self._ended

    def take_left_queue(self) -> set[str]:
        """The ids that left the queue since the last call (forgotten here)."""
        with self._lock:
            left, self._left_queue = self._left_queue, set()
        return left
