"""``describe(app, task_id)``: gather what the backend and our record say, in one round trip.

On a Redis backend a small Lua script returns, atomically: the stored result's size
(STRLEN, O(1)), its TTL, the payload only if it is under ``fileintel_max_result_bytes``
(otherwise just its first bytes, to read the state), and our record. A 200 MB result is
never pulled into the process. For a running task it also says how long the worker running
it has been silent (its liveness key), so a task whose worker died reads ``lost``. The
script, and how many tasks one call of it reads, is in ``read_script.py``. Other
backends are read through Celery's own API, with records from the records Redis. Writes
this process queued and has not written yet are overlaid on the record: right after
``apply_async()`` a task reads ``queued``, never ``unknown``.

What the facts mean is decided in ``classify.py``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from celery import Celery, states

from celery_ext.classify import Observation, build_status
from celery_ext.decoding import (
    PICKLE_REFUSED,
    NotDecoded,
    decode_stored,
    printable,
    stores_pickle,
)
from celery_ext.ids import validate_task_id
from celery_ext.measure import stored_ttl_s
from celery_ext.read_script import read_tasks, unpack_record
from celery_ext.record_writes import RecordWrite
from celery_ext.records import RecordStore, backend_errors, store_for, unavailable
from celery_ext.results import make_json_safe
from celery_ext.settings import result_expires_seconds
from celery_ext.status import TaskStatus
from celery_ext.task_record import TaskRecord, apply_write, record_fields
from celery_ext.writer import pending_write

__all__ = ["describe", "describe_many", "observe_many", "status_of", "observe_pushed", "METADATA_ONLY_BYTES"]

#: ``max_result_bytes`` for readers that want a task's metadata, not its result (the board,
#: the inventory): payloads above this are not loaded.
METADATA_ONLY_BYTES = 64 * 1024

_STATUS_IN_HEAD = re.compile(rb'"status":\s*"([A-Z_]+)"')


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
    return [_classify_one(o, settings) for o in observations]


def observe_many(app: Celery, task_ids: Sequence[str]) -> list[Observation]:
    """The facts ``describe_many`` classifies, from the same single read: for a caller that
    keeps them to classify a pushed update later (``wait()``, through ``observe_pushed``)."""
    ids = [validate_task_id(t) for t in task_ids]
    store = store_for(app)
    try:
        return _observe(app, store, ids, store.settings.max_result_bytes)
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc


def status_of(app: Celery, obs: Observation) -> TaskStatus:
    """``obs`` classified exactly as ``describe`` classifies what it reads."""
    return _classify_one(obs, store_for(app).settings)


def observe_pushed(
    app: Celery, earlier: Observation, data: bytes, *, now: datetime | None = None
) -> Observation | None:
    """The facts after Celery published ``data`` as the task's final result, without a read.

    Celery PUBLISHes the very bytes it has just stored on the result key, with the backend's
    expiry as TTL, so everything the read script would return about the result is in hand:
    the payload, its size (STRLEN) and its TTL (PTTL, give or take the message's transit).
    The record is the one ``earlier`` read. A read at this moment may find the worker's
    final record (a success's end is written in the same script as its result; other ends
    come a moment later): what only that record brings (the runtime, a short task's start)
    is then left unknown here, never different.

    None when only a read gives what ``describe`` would say: the message is not a final
    state, cannot be decoded here, is larger than ``fileintel_max_result_bytes`` (describe
    does not load it), the earlier read found unreadable data, or the result backend is not
    the Redis that holds the records (describe reads another way there).
    """
    store = store_for(app)
    settings = store.settings
    if not store.result_backend_is_redis or settings.redis_url or earlier.unreadable is not None:
        return None
    if len(data) > settings.max_result_bytes:
        return None
    meta, problem = _decode_meta(app, data, settings.decode_pickle)
    if meta is None or problem is not None or meta["status"] not in states.READY_STATES:
        return None
    ttl = stored_ttl_s(_storing_backend(app, earlier), meta["status"])
    return replace(
        earlier,
        meta=meta,
        stored_bytes=len(data),
        ttl_s=ttl,
        head_state=None,
        now=now or datetime.now(timezone.utc),
        worker_silent_s=None,  # only a running task's worker is checked
    )


def _storing_backend(app: Celery, earlier: Observation) -> Any:
    """The backend that stored the task's result, for its TTL: a task can have a backend of
    its own (``@app.task(backend=...)``) with another ``expires`` than the app's. Known when
    the record names a task this app has registered; else the app's."""
    name = earlier.record.name if earlier.record is not None else None
    task = app.tasks.get(name) if name else None
    return getattr(task, "backend", None) or app.backend


def _classify_one(obs: Observation, settings: Any) -> TaskStatus:
    """One task's status; data that breaks classification degrades this task only."""
    try:
        return build_status(obs, settings)
    except Exception as exc:
        return build_status(_unreadable(obs.task_id, obs.now, f"its stored data could not be interpreted ({_problem(exc)})"), settings)


def _unreadable(task_id: str, now: datetime, problem: str) -> Observation:
    """What readers get for a task whose keys hold data nothing can make sense of: it reads
    ``not_readable``, with ``problem`` in its notes, and the other tasks read normally."""
    return Observation(task_id, None, None, None, None, None, True, now, unreadable=problem)


def _problem(exc: BaseException) -> str:
    """An exception as one short line of text that any output can carry (no lone surrogates)."""
    text: str = printable(f"{type(exc).__name__}: {exc}".splitlines()[0][:300] if str(exc) else type(exc).__name__)
    return text


def _observe(app: Celery, store: RecordStore, ids: list[str], max_bytes: int) -> list[Observation]:
    now = datetime.now(timezone.utc)
    # Taken before reading Redis: a write that leaves the queue after this lands before the
    # read, so every id apply_async() returned is in one of the two.
    pending = {task_id: pending_write(app, task_id) for task_id in ids}
    if store.result_backend_is_redis and not store.settings.redis_url:
        replies = read_tasks(store, ids, max_bytes)
        expires = result_expires_seconds(app)

        def from_script(task_id: str, reply: Any) -> Observation:
            if isinstance(reply, Exception):  # e.g. WRONGTYPE: a key of this task is not a string/hash
                raise reply
            return _from_script(app, task_id, reply, now, expires, pending[task_id])

        return [
            _or_unreadable(task_id, now, "Redis could not read its keys", from_script, task_id, reply)
            for task_id, reply in zip(ids, replies)
        ]
    return [
        _or_unreadable(
            task_id, now, "its stored data could not be read", _observe_generic, app, store, task_id, now, pending[task_id]
        )
        for task_id in ids
    ]


def _or_unreadable(task_id: str, now: datetime, what: str, read: Callable[..., Observation], *args: Any) -> Observation:
    """``read(*args)``, or an unreadable observation of this task saying ``what`` failed: one
    task's bad data never fails the others. Redis being down still fails the whole read."""
    try:
        return read(*args)
    except backend_errors():
        raise
    except Exception as exc:
        return _unreadable(task_id, now, f"{what} ({_problem(exc)})")


class _Decoded:
    """Records and unfinished tasks' metas, decoded, by their raw bytes (the newest
    ``MAX_ENTRIES``). The board re-reads its 200 running tasks on every snapshot, and most of
    them have not changed since the last one: decoding was a third of a snapshot's time
    (``benchmarks/reader_scale.py``). Only immutable values are kept: a ``TaskRecord`` (frozen),
    and a meta that is not a final result, whose values no caller gets to keep (progress is
    normalized into new objects; a final result goes to callers and is never shared)."""

    #: A record and a meta for each of a board's 200 running tasks, twice over and more;
    #: entries of at most MAX_BYTES raw bytes (a few MB in all).
    MAX_ENTRIES = 1024
    MAX_BYTES = 4096

    def __init__(self) -> None:
        # Drops its oldest in constant time (a dict's next(iter()) walks past every freed slot).
        self._entries: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, packed: bytes, pending: RecordWrite | None) -> TaskRecord | None:
        if not packed or len(packed) > self.MAX_BYTES:  # none in Redis: a queued write may stand in
            return _with_pending(record_fields(unpack_record(packed)), pending)
        key = ("record", packed)
        found = self._entries.get(key)
        if found is None:
            found = TaskRecord.from_fields(record_fields(unpack_record(packed)))
            self._keep(key, found)
        return found

    def meta(self, app: Celery, payload: bytes, allow_pickle: bool) -> tuple[Mapping[str, Any] | None, str | None]:
        if len(payload) > self.MAX_BYTES:  # never kept: not even worth hashing
            return _decode_meta(app, payload, allow_pickle)
        key = ("meta", id(app), allow_pickle, payload)
        found = self._entries.get(key)
        if found is None:
            found = _decode_meta(app, payload, allow_pickle)
            meta = found[0]
            if meta is not None and meta.get("status") not in states.READY_STATES:
                self._keep(key, (MappingProxyType(dict(meta)), None))
        return found

    def _keep(self, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            if len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)


_decoded = _Decoded()


def _from_script(
    app: Celery, task_id: str, reply: list[Any], now: datetime, expires: int | None, pending: RecordWrite | None
) -> Observation:
    size, pttl, payload, head, packed_record, silent = reply
    allow_pickle = store_for(app).settings.decode_pickle
    meta, unreadable = _decoded.meta(app, payload, allow_pickle) if payload is not None else (None, None)
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
        record=_decoded.record(packed_record, pending),
        records_enabled=True,
        now=now,
        result_expires_s=expires,
        unreadable=unreadable,
        worker_silent_s=float(silent) if silent is not None else None,
    )


