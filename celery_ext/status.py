"""TaskStatus: the one task-status document (schema ``fileintel.task-status/1``).

The CLI's ``--json`` and the Flower API print ``TaskStatus.to_dict()`` verbatim. Field names
live here and nowhere else. ``classify()`` turns a raw Celery state into a phase; the
``Outcome`` says what a reader asking for the result gets. ``classify.py`` builds a
TaskStatus from the facts ``lookup.py`` gathers; every edge (CLI exit codes, HTTP statuses,
sentences, metrics) only maps ``TaskStatus.outcome`` through a table of its own.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from celery import states

__all__ = [
    "SCHEMA",
    "Phase",
    "Outcome",
    "Placeholder",
    "ResultInfo",
    "TaskError",
    "Progress",
    "TaskStatus",
    "classify",
]

SCHEMA = "fileintel.task-status/1"


class Phase(str, enum.Enum):
    UNKNOWN = "unknown"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVOKED = "revoked"
    #: It was running on a worker that is gone (no liveness beat for ``fileintel_lost_after``).
    LOST = "lost"

    @property
    def finished(self) -> bool:
        """Celery's "ready": it ended, and the backend says how."""
        return self in _FINISHED_PHASES

    @property
    def settled(self) -> bool:
        """Nothing more will happen without outside help: finished, or lost with its worker
        (a broker that redelivers it, ``acks_late``, makes it queued or running again)."""
        return self.finished or self is Phase.LOST


#: A set built once: readers ask ``finished`` several times per task, and building the tuple
#: of members on each call cost more than the rest of the question.
_FINISHED_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.REVOKED})


class Outcome(str, enum.Enum):
    """What a reader asking for the task's result gets: the one verdict every edge maps.

    ``ok`` means the result is in ``TaskStatus.result``; every other value says why it is
    null (and is also ``result_info.reason``).
    """

    OK = "ok"
    NOT_READY = "not_ready"  # queued, running or retrying
    UNKNOWN = "unknown"  # no stored result and no task record
    FAILED = "failed"
    REVOKED = "revoked"
    LOST = "lost"  # its worker died while it ran
    EXPIRED = "expired"  # succeeded; the result outlived result_expires
    EVICTED = "evicted"  # succeeded; the result is gone ahead of its expiry (DEL, maxmemory, a late RETRY)
    NO_RESULT = "no_result"  # succeeded; nothing is stored (ignore_result, rpc://)
    NOT_READABLE = "not_readable"  # stored, but this reader cannot decode it
    TOO_LARGE = "too_large"  # stored, above fileintel_max_result_bytes: download it


@dataclass(frozen=True)
class Placeholder:
    """One part of a result that JSON cannot hold, replaced by a marker string."""

    path: str  # JSONPath-like: "$", "$.storage", "$.items[3]"
    type: str  # the Python type name, e.g. "set", "bytes", "decimal.Decimal"
    repr: str  # a short repr, cut to 200 characters


@dataclass(frozen=True)
class ResultInfo:
    bytes: int | None = None  # size of the stored payload; None when nothing is stored
    inline: bool = False  # True when TaskStatus.result holds the result
    placeholders: tuple[Placeholder, ...] = ()
    reason: Outcome | None = None  # why result is null (the task's outcome); None when inline


@dataclass(frozen=True)
class TaskError:
    type: str
    module: str | None
    message: str
    traceback: str | None


@dataclass(frozen=True)
class Progress:
    current: float | None
    total: float | None
    percent: float | None
    message: str | None
    updated_at: str | None  # ISO 8601 as written by the worker, or None (never "now")
    issues: tuple[str, ...] = ()  # every correction normalisation made


# Terminal Celery states and the phase each one means.
_READY_PHASES = {
    states.SUCCESS: Phase.SUCCEEDED,
    states.FAILURE: Phase.FAILED,
    states.REVOKED: Phase.REVOKED,
    # Celery also has REJECTED and IGNORED; both are ready and not successful.
    states.REJECTED: Phase.FAILED,
    states.IGNORED: Phase.SUCCEEDED,
}
_WAITING_STATES = {states.PENDING, states.RECEIVED, "SENT"}


def classify(state: str | None) -> Phase:
    """The phase a raw Celery state means. ``None`` (nothing known) is ``unknown``.

    Custom states (``update_state(state="EXTRACTING")``) can only be written by a running
    task, so they are ``running``.
    """
    if state is None:
        return Phase.UNKNOWN
    if state in _READY_PHASES:
        return _READY_PHASES[state]
    if state == states.RETRY:
        return Phase.RETRYING
    if state in _WAITING_STATES:
        return Phase.QUEUED
    return Phase.RUNNING


@dataclass(frozen=True)
class TaskStatus:
    """Everything known about one task, validated. Build it with ``celery_ext.describe``."""

    task_id: str
    phase: Phase
    state: str | None
    name: str | None = None
    worker: str | None = None
    retries: int | None = None
    runtime_s: float | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    #: Lost tasks: when the worker that ran it last gave a sign of life.
    worker_last_seen_at: datetime | None = None
    result_available: bool = False
    expired: bool = False
    result_expires_at: datetime | None = None
    expires_in_s: float | None = None
    result: Any = None
    result_info: ResultInfo = field(default_factory=ResultInfo)
    error: TaskError | None = None
    progress: Progress | None = None
    notes: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return self.phase.finished

    @property
    def successful(self) -> bool:
        return self.phase is Phase.SUCCEEDED

    @property
    def outcome(self) -> Outcome:
        """The verdict: ``ok``, or why there is no result (decided once, by ``classify.py``)."""
        return self.result_info.reason or Outcome.OK

    def to_dict(self) -> dict[str, Any]:
        """The ``fileintel.task-status/1`` document: every key present, null where unknown."""
        return {
            "schema": SCHEMA,
            "task_id": self.task_id,
            "phase": self.phase.value,
            "outcome": self.outcome.value,
            "state": self.state,
            "ready": self.ready,
            "successful": self.successful,
            "name": self.name,
            "worker": self.worker,
            "retries": self.retries,
            "runtime_s": self.runtime_s,
            "queued_at": _iso(self.queued_at),
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "worker_last_seen_at": _iso(self.worker_last_seen_at),
            "result_available": self.result_available,
            "expired": self.expired,
            "result_expires_at": _iso(self.result_expires_at),
            "expires_in_s": self.expires_in_s,
            "result": self.result,
            "result_info": {
                "bytes": self.result_info.bytes,
                "inline": self.result_info.inline,
                "placeholders": [asdict(p) for p in self.result_info.placeholders],
                "reason": self.result_info.reason.value if self.result_info.reason else None,
            },
            "error": asdict(self.error) if self.error else None,
            "progress": (
                {**asdict(self.progress), "issues": list(self.progress.issues)}
                if self.progress
                else None
            ),
            "notes": list(self.notes),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
