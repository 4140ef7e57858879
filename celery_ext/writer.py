"""The record writer: a background thread per process that batches record writes.

Signal receivers only put a small tuple on a queue (microseconds), so a record write never
slows a task down and never does I/O on the worker's event loop. The thread drains the
queue into one pipeline per batch, with a short socket timeout. When Redis fails, it logs
once per interval and drops that batch: a record is a nicety, the task is what matters.

A producer's "sent" write goes to Redis in the sender's own thread, before the publish, so
a task just sent reads ``queued`` everywhere. Worker writes go through the thread, except a
successful task's end, which rides with Celery's write of its result (``running.RecordEnd``).
A write a later one will likely supersede is deferred (``defer``; ``record_writes.Deferred``):
made when it falls due, and only if it is still news then, so a short task costs one write:
its end. An end the thread writes for the process that ran the task goes as plain commands
(``RecordWriter._direct_commands``). A busy writer lingers ``LINGER`` to gather bigger
batches. Until a queued "sent" write is done, ``pending()`` hands it to readers in the same
process.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import threading
import time
from typing import Any

from celery import Celery
from redis.exceptions import NoScriptError

from celery_ext.record_writes import Deferred, DeferredLane, RecordWrite, coalesce
from celery_ext.records import (
    FAILED_INDEX_SIZE,
    FINISHED_INDEX_SIZE,
    QUEUED_INDEX_SIZE,
    RecordStore,
    store_for,
)
from celery_ext.task_record import FAILED_STATES, SENT, WRITE_SCRIPT, Rank
from celery_ext.written_ids import WrittenIds

__all__ = ["RecordWriter", "writer_for", "pending_write", "flush_all"]

logger = logging.getLogger(__name__)

MAX_BATCH = 500
QUEUE_SIZE = 20_000
ERROR_LOG_INTERVAL = 60.0
#: A busy writer (its last batch ended less than BUSY_WINDOW ago) waits this long after the
#: first worker write of a batch for more: fewer, bigger round trips. Records lag by at most
#: this much plus one round trip. ("Sent" writes never wait: while one batch is in flight the
#: next one gathers by itself.)
LINGER = 0.05
BUSY_WINDOW = 0.1
#: A deferred write is made up to this late, with the others due by then: one wake of the
#: thread per interval, not one per task.
DUE_SLACK = 0.05
#: How long a process that exits waits for its last record writes.
EXIT_FLUSH_TIMEOUT = 1.0
#: The writer trims the indexes (to their sizes, and "active" to the record TTL) at most this
#: often: six commands every five seconds per process, instead of two per batch. (Once a
#: second, they alone were 0.1 command per task on a busy prefork worker.) An index holds at
#: most this long's worth of ids over its size. A process whose every end rides with its
#: result writes no batch: the trim is then made on its own (``_trim_owed``).
TRIM_INTERVAL = 5.0


class RecordWriter:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.pid = os.getpid()
        self.queue: queue.Queue[tuple[int, RecordWrite] | threading.Event | None] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        #: "Sent" writes queued and not yet written (Redis was failing when they were made),
        #: with their sequence number: readers in this process overlay them on a missing record.
        self._pending: dict[str, tuple[int, RecordWrite]] = {}
        self._pending_lock = threading.Lock()
        self._seq = 0
        self._last_batch_end = 0.0
        self._sync_off_until = 0.0
        self._last_error_log = 0.0
        self._sha: str | None = None
        self._last_trim = 0.0
        #: An end rode with its result (``note_end_written``) since the last trim: it added an
        #: id to "finished" that no batch of this writer's will trim.
        self._trim_owed = False
        #: What this process wrote for which ids (tasks' threads note their ends there too).
        self._written = WrittenIds()
        #: Deferred writes, a lane per kind (each kind waits as long: see ``DeferredLane``).
        self._lanes: dict[type, DeferredLane] = {}
        #: When the thread wakes next (monotonic): -inf while awake, inf while idle.
        self._wake_at = -math.inf
        self._thread = threading.Thread(target=self._run, name="fileintel-records", daemon=True)
        self._thread.start()

    def defer(self, item: Deferred) -> None:
        """Make ``item``'s write when it falls due, if still needed. The thread is woken only
        if it would sleep past that time and its slack (it wakes for the head of the lane,
        which ``append`` keeps at the first write that may be needed). (One wake per task in a
        worker's main process cost more than all the rest.)"""
        lane = self._lanes.get(type(item))
        if lane is None:
            lane = self._lanes.setdefault(type(item), DeferredLane())
        lane.append(item)
        if item.due + DUE_SLACK < self._wake_at:
            self._wake()

    def put(self, write: RecordWrite) -> None:
        if write.state == SENT and self._write_now(write):
            return
        with self._pending_lock:
            self._seq += 1
            seq = self._seq
            if write.state == SENT:
                # Only a task's first write needs showing to readers here: once Redis has a
                # record, readers use it. (Worker writes skip this: it is their hot path.)
                self._pending[write.task_id] = (seq, write)
        try:
            self.queue.put_nowait((seq, write))
        except queue.Full:
            self.dropped += 1
            self._done_up_to(seq, [write])
            self._log_error("the record queue is full (%d writes waiting); dropping writes", QUEUE_SIZE)

    def _wake(self) -> None:
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # a full queue wakes it anyway

    def _write_now(self, write: RecordWrite) -> bool:
        """Write in the caller's thread: a producer's "sent" record is in Redis before the
        publish, so whoever gets the id next reads ``queued`` (not ``unknown``). One round
        trip, cheaper than handing it to the thread (which costs the sender more in GIL
        hand-offs; benchmarks/read_after_send.py). When Redis fails, hand writes to the
        thread for ``ERROR_LOG_INTERVAL``: a send never waits on a broken Redis twice."""
        if time.monotonic() < self._sync_off_until:
            return False
        store = store_for(self.app)
        try:
            client = store.own_backend(store.settings.record_write_timeout).client
            try:
                self._write(store, client, [write])
            except NoScriptError:
                self._sha = None
                self._write(store, client, [write])
            return True
        except Exception as exc:
            self._sync_off_until = time.monotonic() + ERROR_LOG_INTERVAL
            self._log_error("could not write a task record to %s: %s", store.display_url, exc)
            return False

    def pending(self, task_id: str) -> RecordWrite | None:
        """The "sent" write for ``task_id`` if it is still waiting to be written."""
        entry = self._pending.get(task_id)
        return entry[1] if entry else None

    def _done_up_to(self, seq: int, batch: list[RecordWrite]) -> None:
        """Forget the pending writes of ``batch`` unless a later write came in since."""
        if not self._pending:
            return
        with self._pending_lock:
            for write in batch:
                entry = self._pending.get(write.task_id)
                if entry is not None and entry[0] <= seq:
                    del self._pending[write.task_id]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (or failed). True if done in time."""
        done = threading.Event()
        try:
            self.queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        store = store_for(self.app)
        while True:
            item = self._next_item()
            self._wake_at = -math.inf
            if item is not None and self._should_linger(item):
                time.sleep(LINGER)
            batch: list[RecordWrite] = []
            markers: list[threading.Event] = []
            last_seq = 0
            while True:
                if isinstance(item, threading.Event):
                    markers.append(item)
                elif item is not None:
                    last_seq, write = item
                    batch.append(write)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            # Deferred writes first: a task's "started" came before its progress or end.
            now = time.monotonic()
            due = [write for lane in list(self._lanes.values()) for write in lane.take_due(now, flush=bool(markers))]
            ready = coalesce(due + batch)
            if ready or self._trim_due(now):
                try:
                    client = store.own_backend(store.settings.record_write_timeout).client
                    try:
                        self._write(store, client, ready)
                    except NoScriptError:  # Redis restarted or SCRIPT FLUSH: load it again
                        self._sha = None
                        self._write(store, client, ready)
                except Exception as exc:  # never let the writer die
                    what = f"{len(ready)} task record(s)" if ready else "the trim of the indexes"
                    self._log_error("could not write %s to %s: %s", what, store.display_url, exc)
                self._last_batch_end = time.monotonic()
            if batch:
                self._done_up_to(last_seq, batch)
            for marker in markers:
                marker.set()

    def _trim_due(self, now: float) -> bool:
        """A trim owed by ridden ends, with no batch to carry it, is due (monotonic ``now``)."""
        return self._trim_owed and now - self._last_trim >= TRIM_INTERVAL

    def _next_item(self) -> tuple[int, RecordWrite] | threading.Event | None:
        """The next queued item, or None when a deferred write or an owed trim falls due
        first (the lanes are read after publishing the wake time: a ``defer`` in between
        wakes us; every task's run defers its "started" write, so a ride is followed by a wake)."""
        self._wake_at = math.inf  # a defer() while we look wakes us
        dues = [due for lane in list(self._lanes.values()) if (due := lane.next_due()) is not None]
        if self._trim_owed:
            dues.append(self._last_trim + TRIM_INTERVAL)
        due = min(dues) + DUE_SLACK if dues else None
        self._wake_at = math.inf if due is None else due
        try:
            if due is None:
                return self.queue.get()
            return self.queue.get(timeout=max(0.0, due - time.monotonic()))
        except queue.Empty:
            return None

    def _should_linger(self, item: tuple[int, RecordWrite] | threading.Event) -> bool:
        """Linger only when busy, and never for a "sent" write: a producer's reader in another
        process must find the record as soon as the id reaches it. Worker writes fold."""
        if isinstance(item, threading.Event) or item[1].state == SENT:
            return False
        return time.monotonic() - self._last_batch_end < BUSY_WINDOW

    def _write(self, store: RecordStore, client: Any, batch: list[RecordWrite]) -> None:
        """One round trip for the batch: direct terminal writes as plain commands, the rest
        through the write script, and the index trim when it is due."""
        if self._sha is None:
            self._sha = client.script_load(WRITE_SCRIPT)
        ttl = store.record_ttl
        now = time.monotonic()
        trim = now - self._last_trim >= TRIM_INTERVAL
        if trim:
            self._trim_owed = False  # before the commands: an end that rides meanwhile owes the next
        if len(batch) == 1 and not trim and not self._is_direct(batch[0]):
            # The idle case, e.g. a producer's "sent" write: a pipeline's own cost would double it.
            self._script_call(client, store, batch[0], batch[0].at or time.time(), ttl)
            self._remember(batch[0])
            return
        with client.pipeline(transaction=False) as pipe:
            for w in batch:
                at = w.at or time.time()
                if self._is_direct(w):
                    self._direct_commands(pipe, store, w, at, ttl)
                else:
                    self._script_call(pipe, store, w, at, ttl)
                self._remember(w)
            if trim:
                self._last_trim = now
                pipe.zremrangebyscore(store.active_key, "-inf", time.time() - ttl)
                pipe.zremrangebyrank(store.finished_key, 0, -FINISHED_INDEX_SIZE - 1)
                pipe.zremrangebyrank(store.failed_key, 0, -FAILED_INDEX_SIZE - 1)
                self._trim_queued(pipe, store, ttl)
            pipe.execute()

    def _trim_queued(self, pipe: Any, store: RecordStore, ttl: int) -> None:
        """The "queued" index: ids older than the record TTL go, and past QUEUED_INDEX_SIZE
        the newest (the oldest are what the board's "stuck" section shows); ids this
        process's worker took off the queue go in one ZREM."""
        pipe.zremrangebyscore(store.queued_key, "-inf", time.time() - ttl)
        pipe.zremrangebyrank(store.queued_key, QUEUED_INDEX_SIZE, -1)
        left = self._written.take_left_queue()
        if left:
            pipe.zrem(store.queued_key, *left)

    def _is_direct(self, w: RecordWrite) -> bool:
        return w.direct and w.state is not None and not self._written.ended(w.task_id)

    def _direct_commands(self, pipe: Any, store: RecordStore, w: RecordWrite, at: float, ttl: int) -> None:
        """A terminal write the write script would apply in full, as plain commands (``HSET``,
        ``ZADD`` finished, and failed for a failure, ``EXPIRE``) instead of a script running
        seven: the record cannot be terminal yet, since this process ran the task and has not
        written its end (``WrittenIds.ended``). Out of "active" where the run's end says a
        running state may have put the id there (``running.Run.end``)."""
        assert w.state is not None
        key = store.record_key(w.task_id)
        pipe.hset(key, mapping={**w.fields, **(w.live or {}), "state": w.state, "rank": int(Rank.TERMINAL)})
        if w.leaves_active:
            pipe.zrem(store.active_key, w.task_id)
        pipe.zadd(store.finished_key, {w.task_id: at})
        if w.state in FAILED_STATES:
            pipe.zadd(store.failed_key, {w.task_id: at})
        pipe.expire(key, ttl)

    def _script_call(self, target: Any, store: RecordStore, w: RecordWrite, at: float, ttl: int) -> None:
        """The write script for ``w``, on a client or a pipeline."""
        assert self._sha is not None
        target.evalsha(
            self._sha,
            6,
            *store.keys_for_write(w.task_id),
            ttl,
            w.state or "",
            int(Rank.of(w.state)) if w.state else 0,
            repr(at),
            w.task_id,
            "1" if w.measure_result else "0",
            json.dumps(w.fields),
            json.dumps(w.live) if w.live else "{}",
        )

    def note_end_written(self, task_id: str) -> None:
        """A task's end this process wrote with its result (``running.RecordEnd``), from the
        task's thread: remember it as if this writer had written it, and owe "finished" a trim."""
        self._written.note(task_id, Rank.TERMINAL)
        self._trim_owed = True

    def _remember(self, w: RecordWrite) -> None:
        if w.state is not None:
            self._written.note(w.task_id, Rank.of(w.state))

    def _log_error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            logger.warning("fileintel: " + message, *args)


_writers: dict[int, RecordWriter] = {}
_writers_lock = threading.Lock()


def writer_for(app: Celery) -> RecordWriter:
    """This process's writer for ``app`` (a new one after fork: threads do not survive it)."""
    key = id(app)
    writer = _writers.get(key)
    if writer is None or writer.pid != os.getpid():
        with _writers_lock:
            writer = _writers.get(key)
            if writer is None or writer.pid != os.getpid():
                writer = _writers[key] = RecordWriter(app)
                _flush_at_exit()
    return writer


_exit_hook_pid: int | None = None


def _flush_at_exit() -> None:
    """A short script that sends a task and exits must not lose the task's "sent" record."""
    global _exit_hook_pid
    if _exit_hook_pid != os.getpid():
        _exit_hook_pid = os.getpid()
        atexit.register(flush_all, EXIT_FLUSH_TIMEOUT)


def pending_write(app: Celery, task_id: str) -> RecordWrite | None:
    """A record write for ``task_id`` this process queued and has not written yet."""
    writer = _writers.get(id(app))
    if writer is None or writer.pid != os.getpid():
        return None
    return writer.pending(task_id)


def flush_all(timeout: float = 5.0) -> None:
    """Flush every writer of this process (worker shutdown, tests)."""
    for writer in list(_writers.values()):
        if writer.pid == os.getpid():
            writer.flush(timeout)
