"""The record writer: a background thread per process that batches record writes.

Signal receivers only put a small tuple on a queue (microseconds), so a record write never
slows a task down and never does I/O on the worker's event loop. The thread drains the
queue into one pipeline per batch, with a short socket timeout. When Redis fails, it logs
once per interval and drops that batch: a record is a nicety, the task is what matters.

A producer's "sent" write goes to Redis in the sender's own thread, before the publish, so
a task just sent reads ``queued`` everywhere. Worker writes go through the thread: an idle
writer writes at once, a busy one lingers ``LINGER`` to fold a short task's "started" and
"succeeded" into one write. Until a queued write is done, ``pending()`` hands it to readers
in the same process.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery
from redis.exceptions import NoScriptError

from celery_ext.records import FINISHED_INDEX_SIZE, RecordStore, store_for
from celery_ext.task_record import SENT, WRITE_SCRIPT, Rank, apply_write

__all__ = ["RecordWrite", "RecordWriter", "writer_for", "pending_write", "flush_all"]

logger = logging.getLogger(__name__)

MAX_BATCH = 500
QUEUE_SIZE = 20_000
ERROR_LOG_INTERVAL = 60.0
#: A busy writer (its last batch ended less than BUSY_WINDOW ago) waits this long after the
#: first worker write of a batch for more: a short task's "started" and "succeeded" then
#: travel as one write. Records lag by at most this much plus one round trip. ("Sent" writes
#: never wait: while one batch is in flight the next one gathers by itself.)
LINGER = 0.05
BUSY_WINDOW = 0.1
#: How long a process that exits waits for its last record writes.
EXIT_FLUSH_TIMEOUT = 1.0


@dataclass(frozen=True)
class RecordWrite:
    task_id: str
    state: str | None  # None: only fill in fields, no transition
    fields: dict[str, str]
    measure_result: bool = False  # read the stored result's size and TTL (terminal writes)
    at: float = 0.0  # epoch seconds of the event
    #: Fields that overwrite (not only fill) while the record is not terminal: the last progress.
    live: dict[str, str] | None = None


class RecordWriter:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.pid = os.getpid()
        self.queue: queue.Queue[tuple[int, RecordWrite] | threading.Event] = queue.Queue(QUEUE_SIZE)
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
        self._thread = threading.Thread(target=self._run, name="fileintel-records", daemon=True)
        self._thread.start()

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
            item = self.queue.get()
            if self._should_linger(item):
                time.sleep(LINGER)
            batch: list[RecordWrite] = []
            markers: list[threading.Event] = []
            last_seq = 0
            while True:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    last_seq, write = item
                    batch.append(write)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                batch = coalesce(batch)
                try:
                    client = store.own_backend(store.settings.record_write_timeout).client
                    try:
                        self._write(store, client, batch)
                    except NoScriptError:  # Redis restarted or SCRIPT FLUSH: load it again
                        self._sha = None
                        self._write(store, client, batch)
                except Exception as exc:  # never let the writer die
                    self._log_error(
                        "could not write %d task record(s) to %s: %s", len(batch), store.display_url, exc
                    )
                self._done_up_to(last_seq, batch)
                self._last_batch_end = time.monotonic()
            for marker in markers:
                marker.set()

    def _should_linger(self, item: tuple[int, RecordWrite] | threading.Event) -> bool:
        """Linger only when busy, and never for a "sent" write: a producer's reader in another
        process must find the record as soon as the id reaches it. Worker writes fold."""
        if isinstance(item, threading.Event) or item[1].state == SENT:
            return False
        return time.monotonic() - self._last_batch_end < BUSY_WINDOW

    def _write(self, store: RecordStore, client: Any, batch: list[RecordWrite]) -> None:
        if self._sha is None:
            self._sha = client.script_load(WRITE_SCRIPT)
        ttl = str(store.record_ttl)
        # Trim the indexes once per batch, with the last write that adds to one of them.
        trim_at = max((i for i, w in enumerate(batch) if w.state and Rank.of(w.state) >= Rank.RUNNING), default=-1)
        calls = []
        for index, w in enumerate(batch):
            args: list[Any] = [
                ttl,
                w.state or "",
                int(Rank.of(w.state)) if w.state else 0,
                repr(w.at or time.time()),
                w.task_id,
                "1" if w.measure_result else "0",
                FINISHED_INDEX_SIZE if index == trim_at else 0,
                json.dumps(w.fields),
                json.dumps(w.live) if w.live else "{}",
            ]
            calls.append((*store.keys_for_write(w.task_id), *args))
        if len(calls) == 1:  # the idle case: a pipeline's own cost would double it
            client.evalsha(self._sha, 4, *calls[0])
            return
        with client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(self._sha, 4, *call)
            pipe.execute()

    def _log_error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            logger.warning("fileintel: " + message, *args)


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
        folded[write.task_id] = RecordWrite(write.task_id, state, fields, measure, max(current.at, write.at), live)
    return list(folded.values())


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
