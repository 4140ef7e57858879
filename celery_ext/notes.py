"""The notes of a ``TaskStatus``: the details behind its verdict, in sentences.

``classify.build_status`` decides the phase and the outcome; this module only words what
was decided (the verdict's own sentence is ``verdict.sentence``). Kept apart so the
classification reads as decisions and the wording can change without touching them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from celery import states

from celery_ext.progress import PROGRESS_STATE
from celery_ext.settings import FileIntelSettings
from celery_ext.status import Outcome, Phase

if TYPE_CHECKING:
    from celery_ext.classify import Observation

__all__ = ["Facts", "fmt_time", "notes_for"]


@dataclass(frozen=True)
class Facts:
    """What the notes are written from."""

    obs: Observation
    phase: Phase
    state: str | None
    stored: bool
    expired: bool
    completed_at: datetime | None
    expires_at: datetime | None
    expires_setting: int | None
    outcome: Outcome | None
    #: Celery stored RETRY over the task's success (``classify._Stale.WRITTEN_OVER``).
    written_over: bool = False


def notes_for(f: Facts, settings: FileIntelSettings) -> list[str]:
    """The details behind the verdict (the verdict's own sentence is ``verdict.sentence``)."""
    notes: list[str] = []
    obs, record = f.obs, f.obs.record
    setting_text = (
        f"result_expires={f.expires_setting} s" if f.expires_setting else "result_expires is off (results never expire)"
    )
    if not obs.records_enabled:
        notes.append(
            "Task records are off (the result backend is not Redis and no Redis URL was found: "
            "set fileintel_redis_url), so expired results and queued tasks cannot be told "
            "apart from unknown ids."
        )
    if f.phase is Phase.UNKNOWN and obs.unreadable is not None:
        notes.append(
            "Something is stored for this id, but it cannot be read here, so what happened to "
            "the task is unknown."
        )
    elif f.phase is Phase.UNKNOWN:
        notes.append(
            "Nothing is known about this id: no stored result and no task record. It was never "
            "sent, was sent by a producer that did not call celery_ext.install() and no worker "
            "has received it yet, or it finished so long ago that its record expired too "
            f"(records are kept {settings.record_ttl // 3600} h; {setting_text})."
        )
    elif f.phase is Phase.QUEUED:
        where = f" on queue {record.queue!r}" if record and record.queue else ""
        if record and record.received_at:
            notes.append(f"A worker has received it{where} but has not started it yet.")
        else:
            notes.append(f"Sent{where}; no worker has started it yet.")
    elif f.phase is Phase.LOST:
        worker = record.worker if record and record.worker else "its worker"
        silent = obs.worker_silent_s
        seen = (
            f"was last seen {silent:.0f} s ago" if silent is not None and math.isfinite(silent) else "has no liveness beat"
        )
        notes.append(
            f"It was running on {worker}, which {seen} (fileintel_lost_after={settings.lost_after:g} s): "
            "the worker died (killed, out of memory, machine lost) while the task ran. With "
            "acks_late the broker redelivers it and it runs again (RabbitMQ at once, Redis after "
            "its visibility_timeout, 1 h by default); otherwise send it again."
        )
    done = fmt_time(f.completed_at) or "an unknown time"
    if f.written_over:
        notes.append(
            f"It succeeded at {done}, but Celery then stored RETRY over its result: "
            "it was retried at once (countdown=0) and its new run succeeded while the old one "
            "was still storing RETRY. It will not run again; its result is lost. A retry "
            "countdown of a second or more makes this unlikely."
        )
    elif f.outcome is Outcome.EVICTED and record is not None:
        ahead = f" ahead of its expiry at {fmt_time(record.result_expires_at)}" if record.result_expires_at else ""
        notes.append(
            f"It finished at {done}, but its result is gone{ahead} ({setting_text}): it was "
            "deleted (forget(), a manual DEL) or evicted by Redis under memory pressure "
            "(check maxmemory-policy)."
        )
    elif f.expired and record is not None:
        at = fmt_time(record.result_expires_at) or "an unknown time"
        notes.append(f"It finished at {done}; its result expired at {at} ({setting_text}).")
    if f.outcome is Outcome.TOO_LARGE:
        notes.append(
            f"The stored result is {obs.stored_bytes} bytes, above fileintel_max_result_bytes "
            f"({settings.max_result_bytes}), so it is not loaded here: download it instead."
        )
    if f.state in (states.IGNORED, states.REJECTED):
        how = (
            "It raised celery.exceptions.Ignore"
            if f.state == states.IGNORED
            else "It raised celery.exceptions.Reject without requeue: its message was dropped (or dead-lettered)"
        )
        before = " What the task stored before (update_state) is not its result." if obs.stored_bytes is not None else ""
        notes.append(f"{how}, and Celery stores nothing for it at its end.{before}")
    elif f.outcome is Outcome.NO_RESULT:
        if record is not None and record.ignore_result:
            notes.append("This task has ignore_result=True: Celery stores no result for it.")
        else:
            notes.append(
                "Its result cannot be read from here: the result backend does not keep results "
                "for other clients (rpc:// replies go to the client that sent the task)."
            )
    if obs.unreadable is not None:
        size = f" ({obs.stored_bytes} bytes)" if obs.stored_bytes is not None else ""
        notes.append(f"What Celery stored for this task{size} is not shown here: {obs.unreadable}.")
    if f.stored and f.phase.finished and f.expires_at is None and obs.ttl_s is None and obs.meta is not None:
        if f.expires_setting is None:
            notes.append("This result never expires (result_expires is off).")
    if f.state is not None and f.phase is Phase.RUNNING and f.state not in (states.STARTED, PROGRESS_STATE):
        notes.append(f"{f.state!r} is a custom state set by the task; it is still running.")
    return notes


def fmt_time(value: datetime | None) -> str | None:
    """A time in a note as every other sentence writes it (``verdict.when``), so a summary
    never shows one moment in two formats."""
    from celery_ext.verdict import when

    return when(value) if value else None