def _with_pending(fields: dict[str, str], pending: RecordWrite | None) -> TaskRecord | None:
    """The record; when Redis has none yet, the one this process has queued and not written
    (a task it has just sent). Only then: a record in Redis carries what the write script
    measured (the result's size and expiry), which a queued write cannot know."""
    if not fields and pending is not None:
        fields = apply_write(fields, pending.state, pending.fields, pending.live)
    return TaskRecord.from_fields(fields)


def _decode_meta(app: Celery, payload: bytes, allow_pickle: bool) -> tuple[Mapping[str, Any] | None, str | None]:
    """The stored meta, or why it cannot be read here (pickle is refused unless allowed)."""
    try:
        meta = decode_stored(app, payload, allow_pickle=allow_pickle)
    except NotDecoded as exc:
        return None, str(exc)
    if not isinstance(meta, Mapping):
        return None, f"it decodes to a {type(meta).__name__}, not a Celery result"
    if not isinstance(meta.get("status"), str):
        return None, f"its status is {type(meta.get('status')).__name__}, not a Celery state name"
    return meta, None


def _observe_generic(
    app: Celery, store: RecordStore, task_id: str, now: datetime, pending: RecordWrite | None
) -> Observation:
    backend = app.backend
    meta: Mapping[str, Any] | None = None
    unreadable: str | None = None
    if stores_pickle(app) and not store.settings.decode_pickle:
        # Celery's own read would unpickle: do not read the result at all.
        unreadable = PICKLE_REFUSED
    elif getattr(backend, "persistent", True) and hasattr(backend, "_get_task_meta_for"):
        raw = backend._get_task_meta_for(task_id)
        if raw and raw.get("status") != states.PENDING:
            meta = dict(raw)
    keeps_results = bool(getattr(backend, "persistent", True)) and hasattr(backend, "_get_task_meta_for")
    fields: dict[str, str] = {}
    if store.enabled:
        fields = record_fields(store.client().hgetall(store.record_key(task_id)))
        # The record script measured the result key in the records Redis, not in this
        # backend: its size there says nothing about what this backend stored.
        fields.pop("result_bytes", None)
    stored_bytes = None
    if meta is not None and meta.get("status") in states.READY_STATES:
        stored_bytes = _approximate_size(meta.get("result"))
    return Observation(
        task_id,
        meta,
        stored_bytes,
        None,
        None,
        _with_pending(fields, pending),
        store.enabled,
        now,
        result_expires_s=result_expires_seconds(app),
        unreadable=unreadable,
        backend_keeps_results=keeps_results,
    )


def _approximate_size(value: Any) -> int | None:
    try:
        return len(json.dumps(make_json_safe(value).value).encode())
    except Exception:  # pragma: no cover
        return None
