"""The tasks running in this process, from ``task_prerun`` to their end, and the record end
a successful one writes together with its result.

The receivers (``receivers.py``) register a ``Run`` as a task starts and take it back as it ends:
its runtime, and its "started" fields, which its end carries too. A ``Run`` is also its own
deferred "started" write (``record_writes.Deferred``): made only for a task still running
after ``STARTED_WAIT``, or once it reports progress; most tasks never have one. A successful
task's end rides along with Celery's own write of its result: ``RecordEnd`` is the
``measure.Rider`` that writes both in one script (``end_script.py``), one command and no
hand-off to the writer thread (``receivers.end_riding_along`` decides when).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import states

from celery_ext.end_script import run_end_script
from celery_ext.liveness import current_incarnation
from celery_ext.measure import RideOutcome, StoredResult
from celery_ext.record_writes import RecordWrite
from celery_ext.records import RecordStore
from celery_ext.task_record import Rank, RecordFields, stored_text
from celery_ext.writer import RecordWriter

__all__ = [
    "STARTED_WAIT", "Run", "RecordEnd", "start", "current", "take", "ended_here", "stored_result_fields",
]

#: A "started" write waits this long for the task's end, and is not made if the end came
#: first: most tasks are short, and one write per task is most of the bootstep's cost. At
#: 50 ms, 2.5 % of no-op tasks on a busy threads pool still had theirs written. The price: a
#: task shows as running in the records 0.2 s after it starts (at once if it reports progress).
STARTED_WAIT = 0.2

#: Guards the claims of every ``Run``: its "started" write and its end decide, each for the
#: other, whether it is made (uncontended, a fraction of a microsecond).
_claims_lock = threading.Lock()


def _redelivered(request: Any) -> bool:
    """The broker delivers the task's message again: a worker took it before and died, or
    the task rejected it with ``requeue=True`` (Redis's transport and AMQP brokers mark both)."""
    delivery_info = getattr(request, "delivery_info", None)
    return bool(delivery_info and delivery_info.get("redelivered"))


@dataclass(eq=False)
class Run:
    """A task running in this process, from task_prerun to its end; also its deferred
    "started" write (``record_writes.Deferred``)."""

    task_id: str
    request: Any  # the task's request (Celery's context for this run): its end reads it here
    writer: RecordWriter  # this process's writer for the task's app (installed, records on)
    thread: int  # threading.get_ident() of the thread that runs it
    started: float  # time.perf_counter() at task_prerun
    fields: RecordFields  # what its "started" write says (see started_fields), and its end too
    due: float  # time.monotonic() from which its "started" write is due (STARTED_WAIT)
    #: Its "started" write was made, or is being made (by the writer or with its progress).
    start_claimed: bool = False
    #: Its end was, or is being, written: a "started" write now would be stale.
    ended: bool = False

    def runtime_s(self) -> float:
        return round(time.perf_counter() - self.started, 6)

    def claim_start(self) -> bool:
        """True once, for whoever makes the "started" write, if the task has not ended."""
        with _claims_lock:
            if self.start_claimed or self.ended:
                return False
            self.start_claimed = True
            return True

    def end(self) -> bool:
        """Mark the task ended: no "started" write from now on. True if its end must take the
        id out of the "active" index, where a running state may have put it: this run's
        "started" write (made, or under way), a RETRY written before this run (RETRY is a
        running state), or the run of a worker that died (a redelivery). Else the id would
        stay in "active" until the TTL trim, and every board refresh would describe it. A
        first run that ended before its "started" write leaves nothing to take out. (The one
        rule for every end this process writes; the write script, which knows no run, reads
        the record's rank instead.)"""
        with _claims_lock:
            self.ended = True
            claimed = self.start_claimed
        return claimed or bool(self.fields.get("retries")) or _redelivered(self.request)

    def started_fields(self) -> RecordFields:
        """What its "started" write says: its fields and the worker incarnation running it,
        which tells readers when that worker died. Its end does not need the incarnation:
        leaving it out saves the end a field and its record's listpack 64 bytes."""
        return {**self.fields, "incarnation": current_incarnation()}

    def settled(self) -> bool:
        """Its "started" write is made, or never will be (``record_writes.Deferred``)."""
        return self.ended or self.start_claimed

    def write_if_needed(self) -> RecordWrite | None:
        """The "started" write, for the writer's thread when it falls due."""
        if not self.claim_start():
            return None
        return RecordWrite(self.task_id, states.STARTED, stored_text(self.started_fields()), at=self.fields["started_at"])


#: task id -> the run, in the process that runs the task.
_runs: dict[str, Run] = {}
_runs_lock = threading.Lock()
#: The id of the task whose end last rode along in this thread: its task_success has no more to write.
_ended_here = threading.local()


def start(task_id: str, run: Run) -> None:
    with _runs_lock:
        _runs[task_id] = run


def current(task_id: str) -> Run | None:
    """The run of ``task_id`` in this process, if it is running here."""
    return _runs.get(task_id)


def take(task_id: str, thread: int) -> Run | None:
    """The run of ``task_id`` in ``thread``, forgotten: the task has ended (or retries, and
    starts anew). Only that thread's: a task retried at once can start again in another
    thread of the process before its retry signal, in the old run's thread, comes here."""
    with _runs_lock:
        run = _runs.get(task_id)
        if run is None or run.thread != thread:
            return None
        return _runs.pop(task_id)


def ended_here(task_id: str) -> bool:
    """True once, in the thread that ran ``task_id``, if its end rode along with its result."""
    if getattr(_ended_here, "task_id", None) != task_id:
        return False
    _ended_here.task_id = None
    return True


def stored_result_fields(stored: StoredResult) -> RecordFields:
    """A measured stored result as record fields: its size and expiry."""
    expires = "never" if stored.expires_at is None else repr(stored.expires_at)
    fields: RecordFields = {"result_bytes": stored.nbytes, "result_expires_ts": expires}
    if stored.ttl_s is not None:
        # The TTL this result got, which overrides the app's result_expires in the record:
        # a task with its own result backend keeps its results for that backend's time.
        fields["result_expires_s"] = stored.ttl_s
    return fields


#: ``json.dumps`` with an option builds an encoder per call: on every successful task's path,
#: one built once costs 1.7 us less per task.
_FIELDS_ENCODER = json.JSONEncoder(ensure_ascii=False)


class RecordEnd:
    """A successful task's record end, riding along with Celery's write of its result
    (``measure.Rider``): the "started" fields and the end in one HSET, the "finished" index,
    the record's TTL, and out of "active" where a running state may have put the id
    (``Run.end``); all in one script with the result (``end_script.py``). Everything is
    computed here, where an error only means no ride: running the script cannot fail on our data."""

    def __init__(self, task_id: str, run: Run, store: RecordStore, stored: StoredResult) -> None:
        self.task_id, self.run, self.store, self.stored = task_id, run, store, stored
        completed_at = time.time()
        fields: RecordFields = {
            **run.fields,
            "completed_at": completed_at,
            "runtime_s": run.runtime_s(),
            "placeholders": getattr(run.request, "fileintel_placeholders", None),
            "result_expires_s": store.result_expires_s,
            **stored_result_fields(stored),
        }
        text = {**stored_text(fields), "state": states.SUCCESS, "rank": str(int(Rank.TERMINAL))}
        # Raises here (no ride) on text that is not UTF-8; the script reads UTF-8 as it is.
        self.fields_json = _FIELDS_ENCODER.encode(text).encode()
        self.keys = (store.record_key(task_id), store.finished_key, store.active_key)  # validates the id
        self.completed_at = completed_at
        self.leaves_active = run.end()

    def ride(self, client: Any, key: Any, value: Any, expires: int | None, keep_success: bool) -> RideOutcome | None:
        if not isinstance(expires, (int, type(None))):
            return None  # Celery writes it; the record follows the usual way
        args = (
            value, expires or 0, self.fields_json, self.store.record_ttl, self.task_id,
            repr(self.completed_at), "1" if self.leaves_active else "0", "1" if keep_success else "0",
        )
        return run_end_script(client, (key, *self.keys), args)

    def landed(self) -> None:
        with _runs_lock:
            if _runs.get(self.task_id) is self.run:
                del _runs[self.task_id]
        _ended_here.task_id = self.task_id
        self.run.writer.note_end_written(self.task_id)
