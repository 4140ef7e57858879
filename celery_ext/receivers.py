"""The signal receivers that write task records, for the apps ``bootstep.install`` set up.

Receivers are connected once, when this module is imported, with ``weak=False`` and a
``dispatch_uid``. ``bootstep.install`` imports it and appends it to the app's
``conf.imports``, so pool children started with ``spawn`` (which do not inherit the parent's
receivers) import it and connect them too. A receiver acts only for an installed app
(``installed.is_installed``).

Each receiver only queues a small write for the background writer (see writer.py): no I/O on
the task's path or on the worker's event loop, and it never raises into a task. One write
goes another way: a successful task's end rides with Celery's own write of its result
(``running.RecordEnd``, ``measure.py``, ``end_script.py``), in the task's thread, one script
and no round trip of its own; ``end_riding_along`` decides when. That is most tasks' only
record write. The tasks running in this process are kept in ``running.py``. A task that
raises ``Ignore`` or ``Reject`` sends no signal: a hook on Celery's tracer ends it
(``trace_hook.py``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from celery import Celery, signals, states
from celery.app import app_or_default
from celery.exceptions import Reject

from celery_ext import running
from celery_ext.end_script import MAX_RESULT_BYTES
from celery_ext.installed import installed_apps, is_installed
from celery_ext.measure import StoredResult, take_stored
from celery_ext.record_writes import Deferred, RecordWrite
from celery_ext.records import store_for
from celery_ext.running import STARTED_WAIT, RecordEnd, Run, stored_result_fields
from celery_ext.task_record import RecordFields, stored_text
from celery_ext.trace_hook import connect_ignore_or_reject
from celery_ext.writer import RecordWriter, flush_all, writer_for

__all__ = ["end_riding_along", "keep_last_progress", "bounded_traceback", "Receipt"]

logger = logging.getLogger(__name__)

ERROR_MESSAGE_MAX = 500
#: A "received" write waits this long; it is dropped if a pool process has taken the task by
#: then (its "started" write says more). So ``received_at`` is known for tasks that waited in
#: the worker's prefetch buffer, the ones where it tells something.
RECEIVED_WAIT = 1.0


def _now() -> float:
    return time.time()


def _queue_write(
    app: Celery | None,
    task_id: str | None,
    state: str | None,
    fields: RecordFields,
    *,
    measure_result: bool = False,
    live: dict[str, str] | None = None,
    direct: bool = False,
    leaves_active: bool = False,
) -> None:
    """Hand a record write to the writer; swallow everything (a record must never break a task)."""
    if task_id is None:
        return
    try:
        writer = _records_writer(app)
        if writer is not None:
            writer.put(RecordWrite(task_id, state, stored_text(fields), measure_result, _now(), live, direct, leaves_active))
    except Exception:  # pragma: no cover - defensive
        logger.exception("fileintel: could not queue a record write for task %s", task_id)


def _defer(app: Celery | None, item: Deferred) -> None:
    """Hand a deferred write to the writer (see ``record_writes.Deferred``). Runs on every
    task's path: keep it lean; swallow everything, like ``_queue_write``. (A task's "started"
    write is its ``Run``: ``_on_prerun`` hands it over itself.)"""
    try:
        writer = _records_writer(app)
        if writer is not None:
            writer.defer(item)
    except Exception:  # pragma: no cover - defensive
        logger.exception("fileintel: could not defer a record write")


def _records_writer(app: Celery | None) -> RecordWriter | None:
    """This process's record writer for ``app``, or None when ``app`` keeps no records (not
    installed, or records turned off). May raise: each caller logs in its own words."""
    if app is None or not is_installed(app) or not store_for(app).enabled:
        return None
    return writer_for(app)


def _result_expires_s(app: Celery | None) -> int | None:
    """``result_expires`` in seconds (read once per app: a settings lookup costs more than
    the rest of a receiver)."""
    return store_for(app).result_expires_s if app is not None else None


def _task_app(task: Any) -> Celery | None:
    app = getattr(task, "_app", None) or getattr(task, "app", None)
    return app if isinstance(app, Celery) else None


def _ended_run(task_id: str | None) -> tuple[Run | None, bool]:
    """The run of ``task_id`` in this thread, which has ended (or retries, and starts anew):
    forgotten, and its "started" write, if not made yet, never will be (its end says more).
    With it, whether its end takes the id out of "active" (``Run.end``)."""
    run = running.take(task_id, threading.get_ident()) if task_id else None
    if run is None:
        return None, False
    return run, run.end()


def _end_fields(run: Run | None, task: Any, app: Celery | None) -> RecordFields:
    """What every end records: the run's "started" fields (a task that ends before its
    "started" write keeps them), when it ended and after how long, and how long Celery keeps
    its result."""
    return {
        **(run.fields if run else {}),
        "completed_at": _now(),
        "runtime_s": run.runtime_s() if run else None,
        "name": getattr(task, "name", None),
        "result_expires_s": _result_expires_s(app),
    }


def _stored_result_fields(task_id: str, state: str, ran_here: bool) -> tuple[RecordFields, bool]:
    """The stored result's size and expiry, as measured when Celery stored it in this thread
    (``measure.py``), and whether the terminal write may go straight to Redis: only when the
    task ran in this process (so this process's writer knows what it wrote before) and the
    result is measured. Otherwise the write script measures and decides."""
    stored = take_stored(task_id, state)
    if stored is None:
        return {}, False
    return stored_result_fields(stored), ran_here


def keep_last_progress(task: Any, meta: dict[str, Any]) -> None:
    """``report_progress``: the record keeps the last progress, which the stored meta loses
    when the task is revoked or its worker dies."""
    import json

    task_id = getattr(getattr(task, "request", None), "id", None)
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError):
        return
    run = running.current(task_id) if task_id else None
    if run is not None and run.claim_start():
        # Progress makes the "started" write due at once: a task that reports it is worth showing.
        _queue_write(_task_app(task), task_id, states.STARTED, run.started_fields(), live={"progress": text})
    else:
        _queue_write(_task_app(task), task_id, None, {}, live={"progress": text})


def bounded_traceback(text: str | None, limit: int) -> str | None:
    """The head and the tail of a traceback, at most ``limit`` characters and a marker:
    where it started and where it failed are what a reader needs."""
    if not text:
        return None
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n... [{cut} characters cut] ...\n{text[-half:]}"


def _error_fields(exc: BaseException | None) -> RecordFields:
    if exc is None:
        return {}
    cls = type(exc)
    return {
        "error_type": getattr(cls, "__qualname__", cls.__name__),
        "error_module": cls.__module__,
        "error_message": _safe_str(exc)[:ERROR_MESSAGE_MAX],
    }


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


@signals.before_task_publish.connect(weak=False, dispatch_uid="fileintel.before_task_publish")
def _on_sent(sender: Any = None, headers: Any = None, routing_key: Any = None, **_: Any) -> None:
    """Producer side: remember when a task was sent, so "queued" differs from "unknown".

    Before, not after, the publish: a worker can receive the task before after_task_publish
    runs, and queued_at must not come after received_at. (If the publish then fails,
    apply_async raises and nobody holds the id.)"""
    if not isinstance(headers, dict) or "id" not in headers:
        return  # protocol 1 or a foreign message: nothing we can read cheaply
    app = _sending_app()
    if app is None or not app.conf.get("fileintel_track_sent", True):
        return
    fields: RecordFields = {"queued_at": _now(), "name": headers.get("task") or sender, "queue": routing_key}
    _queue_write(app, headers["id"], "SENT", fields)


def _sending_app() -> Celery | None:
    """The app a task was just sent with. The signal does not say, so: the current app
    (what Celery itself defaults to) when installed, else the only installed app."""
    current = app_or_default()
    if is_installed(current):
        return current
    installed = installed_apps()
    return installed[0] if len(installed) == 1 else None


class Receipt:
    """A task a worker received (prefetched): its "received" write, deferred by RECEIVED_WAIT
    and made only if no pool process has started the task by then (``record_writes.Deferred``).

    It holds the request weakly: a task done by then needs no write, and a thousand requests
    kept alive a second longer each cost the worker's main process more in garbage collection
    than the rest of this write (``benchmarks/bootstep_overhead.py``, prefork pool)."""

    __slots__ = ("request", "received_at", "due")

    def __init__(self, request: Any) -> None:
        try:
            self.request: Callable[[], Any] = weakref.ref(request)
        except TypeError:  # a request object of another kind: hold it
            self.request = lambda: request
        self.received_at = _now()
        self.due = time.monotonic() + RECEIVED_WAIT

    def settled(self) -> bool:
        """A pool process took the task (or it is done): no "received" write is needed."""
        request = self.request()
        return request is None or getattr(request, "time_start", None) is not None

    def write_if_needed(self) -> RecordWrite | None:
        if self.settled():
            return None
        request = self.request()
        task_id = getattr(request, "id", None)
        if task_id is None:
            return None
        fields: RecordFields = {
            "received_at": self.received_at,
            "name": getattr(request, "name", None),
            "worker": getattr(request, "hostname", None),
        }
        return RecordWrite(task_id, states.RECEIVED, stored_text(fields), at=self.received_at)


@signals.task_received.connect(weak=False, dispatch_uid="fileintel.task_received")
def _on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Worker main process: a worker holds the task (prefetched), it has not started."""
    if request is not None:
        app = getattr(getattr(request, "task", None), "_app", None) or getattr(sender, "app", None)
        _defer(app, Receipt(request))


@signals.task_prerun.connect(weak=False, dispatch_uid="fileintel.task_prerun")
def _on_prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    try:
        writer = _records_writer(_task_app(task))
        if writer is None:
            return
        request = task.request
        fields: RecordFields = {
            "started_at": _now(),
            "name": task.name,
            "worker": getattr(request, "hostname", None),
            "retries": getattr(request, "retries", 0),
        }
        run = Run(task_id, request, writer, threading.get_ident(), time.perf_counter(), fields, time.monotonic() + STARTED_WAIT)
        running.start(task_id, run)
        writer.defer(run)  # its "started" write, unless the task ends first
    except Exception:  # pragma: no cover - defensive: a record never breaks a task
        logger.exception("fileintel: could not note the start of task %s", task_id)


def end_riding_along(backend: Any, key: bytes, stored: StoredResult) -> RecordEnd | None:
    """The record end to add to Celery's write of ``key``: for a task running in this thread
    (Celery storing its return value), when its records live beside its results (same Redis,
    same backend). A big result is left to Celery (see ``MAX_RESULT_BYTES``): its end follows
    through the writer."""
    if stored.nbytes > MAX_RESULT_BYTES:
        return None
    prefix = getattr(backend, "task_keyprefix", None)
    if not prefix or not key.startswith(prefix):
        return None
    task_id = key[len(prefix):].decode()
    run = running.current(task_id)  # only for an installed app with records on (_on_prerun)
    if run is None or run.thread != threading.get_ident():
        return None
    app = run.writer.app
    store = store_for(app)
    if backend is not app.backend or not store.records_beside_results:
        return None
    return RecordEnd(task_id, run, store, stored)


@signals.task_success.connect(weak=False, dispatch_uid="fileintel.task_success")
def _on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    task = sender
    if task is None:
        return
    request = task.request
    task_id = getattr(request, "id", None)
    if task_id is None:
        return
    if running.ended_here(task_id):  # its end rode along with its result
        return
    app = _task_app(task)
    ignored = bool(task.ignore_result or getattr(request, "ignore_result", False))
    run, leaves_active = _ended_run(task_id)
    stored, direct = _stored_result_fields(task_id, states.SUCCESS, ran_here=run is not None)
    fields: RecordFields = {
        **_end_fields(run, task, app),
        "worker": getattr(request, "hostname", None),
        "retries": getattr(request, "retries", 0),
        "ignore_result": ignored or None,
        "placeholders": getattr(request, "fileintel_placeholders", None),
        **stored,
    }
    _queue_write(
        app, task_id, states.SUCCESS, fields,
        measure_result=not ignored and not stored, direct=direct, leaves_active=leaves_active,
    )


@signals.task_failure.connect(weak=False, dispatch_uid="fileintel.task_failure")
def _on_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """Runs in the pool child, or in the main process for WorkerLostError / hard time limits
    (and then possibly twice: the record script keeps the first)."""
    task = sender
    app = _task_app(task)
    limit = store_for(app).settings.traceback_max if app else 0
    run, leaves_active = _ended_run(task_id)
    stored, direct = _stored_result_fields(task_id, states.FAILURE, ran_here=run is not None) if task_id else ({}, False)
    fields: RecordFields = {
        **_end_fields(run, task, app),
        "error_traceback": bounded_traceback(getattr(einfo, "traceback", None), limit),
        **_error_fields(exception),
        **stored,
    }
    _queue_write(
        app, task_id, states.FAILURE, fields, measure_result=not stored, direct=direct, leaves_active=leaves_active,
    )


@signals.task_retry.connect(weak=False, dispatch_uid="fileintel.task_retry")
def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    task = sender
    run = _ended_run(getattr(request, "id", None))[0]  # the next run starts anew
    fields: RecordFields = {**(run.fields if run else {}), "retries": (getattr(request, "retries", 0) or 0) + 1}
    if isinstance(reason, BaseException):
        fields.update(_error_fields(reason))
    elif reason is not None:
        fields["error_message"] = _safe_str(reason)[:ERROR_MESSAGE_MAX]
    _queue_write(_task_app(task), getattr(request, "id", None), states.RETRY, fields)


def _on_ignore_or_reject(task: Any, request: Any, exc: BaseException | None) -> None:
    """A task raised ``Ignore`` or ``Reject``: no signal tells, and Celery stores nothing. Its
    run ends here (else it would be kept, and its "started" write shown as running for good).

    ``Ignore``: the task ended and wants no result stored (IGNORED). ``Reject``: the message is
    dropped (or dead-lettered): the task failed (REJECTED); with ``requeue=True`` it goes back
    to the queue and runs again (RETRY)."""
    task_id = getattr(request, "id", None)
    run, leaves_active = _ended_run(task_id)
    app = _task_app(task)
    worker = getattr(request, "hostname", None)
    if isinstance(exc, Reject) and exc.requeue:
        fields: RecordFields = {
            **(run.fields if run else {}),
            "name": getattr(task, "name", None),
            "worker": worker,
            "error_message": "rejected and requeued: it runs again",
        }
        _queue_write(app, task_id, states.RETRY, fields)
        return
    fields = {
        **_end_fields(run, task, app),
        "worker": worker,
        "result_bytes": 0,  # Celery stores nothing at this end: what is stored is not a result
    }
    if isinstance(exc, Reject):
        fields.update(_error_fields(exc))
        fields["error_message"] = _safe_str(exc.reason or "rejected")[:ERROR_MESSAGE_MAX]
    state = states.REJECTED if isinstance(exc, Reject) else states.IGNORED
    _queue_write(app, task_id, state, fields, direct=run is not None, leaves_active=leaves_active)


connect_ignore_or_reject(_on_ignore_or_reject)


@signals.task_revoked.connect(weak=False, dispatch_uid="fileintel.task_revoked")
def _on_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False, **_: Any
) -> None:
    """Worker main process (event loop): only queues the write."""
    task = sender
    task_id = getattr(request, "id", None)
    reason = "expired before it ran" if expired else ("terminated" if terminated else "revoked")
    app = _task_app(task)
    fields: RecordFields = {
        "completed_at": _now(),
        "name": getattr(task, "name", None),
        "worker": getattr(request, "hostname", None),
        "error_type": "TaskRevokedError",
        "error_module": "celery.exceptions",
        "error_message": reason,
        "result_expires_s": _result_expires_s(app),
    }
    _queue_write(app, task_id, states.REVOKED, fields, measure_result=True)


@signals.worker_process_shutdown.connect(weak=False, dispatch_uid="fileintel.process_shutdown")
def _on_process_shutdown(**_: Any) -> None:
    """Pool child exiting: write what is still queued."""
    flush_all(timeout=2.0)
