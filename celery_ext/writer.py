"""The record writer: a background thread per process that batches record writes.

Signal receivers only put a small tuple on a queue (microseconds), so a record write never
slows a task down and never does I/O on the worker's event loop. The thread drains the
queue into one pipeline per batch, with a short socket timeout. When Redis fails, it logs
once per interval and drops that batch: a record is a nicety, the task is what matters.
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

from celery_ext.records import FINISHED_INDEX_SIZE, WRITE_SCRIPT, Rank, RecordStore, store_for

__all__ = ["RecordWrite", "RecordWriter", "writer_for", "flush_all"]

logger = logging.getLogger(__name__)

MAX_BATCH = 500
QUEUE_SIZE = 20_000
ERROR_LOG_INTERVAL = 60.0
#: After the first write of a batch arrives, wait this long for more: a short task's
#: "started" and "succeeded" then travel as one write (records lag by at most this much).
LINGER = 0.05
#: How long a process that exits waits for its last record writes.
EXIT_FLUSH_TIMEOUT = 1.0


@dataclass(frozen=True)
class RecordWrite:
    task_id: str
    state: str | None  # None: only fill in fields, no transition
    fields: dict[str, str]
    measure_result: bool = False  # read the stored result's size and TTL (terminal writes)
    at: float = 0.0  # epoch seconds of the event


class RecordWriter:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.pid = os.getpid()
        self.queue: queue.Queue[RecordWrite | threading.Event] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self._last_error_log = 0.0
        self._sha: str | None = None
        self._thread = threading.Thread(target=self._run, name="fileintel-records", daemon=True)
        self._thread.start()

    def put(self, write: RecordWrite) -> None:
        try:
            self.queue.put_nowait(write)
        except queue.Full:
            self.dropped += 1
            self._log_error("the record queue is full (%d writes waiting); dropping writes", QUEUE_SIZE)

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
            if not isinstance(item, threading.Event):
                time.sleep(LINGER)
            batch: list[RecordWrite] = []
            markers: list[threading.Event] = []
            while True:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
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
            for marker in markers:
                marker.set()

    def _write(self, store: RecordStore, client: Any, batch: list[RecordWrite]) -> None:
        if self._sha is None:
            self._sha = client.script_load(WRITE_SCRIPT)
        ttl = str(store.record_ttl)
        with client.pipeline(transaction=False) as pipe:
            for index, w in enumerate(batch):
                args: list[Any] = [
                    ttl,
                    w.state or "",
                    int(Rank.of(w.state)) if w.state else 0,
                    repr(w.at or time.time()),
                    w.task_id,
                    "1" if w.measure_result else "0",
                    # Trim the indexes once per batch, with its last write.
                    FINISHED_INDEX_SIZE if index == len(batch) - 1 else 0,
                    json.dumps(w.fields),
                ]
                pipe.evalsha(self._sha, 4, *store.keys_for_write(w.task_id), *args)
            pipe.execute()

    def _log_error(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            logger.warning("fileintel: " + message, *args)


def coalesce(batch: list[RecordWrite]) -> list[RecordWrite]:
    """Fold the writes for the same task into one, with the record script's own rules:
    a write that moves the state up (and not out of a terminal state) sets its fields,
    any other write only fills fields still missing."""
    folded: dict[str, RecordWrite] = {}
    for write in batch:
        current = folded.get(write.task_id)
        if current is None:
            folded[write.task_id] = write
            continue
        current_rank = Rank.of(current.state) if current.state else -1
        new_rank = Rank.of(write.state) if write.state else -1
        state: str | None
        if write.state and current_rank < Rank.TERMINAL and new_rank >= current_rank:
            fields = {**current.fields, **write.fields}
            state = write.state
        else:
            fields = {**write.fields, **current.fields}
            state = current.state
        folded[write.task_id] = RecordWrite(
            write.task_id, state, fields, current.measure_result or write.measure_result, max(current.at, write.at)
        )
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


def flush_all(timeout: float = 5.0) -> None:
    """Flush every writer of this process (worker shutdown, tests)."""
    for writer in list(_writers.values()):
        if writer.pid == os.getpid():
            writer.flush(timeout)
