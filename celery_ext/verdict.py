"""The sentence every reader prints for a task's outcome: one per ``Outcome``, no edge of its own.

The CLI (stderr), the Flower API (error ``message``), the pages and the download errors all
say what happened with ``sentence(status)``. It is plain text: callers escape it for their
medium. The details behind it are in ``TaskStatus.notes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from celery import states

from celery_ext.status import Outcome, TaskStatus

__all__ = ["sentence", "SENTENCES", "when"]


def when(value: datetime | None) -> str:
    """A time as readers print it: ``2026-12-03 10:02:41 UTC``."""
    if value is None:
        return "an unknown time"
    moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _finished(s: TaskStatus) -> str:
    return f"succeeded at {when(s.completed_at)}" if s.completed_at else "succeeded"


def _ok(s: TaskStatus) -> str:
    return f"task {s.task_id} {_finished(s)}; its result is stored and shown."


def _not_ready(s: TaskStatus) -> str:
    return f"task {s.task_id} is {s.phase.value}: its result is not ready yet."


def _unknown(s: TaskStatus) -> str:
    return (
        f"task {s.task_id} is unknown: there is no stored result and no task record for it "
        "(it was never sent, or it finished so long ago that its record expired too). Check the id."
    )


def _error_text(s: TaskStatus) -> str:
    if s.error is None:
        return ""
    return f" ({s.error.type}: {s.error.message})" if s.error.message else f" ({s.error.type})"


def _failed(s: TaskStatus) -> str:
    at = f" at {when(s.completed_at)}" if s.completed_at else ""
    return f"task {s.task_id} failed{at}{_error_text(s)}: it has no result, only an error."


def _revoked(s: TaskStatus) -> str:
    at = f" at {when(s.completed_at)}" if s.completed_at else ""
    why = f" ({s.error.message})" if s.error and s.error.message else ""
    return f"task {s.task_id} was revoked{at}{why}: it has no result."


def _lost(s: TaskStatus) -> str:
    worker = s.worker or "its worker"
    seen = f", last seen at {when(s.worker_last_seen_at)}" if s.worker_last_seen_at else ""
    return (
        f"task {s.task_id} was lost: {worker}{seen} died while running it, so it will not "
        "finish. Send it again (with acks_late the broker redelivers it: RabbitMQ at once, Redis "
        "after its visibility_timeout)."
    )


def _expired(s: TaskStatus) -> str:
    return (
        f"task {s.task_id} {_finished(s)}, but its result expired at {when(s.result_expires_at)} "
        "(result_expires). Run it again, or raise result_expires if results must live longer."
    )


def _evicted(s: TaskStatus) -> str:
    ahead = f" before its expiry at {when(s.result_expires_at)}" if s.result_expires_at else ""
    return (
        f"task {s.task_id} {_finished(s)}, but its result is gone{ahead}: it was deleted "
        "(forget(), a manual DEL), written over, or evicted by Redis under memory pressure "
        "(check maxmemory-policy); the notes say which when it is known."
    )


def _no_result(s: TaskStatus) -> str:
    if s.state == states.IGNORED:
        at = f" at {when(s.completed_at)}" if s.completed_at else ""
        return f"task {s.task_id} ended{at} with Ignore: Celery stores no result for it."
    return (
        f"task {s.task_id} {_finished(s)}, but it stores no result (ignore_result=True, or a "
        "result backend such as rpc:// that keeps results only for the client that sent it)."
    )


def _not_readable(s: TaskStatus) -> str:
    size = f" ({s.result_info.bytes} bytes)" if s.result_info.bytes is not None else ""
    return (
        f"task {s.task_id} has stored data{size} that cannot be decoded here (stored as pickle, "
        "by another result_serializer, or corrupt); the notes say which."
    )


def _too_large(s: TaskStatus) -> str:
    return (
        f"the result of task {s.task_id} is {s.result_info.bytes} bytes stored, above "
        "fileintel_max_result_bytes: it is not loaded here; download it instead."
    )


#: One sentence per outcome (a test walks every ``Outcome`` through this table).
SENTENCES: Mapping[Outcome, Callable[[TaskStatus], str]] = {
    Outcome.OK: _ok,
    Outcome.NOT_READY: _not_ready,
    Outcome.UNKNOWN: _unknown,
    Outcome.FAILED: _failed,
    Outcome.REVOKED: _revoked,
    Outcome.LOST: _lost,
    Outcome.EXPIRED: _expired,
    Outcome.EVICTED: _evicted,
    Outcome.NO_RESULT: _no_result,
    Outcome.NOT_READABLE: _not_readable,
    Outcome.TOO_LARGE: _too_large,
}


def sentence(status: TaskStatus) -> str:
    """What happened to this task and its result, in one sentence (plain text)."""
    return SENTENCES[status.outcome](status)
