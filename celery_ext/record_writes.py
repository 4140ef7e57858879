"""What a record write is, and which writes to make when: pure logic, no Redis, no thread.

Signal receivers describe each transition as a ``RecordWrite``. Writes for one task fold
into one (``coalesce``, by the write script's rules in ``task_record``). A write a later one
will likely supersede is deferred: kept as the cheap object that can make it (``Deferred``, in
a ``DeferredLane``) and made only if it is still news when it falls due. ``writer.py`` runs them.
"""

from __future__ import annotations

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

    def write_if_needed(self) -> RecordWrite | None:
        """The write, if it is still news (called once, in the writer's thread); None drops it."""


class DeferredLane:
    """Deferred writes of one kind. They all wait as long, so they fall due in the order they
    come: a deque, appended to from any thread (atomic), taken from by the writer's thread."""

    def __init__(self) -> None:
        self._items: deque[Deferred] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, item: Deferred) -> None:
        self._items.append(item)

    def next_due(self) -> float | None:
        items = self._items
        return items[0].due if items else None

    def take_due(self, now: float, flush: bool = False) -> list[RecordWrite]:
        """The writes of the items due at ``now`` (monotonic seconds; ``flush``: all of them)
        that are still needed."""
        items, writes = self._items, []
        for _ in range(len(items)):
            if not flush and items[0].due > now:
                break
            write = items.popleft().write_if_needed()
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
