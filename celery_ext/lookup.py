"""``describe(app, task_id)``: gather what the backend and our record say, in one round trip.

On a Redis backend a small Lua script returns, atomically: the stored result's size
(STRLEN, O(1)), its TTL, the payload only if it is under ``fileintel_max_result_bytes``
(otherwise just its first bytes, to read the state), and our record. A 200 MB result is
never pulled into the process. Other backends are read through Celery's own API, with
records from the records Redis.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import Celery, states

from celery_ext.errors import BackendUnavailable
from celery_ext.ids import validate_task_id
from celery_ext.progress import PROGRESS_STATE, normalize_progress
from celery_ext.records import RecordStore, TaskRecord, store_for
from celery_ext.results import find_placeholders, make_json_safe
from celery_ext.settings import FileIntelSettings, result_expires_seconds
from celery_ext.status import (
    Phase,
    Placeholder,
    ResultInfo,
    ResultReason,
    TaskError,
    TaskStatus,
    classify,
)

__all__ = ["describe", "describe_many", "Observation", "build_status", "backend_errors", "unavailable"]

READ_SCRIPT = """
local size = redis.call('STRLEN', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
local payload = false
local head = false
if size > 0 then
  if size <= tonumber(ARGV[1]) then
    payload = redis.call('GET', KEYS[1])
  else
    head = redis.call('GETRANGE', KEYS[1], 0, 255)
  end
end
return {size, pttl, payload, head, redis.call('HGETALL', KEYS[2])}
"""

READ_SCRIPT_SHA = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()
_STATUS_IN_HEAD = re.compile(rb'"status":\s*"([A-Z_]+)"')
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


def backend_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "Redis / the backend did not answer"."""
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def unavailable(store: RecordStore, exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(store.url or str(store.app.conf.result_backend or ""), _reason(exc))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200].rstrip(".")


def describe(app: Celery, task_id: str) -> TaskStatus:
    """Everything known about ``task_id``, validated, as a ``TaskStatus``.

    Raises ``InvalidTaskId`` (a ValueError) for a malformed id before any I/O, and
    ``BackendUnavailable`` when Redis / the result backend cannot be reached.
    """
    return describe_many(app, [task_id])[0]


def describe_many(
    app: Celery, task_ids: Sequence[str], *, max_result_bytes: int | None = None
) -> list[TaskStatus]:
    """``describe`` for several ids in one round trip (pipelined).

    ``max_result_bytes`` lowers the size up to which results are loaded, for callers that
    only want metadata (Flower's board): larger ones come back as ``too_large``. It never
    raises the configured ``fileintel_max_result_bytes``.
    """
    ids = [validate_task_id(t) for t in task_ids]
    store = store_for(app)
    limit = store.settings.max_result_bytes
    if max_result_bytes is not None:
        limit = min(limit, max_result_bytes)
    try:
        observations = _observe(app, store, ids, limit)
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc
    settings = store.settings if limit == store.settings.max_result_bytes else replace(store.settings, max_result_bytes=limit)
    return [build_status(o, settings, app) for o in observations]


def _observe(app: Celery, store: RecordStore, ids: list[str], max_bytes: int) -> list[Observation]:
    now = datetime.now(timezone.utc)
    if store.result_backend_is_redis and not store.settings.redis_url:
        from redis.exceptions import NoScriptError

        client = store.client()
        try:
            replies = _run_read_script(client, store, ids, max_bytes)
        except NoScriptError:  # Redis restarted, or SCRIPT FLUSH: load it again
            client.script_load(READ_SCRIPT)
            replies = _run_read_script(client, store, ids, max_bytes)
        return [_from_script(app, task_id, reply, now) for task_id, reply in zip(ids, replies)]
    return [_observe_generic(app, store, task_id, now) for task_id in ids]


def _run_read_script(client: Any, store: RecordStore, ids: list[str], max_bytes: int) -> list[Any]:
    """One EVALSHA per id, all in one round trip. (redis-py's Script objects would add a
    SCRIPT EXISTS round trip to every pipeline.)"""
    if len(ids) == 1:
        keys = [store.meta_key(ids[0]), store.record_key(ids[0])]
        return [client.evalsha(READ_SCRIPT_SHA, 2, *keys, max_bytes)]
    with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.evalsha(READ_SCRIPT_SHA, 2, store.meta_key(task_id), store.record_key(task_id), max_bytes)
        return list(pipe.execute())


def _from_script(app: Celery, task_id: str, reply: list[Any], now: datetime) -> Observation:
    size, pttl, payload, head, record_raw = reply
    meta = _decode_meta(app, payload) if payload is not None else None
    head_state = None
    if head is not None:
        match = _STATUS_IN_HEAD.search(head)
        head_state = match.group(1).decode() if match else None
    return Observation(
        task_id=task_id,
        meta=meta,
        stored_bytes=int(size) if size else None,
        ttl_s=pttl / 1000.0 if pttl and pttl > 0 else None,
        head_state=head_state,
        record=TaskRecord.from_redis(record_raw),
        records_enabled=True,
        now=now,
    )


def _decode_meta(app: Celery, payload: bytes) -> Mapping[str, Any] | None:
    """Decode the stored meta without turning stored exceptions back into classes
    (``decode``, not ``decode_result``: the latter imports and instantiates them)."""
    try:
        meta = app.backend.decode(payload)
    except Exception:
        return {"status": None, "undecodable": True}
    return meta if isinstance(meta, Mapping) else None


def _observe_generic(app: Celery, store: RecordStore, task_id: str, now: datetime) -> Observation:
    backend = app.backend
    meta: Mapping[str, Any] | None = None
    if getattr(backend, "persistent", True) and hasattr(backend, "_get_task_meta_for"):
        raw = backend._get_task_meta_for(task_id)
        if raw and raw.get("status") != states.PENDING:
            meta = dict(raw)
    record = None
    if store.enabled:
        fields: Any = store.client().hgetall(store.record_key(task_id))
        record = TaskRecord.from_redis(fields)
    stored_bytes = None
    if meta is not None and meta.get("status") in states.READY_STATES:
        stored_bytes = _approximate_size(meta.get("result"))
    return Observation(task_id, meta, stored_bytes, None, None, record, store.enabled, now)


def _approximate_size(value: Any) -> int | None:
    try:
        return len(json.dumps(make_json_safe(value).value).encode())
    except Exception:  # pragma: no cover
        return None


# -- classification -------------------------------------------------------------------------


def build_status(obs: Observation, settings: FileIntelSettings, app: Celery | None = None) -> TaskStatus:
    """Classify one observation into a TaskStatus. Pure: no I/O."""
    meta, record = obs.meta, obs.record
    meta_state = meta.get("status") if meta else obs.head_state
    stored = obs.stored_bytes is not None or meta is not None
    notes: list[str] = []
    expires_setting = result_expires_seconds(app) if app is not None else None
    if record is not None and record.result_expires_s is not None:
        expires_setting = record.result_expires_s or None

    state, phase = _state_and_phase(meta_state, stored, record)
    # Expired: it finished and a result was stored (the record measured it), but it is gone.
    expired = (
        phase.finished
        and not stored
        and record is not None
        and not record.ignore_result
        and record.result_bytes != 0
    )

    # Times: the backend's date_done first, then the record; never "now".
    completed_at = _parse_time(meta.get("date_done")) if meta else None
    if completed_at is None and record is not None:
        completed_at = record.completed_at

    # When the stored result goes away.
    result_expires_at: datetime | None = None
    expires_in_s: float | None = None
    if stored and phase.finished and obs.ttl_s is not None:
        expires_in_s = round(obs.ttl_s, 3)
        # now + TTL moves by milliseconds from read to read. The record measured the expiry
        # once, on the server's clock, when the task finished: use it while it agrees (the
        # TTL may have been changed since), so every read gives the same answer.
        measured = obs.now + timedelta(seconds=obs.ttl_s)
        recorded = record.result_expires_at if record is not None else None
        if recorded is not None and abs((recorded - measured).total_seconds()) < 2:
            result_expires_at = recorded
        else:
            result_expires_at = measured
    elif not stored and record is not None and record.result_expires_at is not None:
        result_expires_at = record.result_expires_at

    result, placeholders, reason = _result(phase, meta, obs, stored, expired, record, settings)
    progress = None
    if meta and not phase.finished:
        progress = _progress(meta_state, meta.get("result"), settings)

    error = _error(phase, meta, record)
    notes.extend(
        _notes(obs, phase, state, stored, expired, completed_at, result_expires_at, expires_setting, settings, reason)
    )
    return TaskStatus(
        task_id=obs.task_id,
        phase=phase,
        state=state,
        name=_pick(meta, "name", record.name if record else None),
        worker=_pick(meta, "worker", record.worker if record else None),
        retries=_pick_int(meta, "retries", record.retries if record else None),
        runtime_s=record.runtime_s if record else None,
        queued_at=record.queued_at if record else None,
        started_at=record.started_at if record else None,
        completed_at=completed_at if phase.finished else None,
        result_available=stored and phase.finished,
        expired=expired,
        result_expires_at=result_expires_at,
        expires_in_s=expires_in_s,
        result=result,
        result_info=ResultInfo(
            bytes=_result_bytes(phase, stored, obs, record),
            inline=reason is None,
            placeholders=placeholders,
            reason=reason,
        ),
        error=error,
        progress=progress,
        notes=tuple(notes),
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


def _result(
    phase: Phase,
    meta: Mapping[str, Any] | None,
    obs: Observation,
    stored: bool,
    expired: bool,
    record: TaskRecord | None,
    settings: FileIntelSettings,
) -> tuple[Any, tuple[Placeholder, ...], ResultReason | None]:
    if phase is Phase.UNKNOWN:
        return None, (), ResultReason.UNKNOWN
    if phase in (Phase.FAILED, Phase.REVOKED):
        return None, (), ResultReason.FAILED
    if not phase.finished:
        return None, (), ResultReason.NOT_READY
    if expired:
        return None, (), ResultReason.EXPIRED
    if not stored:
        # Finished, nothing stored, and not expired: ignore_result, or a backend we cannot read
        # results from here (rpc:// replies go to the client that sent the task).
        ignored = record is not None and record.ignore_result
        return None, (), ResultReason.IGNORED if ignored else ResultReason.UNKNOWN
    if meta is None:
        # Stored, but above max_result_bytes: never loaded.
        return None, (), ResultReason.TOO_LARGE
    if meta.get("undecodable"):
        return None, (), ResultReason.UNKNOWN
    safe = make_json_safe(meta.get("result"))
    # Placeholders FileIntelTask put in before storing: the record has their reprs; the
    # record may lag the result by a few milliseconds, so fall back to the strings themselves.
    placeholders = _stored_placeholders(record) or find_placeholders(safe.value)
    placeholders += safe.placeholders
    return safe.value, placeholders, None


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


def _progress(state: str | None, value: Any, settings: FileIntelSettings) -> Any:
    if not isinstance(value, Mapping):
        return None
    if state == PROGRESS_STATE or any(k in value for k in _PROGRESS_KEYS):
        return normalize_progress(value, settings.progress_message_max)
    return None


def _error(phase: Phase, meta: Mapping[str, Any] | None, record: TaskRecord | None) -> TaskError | None:
    if phase not in (Phase.FAILED, Phase.REVOKED):
        return None
    if meta is not None and meta.get("status") in (states.FAILURE, states.REVOKED):
        exc = meta.get("result")
        traceback = meta.get("traceback")
        traceback = traceback if isinstance(traceback, str) else None
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
        return TaskError(record.error_type, record.error_module, record.error_message or "", None)
    return TaskError("Unknown", None, "the task failed, but no error details were stored", None)


def _exc_message(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) == 1:
            return str(value[0])
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _notes(
    obs: Observation,
    phase: Phase,
    state: str | None,
    stored: bool,
    expired: bool,
    completed_at: datetime | None,
    expires_at: datetime | None,
    expires_setting: int | None,
    settings: FileIntelSettings,
    reason: ResultReason | None,
) -> list[str]:
    notes: list[str] = []
    setting_text = f"result_expires={expires_setting} s" if expires_setting else "result_expires is off (results never expire)"
    record = obs.record
    if not obs.records_enabled:
        notes.append(
            "Task records are off (the result backend is not Redis and no Redis URL was found: "
            "set fileintel_redis_url), so expired results and queued tasks cannot be told "
            "apart from unknown ids."
        )
    if phase is Phase.UNKNOWN:
        notes.append(
            "Nothing is known about this id: no stored result and no task record. It was never "
            "sent, was sent by a producer that did not call celery_ext.install() and no worker "
            "has received it yet, or it finished so long ago that its record expired too "
            f"(records are kept {settings.record_ttl // 3600} h; {setting_text})."
        )
    elif phase is Phase.QUEUED:
        where = f" on queue {record.queue!r}" if record and record.queue else ""
        if record and record.received_at:
            notes.append(f"A worker has received it{where} but has not started it yet.")
        else:
            notes.append(f"Sent{where}; no worker has started it yet.")
    if expired and record is not None:
        done = _fmt(completed_at) or "an unknown time"
        if record.result_expires_at is not None and record.result_expires_at > obs.now + timedelta(seconds=1):
            notes.append(
                f"It finished at {done}, but its result is gone ahead of its expiry at "
                f"{_fmt(record.result_expires_at)} ({setting_text}): it was deleted (forget(), "
                "a manual DEL) or evicted by Redis under memory pressure (check maxmemory-policy)."
            )
        else:
            at = _fmt(record.result_expires_at) or "an unknown time"
            notes.append(f"It finished at {done}; its result expired at {at} ({setting_text}).")
    if reason is ResultReason.TOO_LARGE:
        notes.append(
            f"The stored result is {obs.stored_bytes} bytes, above fileintel_max_result_bytes "
            f"({settings.max_result_bytes}), so it is not loaded here: download it instead."
        )
    if reason is ResultReason.IGNORED:
        notes.append("This task has ignore_result=True: Celery stores no result for it.")
    if stored and phase.finished and expires_at is None and obs.ttl_s is None and obs.meta is not None:
        if expires_setting is None:
            notes.append("This result never expires (result_expires is off).")
    if phase.finished and reason is ResultReason.UNKNOWN:
        notes.append(
            "Its result cannot be read from here: the result backend does not keep results "
            "for other clients (rpc:// replies go to the client that sent the task)."
        )
    if obs.meta is not None and obs.meta.get("undecodable"):
        notes.append("The stored result could not be decoded with this app's result serializer.")
    if state is not None and phase is Phase.RUNNING and state not in (states.STARTED, PROGRESS_STATE):
        notes.append(f"{state!r} is a custom state set by the task; it is still running.")
    return notes


def _fmt(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


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
