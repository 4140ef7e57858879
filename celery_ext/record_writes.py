"""What a record write is, and which writes to make when: pure logic, no Redis, no thread.

Signal receivers describe each transition as a ``RecordWrite``. Writes for one task fold
into one (``coalesce``, by the write script's rules in ``task_record``), and a write a later
one will likely supersede waits for it (``WaitingWrites``). ``writer.py`` runs them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from celery_ext.task_record import apply_write, moves_up

__all__ = ["RecordWrite", "WaitingWrites", "coalesce"]


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
    #: Not before this ``time.monotonic()``: a write a later one will likely supersede waits
    #: for it and is folded into it ("started" of a short task, "received" of a task a pool
    #: process takes at once).
    not_before: float = 0.0
    #: Asked when a waiting write falls due: False drops it (its news is stale by then).
    still_needed: Callable[[], bool] | None = None


class WaitingWrites:
    """Writes waiting for their ``not_before``, one per task, each folded with whatever comes
    for its task meanwhile: a task that ends within its "started" write's wait is written once.
    A write whose ``still_needed`` says no when it falls due is dropped. A heap orders them by
    due time, so a worker with thousands waiting pays log(n) per write, not n."""

    def __init__(self) -> None:
        self._by_task: dict[str, RecordWrite] = {}
        self._due: list[tuple[float, str]] = []  # (not_before, task id); stale entries skipped

    def __len__(self) -> int:
        return len(self._by_task)

    def next_due(self) -> float | None:
        while self._due and self._stale(self._due[0]):
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    def _stale(self, entry: tuple[float, str]) -> bool:
        write = self._by_task.get(entry[1])
        return write is None or write.not_before != entry[0]

    def take(self, batch: list[RecordWrite], now: float, flush: bool = False) -> list[RecordWrite]:
        """The writes to make at ``now`` (monotonic seconds): those of ``batch`` that need not
        wait, folded with their task's waiting write, and the waiting ones that fell due.
        ``flush`` makes every waiting write due."""
        ready: list[RecordWrite] = []
        for write in batch:
            waiting = self._by_task.pop(write.task_id, None)
            if waiting is not None:
                write = coalesce([waiting, write])[0]
            if write.not_before > now and not flush:
                self._by_task[write.task_id] = write
                heapq.heappush(self._due, (write.not_before, write.task_id))
            else:
                ready.append(write)
        while self._due and (flush or self._due[0][0] <= now):
            entry = heapq.heappop(self._due)
            if self._stale(entry):
                continue
            write = self._by_task.pop(entry[1])
            if write.still_needed is None or write.still_needed():
                ready.append(write)
        return ready


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
        # Direct and timing come with the write that set the state (a duplicate does not).
        # Progress makes a waiting write due: a task that reports it is worth showing now.
        latest = write if moves_up(current.state, write.state) else current
        not_before = 0.0 if write.live else latest.not_before
        folded[write.task_id] = RecordWrite(
            write.task_id, state, fields, measure, max(current.at, write.at), live,
            latest.direct, not_before, latest.still_needed,
        )
    return list(folded.values())
