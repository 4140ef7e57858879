"""What a record write is, and which writes to make when: pure logic, no Redis, no thread.

Signal receivers describe each transition as a ``RecordWrite``. Writes for one task fold
into one (``coalesce``, by the write script's rules in ``task_record``). A write a later one
will likely supersede is deferred: kept as the cheap object that can make it (``Deferred``, in
a ``DeferredLane``) and made only if it is still news when it falls due. ``writer.py`` runs them.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from celery_ext.task_record import apply_write, moves_up

__all__ = ["RecordWrite", "Deferred", "DeferredLane", "coalesce"]


@dataclass(frozen=True)
class RecordWrite:
    task_id: str
    state: str | None  # None: only fill in fields, no transition
    fields: dict[str, str]
    measure_result: bool = False  # read the stored result's size and TTL (terminal writes)
    at: float = 0.0  # epoch seconds of the event
    #: Fields that overwrite (not only fill) while the record is not terminal: the last progress.
    live: dict[str, str] | None = None
    #: A terminal write from the process that ran the task, with the stored result measured:
    #: it may skip the write script (see ``RecordWriter._direct_commands``).
    direct: bool = False
    #: (A direct write) a running state may have put the id in the "active" index: take it out
    #: (``running.Run.end`` decides). The write script reads the record's rank instead.
    leaves_active: bool = False


class Deferred(Protocol):
    """A write that waits for the one likely to supersede it, and is made only if it has not
    by then: a task's "started" write (most tasks end first), "received" (a pool process
    usually takes the task at once). It is kept as the object that can make it, so the tasks
    that end in time never build a write at all: the receivers stay cheap on every task's path."""

    #: ``time.monotonic()`` from which the write is due.
    due: float

    def settled(self) -> bool:
        """True once the write cannot be needed any more (the task ended, or started). Called
        on a task's path: reads a flag or two, no lock."""

    def write_if_needed(self) -> RecordWrite | None:
        """The write, if it is still news (called once, in the writer's thread); None drops it."""


class DeferredLane:
    """Deferred writes of one kind. They all wait as long, so they fall due in the order they
    come: a deque, appended to from any thread, taken from by the writer's thread.

    The writer sleeps until the head falls due. Most writes settle long before (a short task
    ends in milliseconds), so ``append`` first drops the settled ones at the head: the head is
    then a write that may still be needed, and the writer wakes for it, not once per
    ``DUE_SLACK`` for a stream of ended tasks. (In a busy prefork pool process, that was 20 to
    25 wakes a second, each costing the process more than the rest of a task's record work.)"""

    def __init__(self) -> None:
        self._items: deque[Deferred] = deque()
        #: The head is read, then popped, by the appending threads and the writer's thread.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item: Deferred) -> None:
        items = self._items
        with self._lock:
            while items and items[0].settled():
                items.popleft()
            items.append(item)

    def next_due(self) -> float | None:
        items = self._items
        try:
            return items[0].due
        except IndexError:  # emptied meanwhile
            return None

    def take_due(self, now: float, flush: bool = False) -> list[RecordWrite]:
        """The writes of the items due at ``now`` (monotonic seconds; ``flush``: all of them)
        that are still needed."""
        items, due = self._items, []
        with self._lock:
            while items and (flush or items[0].due <= now):
                due.append(items.popleft())
        writes = []
        for item in due:  # outside the lock: an append never waits for the writes
            write = item.write_if_needed()
            if write is not None:
                writes.append(write)
        return writes


def coalesce(batch: list[RecordWrite]) -> list[RecordWrite]:
    """Fold the writes for the same task into one, with the record script's own rules
    (``task_record.apply_write``)."""
    folded: dict[str, RecordWrite] = {}
    for write in batch:
        current = folded.get(write.task_id)
        if current is None:
            folded[write.task_id] = write
            continue
        before = {**current.fields, "state": current.state} if current.state else dict(current.fields)
        fields = apply_write(before, write.state, write.fields)  # live fields: merged below
        state = fields.pop("state", None)
        live = {**(current.live or {}), **(write.live or {})} or None
        measure = current.measure_result or write.measure_result
        # Directness comes with the write that set the state (a duplicate does not).
        latest = write if moves_up(current.state, write.state) else current
        folded[write.task_id] = RecordWrite(
            write.task_id, state, fields, measure, max(current.at, write.at), live, latest.direct, latest.leaves_active
        )
    return list(folded.values())
