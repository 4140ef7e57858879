"""``build_status``: facts about one task in, a ``TaskStatus`` out. Pure: no app, no Redis.

``lookup.py`` gathers an ``Observation`` (what the backend and our record said, at one
moment); everything a reader is told follows from it here, and only here: the phase, the
``Outcome`` (the verdict every edge maps), the times, the result or the reason there is
none and the error; the notes that explain them are written in ``notes.py``. Unit tests
build Observations by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from celery import states

from celery_ext.notes import Facts, notes_for
from celery_ext.progress import PROGRESS_STATE, normalize_progress
from celery_ext.results import find_placeholders, make_json_safe
from celery_ext.settings import FileIntelSettings
from celery_ext.status import (
    Outcome,
    Phase,
    Placeholder,
    Progress,
    ResultInfo,
    TaskError,
    TaskStatus,
    classify,
)
from celery_ext.task_record import TaskRecord

__all__ = ["Observation", "build_status"]

_PROGRESS_KEYS = ("current", "percent", "percentage", "total", "done")


@dataclass(frozen=True)
class Observation:
    """The raw facts about one task at one moment (what ``build_status`` classifies)."""

    task_id: str
    meta: Mapping[str, Any] | None  # decoded result meta, exceptions left as dicts
    stored_bytes: int | None  # size of the stored payload; None: nothing stored / unknown
    ttl_s: float | None  # seconds until the stored result expires; None: never / unknown
    head_state: str | None  # state read from the first bytes of a payload too large to load
    record: TaskRecord | None
    records_enabled: bool
    now: datetime
    #: The app's ``result_expires`` in seconds; None: results never expire.
    result_expires_s: int | None = None
    #: Why a stored payload could not be decoded here (None: it could, or nothing is stored).
    unreadable: str | None = None
    #: False when the result backend keeps no results for other clients (``rpc://``).
    backend_keeps_results: bool = True
    #: Seconds since the last liveness beat of the worker incarnation the record names, on
    #: Redis's clock; ``math.inf``: that worker never beat (or its beat key is gone); None:
    #: not checked (the task is not running, or the record names no incarnation).
    worker_silent_s: float | None = None


def build_status(obs: Observation, settings: FileIntelSettings) -> TaskStatus:
    """Classify one observation into a TaskStatus."""
    meta, record = obs.meta, obs.record
    meta_state = meta.get("status") if meta else obs.head_state
    stored = obs.stored_bytes is not None or meta is not None or obs.unreadable is not None
    stale = _why_stored_is_not_its_result(meta_state, record, obs.now) if stored else None
    if stale is not None:
        meta, meta_state, stored = None, None, False
    expires_setting = obs.result_expires_s
    if record is not None and record.result_expires_s is not None:
        expires_setting = record.result_expires_s or None

    state, phase = _state_and_phase(meta_state, stored, record)
    worker_seen_at: datetime | None = None
    if _worker_lost(obs, phase, settings):
        phase = Phase.LOST
        if obs.worker_silent_s is not None and math.isfinite(obs.worker_silent_s):
            worker_seen_at = obs.now - timedelta(seconds=obs.worker_silent_s)
    # Expired: it finished and something was stored (the record measured it), but it is gone.
    expired = (
        phase.finished
        and not stored
        and record is not None
        and not record.ignore_result
        and record.result_bytes != 0
        and obs.backend_keeps_results
    )

    # Times: the backend's date_done first, then the record; never "now".
    completed_at = _parse_time(meta.get("date_done")) if meta else None
    if completed_at is None and record is not None:
        completed_at = record.completed_at
    result_expires_at, expires_in_s = _expiry(obs, phase, stored)

    outcome = _outcome(obs, phase, stored, expired)
    result: Any = None
    placeholders: tuple[Placeholder, ...] = ()
    if outcome is None and meta is not None:
        safe = make_json_safe(meta.get("result"))
        result = safe.value
        # Placeholders FileIntelTask put in before storing: the record has their reprs; the
        # record may lag the result by a few milliseconds, so fall back to the strings themselves.
        placeholders = (_stored_placeholders(record) or find_placeholders(safe.value)) + safe.placeholders

    runtime_s = record.runtime_s if record else None
    if runtime_s is None and phase is Phase.REVOKED and record and record.started_at and completed_at:
        # Revoked while running: the pool child that timed it was killed; the record's
        # start and end times still tell how long it ran.
        runtime_s = round(max(0.0, (completed_at - record.started_at).total_seconds()), 6)

    facts = Facts(
        obs, phase, state, stored, expired, completed_at, result_expires_at, expires_setting, outcome,
        written_over=stale is _Stale.WRITTEN_OVER,
    )
    return TaskStatus(
        task_id=obs.task_id,
        phase=phase,
        state=state,
        name=_pick(meta, "name", record.name if record else None),
        worker=_pick(meta, "worker", record.worker if record else None),
        retries=_pick_int(meta, "retries", record.retries if record else None),
        runtime_s=runtime_s,
        queued_at=record.queued_at if record else None,
        started_at=record.started_at if record else None,
        completed_at=completed_at if phase.finished else None,
        worker_last_seen_at=worker_seen_at,
        result_available=stored and phase.finished,
        expired=expired,
        result_expires_at=result_expires_at,
        expires_in_s=expires_in_s,
        result=result,
        result_info=ResultInfo(
            bytes=_result_bytes(phase, stored, obs, record),
            inline=outcome is None,
            placeholders=placeholders,
            reason=outcome,
        ),
        error=_error(phase, meta, record),
        progress=_progress(phase, meta_state, meta, record, settings),
        notes=tuple(notes_for(facts, settings)),
    )


def _state_and_phase(meta_state: str | None, stored: bool, record: TaskRecord | None) -> tuple[str | None, Phase]:
    record_state = record.state if record else None
    if stored and meta_state is not None:
        meta_phase = classify(meta_state)
        # Celery keeps RETRY (or PENDING/RECEIVED) stored while the retried task runs again
        # when task_track_started is off; our record saw it start.
        if meta_state in (states.RETRY, states.PENDING, states.RECEIVED) and record_state == states.STARTED:
            return record_state, Phase.RUNNING
        return meta_state, meta_phase
    if record_state is not None:
        return record_state, classify(record_state)
    if stored:  # stored but undecodable, or too large and compressed: something finished
        return meta_state, classify(meta_state) if meta_state else Phase.UNKNOWN
    return None, Phase.UNKNOWN


class _Stale(Enum):
    """Why what Celery stored under a task's id is not that task's result."""

    #: The task stored a state that is not final (``task_track_started``'s STARTED, an
    #: ``update_state``), then ended in a way Celery stores nothing for (``Ignore``,
    #: ``Reject``, ``ignore_result``): our record has its end, Celery's key only what came
    #: before. (A failure or a revocation Celery stores itself: a state after one is a new
    #: run of the same id.)
    ENDED_WITHOUT_STORING = "ended without storing"
    #: Celery stored RETRY over the task's success. A task retried at once (``countdown=0``)
    #: can run again, and succeed, while its first run still stores RETRY; Celery reads what
    #: is stored, then writes, so that RETRY can land last. Our record kept the success (a
    #: terminal record never goes back); Celery's key holds a state the task has left, and
    #: its result is gone.
    WRITTEN_OVER = "written over"


def _why_stored_is_not_its_result(meta_state: str | None, record: TaskRecord | None, now: datetime) -> _Stale | None:
    """Why the state Celery stored is not the task's result, going by our record's end; None
    when it is (or the record cannot tell)."""
    if meta_state is None or record is None or classify(meta_state).finished:
        return None
    if record.state in (states.IGNORED, states.REJECTED):
        return _Stale.ENDED_WITHOUT_STORING
    if record.state != states.SUCCESS:
        return None
    if record.ignore_result:
        return _Stale.ENDED_WITHOUT_STORING
    # Only while the success's result would still be stored: Celery never writes over a
    # stored success, so after its expiry a RETRY is a new run of the same id.
    if meta_state == states.RETRY and (
        record.result_never_expires or (record.result_expires_at is not None and record.result_expires_at > now)
    ):
        return _Stale.WRITTEN_OVER
    return None


def _worker_lost(obs: Observation, phase: Phase, settings: FileIntelSettings) -> bool:
    """Running, and the worker running it has been silent for longer than ``lost_after``.

    A worker that never beat (its key is gone) only counts once the task has been running
    for ``lost_after`` too: the first beat may still be on its way."""
    silent = obs.worker_silent_s
    if phase not in (Phase.RUNNING, Phase.RETRYING) or silent is None or silent <= settings.lost_after:
        return False
    if math.isfinite(silent):
        return True
    started = obs.record.started_at if obs.record else None
    return started is not None and (obs.now - started).total_seconds() > settings.lost_after


def _outcome(obs: Observation, phase: Phase, stored: bool, expired: bool) -> Outcome | None:
    """The verdict; None means ``ok`` (the result is in the document)."""
    if stored and obs.unreadable is not None and phase in (Phase.UNKNOWN, Phase.SUCCEEDED):
        return Outcome.NOT_READABLE  # something is stored: not "unknown", whatever it says
    if phase is Phase.UNKNOWN:
        return Outcome.UNKNOWN
    if phase is Phase.LOST:
        return Outcome.LOST
    if phase is Phase.FAILED:
        return Outcome.FAILED
    if phase is Phase.REVOKED:
        return Outcome.REVOKED
    if not phase.finished:
        return Outcome.NOT_READY
    if stored:
        if obs.meta is None:  # stored, above max_result_bytes: never loaded
            return Outcome.TOO_LARGE
        return None
    if not expired:  # ignore_result, or a backend that keeps no results for other clients
        return Outcome.NO_RESULT
    record = obs.record
    if record is not None and record.result_expires_at is not None and record.result_expires_at > obs.now + timedelta(seconds=1):
        return Outcome.EVICTED
    if record is not None and record.result_never_expires:
        return Outcome.EVICTED
    return Outcome.EXPIRED


def _expiry(obs: Observation, phase: Phase, stored: bool) -> tuple[datetime | None, float | None]:
    """When the stored result goes (or went) away, and in how many seconds."""
    record = obs.record
    if stored and phase.finished and obs.ttl_s is not None:
        # now + TTL moves by milliseconds from read to read. The record measured the expiry
        # once, on the server's clock, when the task finished: use it while it agrees (the
        # TTL may have been changed since), so every read gives the same answer.
        measured = obs.now + timedelta(seconds=obs.ttl_s)
        recorded = record.result_expires_at if record is not None else None
        if recorded is not None and abs((recorded - measured).total_seconds()) < 2:
            return recorded, round(obs.ttl_s, 3)
        return measured, round(obs.ttl_s, 3)
    if not stored and record is not None and record.result_expires_at is not None:
        return record.result_expires_at, None
    return None, None


def _result_bytes(phase: Phase, stored: bool, obs: Observation, record: TaskRecord | None) -> int | None:
    """Size of the stored result: only for finished tasks (a running task's stored payload is
    its progress, not a result); from the record once the result is gone."""
    if not phase.finished:
        return None
    if stored:
        return obs.stored_bytes
    return record.result_bytes if record is not None and record.result_bytes else None


def _stored_placeholders(record: TaskRecord | None) -> tuple[Placeholder, ...]:
    """Placeholders FileIntelTask put in the result before it was stored."""
    if record is None or not record.placeholders:
        return ()
    try:
        items = json.loads(record.placeholders)
        return tuple(Placeholder(str(i["path"]), str(i["type"]), str(i["repr"])) for i in items)
    except (ValueError, TypeError, KeyError):
        return ()


def _progress(
    phase: Phase,
    state: str | None,
    meta: Mapping[str, Any] | None,
    record: TaskRecord | None,
    settings: FileIntelSettings,
) -> Progress | None:
    """Live progress from the stored meta while it runs; for a task that was stopped on the
    way (revoked, lost), the last progress its record kept."""
    if not phase.finished and phase is not Phase.LOST and meta:
        value = meta.get("result")
        if isinstance(value, Mapping) and (state == PROGRESS_STATE or any(k in value for k in _PROGRESS_KEYS)):
            return normalize_progress(value, settings.progress_message_max)
    if phase in (Phase.REVOKED, Phase.LOST, Phase.FAILED) and record is not None and record.progress:
        try:
            return normalize_progress(json.loads(record.progress), settings.progress_message_max)
        except ValueError:
            return None
    return None


def _error(phase: Phase, meta: Mapping[str, Any] | None, record: TaskRecord | None) -> TaskError | None:
    if phase not in (Phase.FAILED, Phase.REVOKED):
        return None
    record_traceback = record.error_traceback if record is not None else None
    if meta is not None and meta.get("status") in (states.FAILURE, states.REVOKED):
        exc = meta.get("result")
        traceback = meta.get("traceback")
        traceback = traceback if isinstance(traceback, str) else record_traceback
        if isinstance(exc, Mapping) and "exc_type" in exc:
            return TaskError(
                type=str(exc.get("exc_type")),
                module=str(exc["exc_module"]) if exc.get("exc_module") else None,
                message=_exc_message(exc.get("exc_message")),
                traceback=traceback,
            )
        if isinstance(exc, BaseException):  # pickle serializer
            return TaskError(type(exc).__qualname__, type(exc).__module__, str(exc), traceback)
    if record is not None and record.error_type:
        return TaskError(record.error_type, record.error_module, record.error_message or "", record_traceback)
    return TaskError("Unknown", None, "the task failed, but no error details were stored", None)


def _exc_message(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return str(value[0])
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _pick(meta: Mapping[str, Any] | None, key: str, fallback: str | None) -> str | None:
    value = meta.get(key) if meta else None
    return str(value) if isinstance(value, str) and value else fallback


def _pick_int(meta: Mapping[str, Any] | None, key: str, fallback: int | None) -> int | None:
    value = meta.get(key) if meta else None
    return value if isinstance(value, int) and not isinstance(value, bool) else fallback
