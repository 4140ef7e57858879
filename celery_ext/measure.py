"""What Celery stored for a task, measured in the moment it stored it.

A task record tells how big the stored result was and when it expires, also after it is
gone. Asking Redis afterwards (STRLEN, PTTL) costs commands on every task; the stored value
and its TTL are in Celery's hands anyway when it writes them. So ``install`` wraps the Redis
result backend's ``_set_with_state`` (present from Celery 5.3 to 5.7) once: after Celery's
own write succeeded, the size and expiry go to a thread-local note, and the signal receiver
that runs next in the same thread (``task_success``/``task_failure`` fire after the result
is stored) takes it. No I/O is added and Celery's write is unchanged.

The expiry is the worker's clock plus the TTL Celery set: the server starts the TTL at the
same moment, so the two agree to within the worker's clock error.

A task's record can also ride along: when the bootstep registered a ``Rider`` for the result
this thread stores (a task that ran here and succeeded), the rider writes the result itself,
with Celery's key, value and TTL, together with its own commands, in one call
(``end_script.py``): one command and no round trip of its own. A rider that cannot (a big
result, scripts refused) leaves the write to Celery's own ``_set``, unchanged, from Celery 5.3
to 5.7; an error of Celery's write fails the store as it would without a rider.

Before it stores a result, Celery reads the one stored before and keeps a success (a task run
twice after a lost acknowledgement). For a success whose stored result the end script can
read (JSON, uncompressed), that read is put off to the write (``_store_result`` and
``_get_task_meta_for`` are wrapped for it): a rider's script makes the check itself, and
without one (or when it cannot ride) Celery's own read runs right before the write. Either
way the check is made once, before anything is written, as Celery makes it; a riding success
saves the round trip.
"""

from __future__ import annotations

import enum
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from celery import states

__all__ = ["StoredResult", "RideOutcome", "Rider", "wrap_redis_backend", "take_stored", "stored_ttl_s"]


class StoredResult(NamedTuple):
    """One stored result, measured (a tuple: built on every task's path, cheaply)."""

    key: bytes
    state: str
    nbytes: int
    #: Epoch seconds when the stored result expires; None: it never does.
    expires_at: float | None
    #: The TTL Celery gave it, in seconds: the backend's own ``expires``, which a task with
    #: its own backend may set apart from the app's ``result_expires``; None: no TTL.
    ttl_s: int | None = None


class RideOutcome(enum.IntEnum):
    """What a ride wrote."""

    RESULT_ONLY = 0  # the result; the rider's own commands failed
    BOTH = 1
    #: Nothing: a success was stored before, and is kept (the check Celery makes, see above).
    KEPT_STORED_SUCCESS = 2


class Rider(Protocol):
    """Commands that ride along with Celery's write of one result (see the module's text)."""

    def ride(self, client: Any, key: Any, value: Any, expires: int | None, keep_success: bool) -> RideOutcome | None:
        """Write the result as Celery would (``SET`` with TTL ``expires``, ``PUBLISH`` to
        ``key``) together with the rider's own commands, unless ``keep_success`` and a
        success is stored at ``key``; None if it cannot (it wrote nothing: Celery writes the
        result). Raises what Celery's own write would."""

    def landed(self) -> None:
        """Celery's write and the rider's commands went through (not called when a rider's
        command failed: then the record is written the usual way)."""


#: ``(backend, key, stored)`` -> a rider for that write, or None; set by ``wrap_redis_backend``.
RiderFor = Callable[[Any, bytes, StoredResult], "Rider | None"]

_note = threading.local()
#: The bootstep's ``RiderFor`` (``wrap_redis_backend``).
_rider_for: RiderFor | None = None


def take_stored(task_id: str, state: str) -> StoredResult | None:
    """The measurement of the last result this thread stored, if it was ``task_id``'s in
    ``state`` (and forget it: one measurement serves one record write)."""
    stored: StoredResult | None = getattr(_note, "stored", None)
    if stored is None or stored.state != state or not stored.key.endswith(task_id.encode()):
        return None
    _note.stored = None
    return stored


def _byte_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    return len(value)


def stored_ttl_s(backend: Any, state: str) -> float | None:
    """The TTL (seconds) Celery's Redis backend sets on a result it stores in ``state``; None:
    none (the result never expires). ``wait()`` reads a pushed result's expiry from it too."""
    expires = getattr(backend, "failure_expires", None) if state == states.FAILURE else None
    if expires is None:
        expires = getattr(backend, "expires", None)
    return float(expires) if expires else None


def wrap_redis_backend(rider_for: RiderFor | None = None) -> None:
    """Measure every result the Redis backend stores, and let ``rider_for`` add commands to a
    successful result's write (once per process; idempotent)."""
    from celery.backends.redis import RedisBackend

    global _rider_for
    if rider_for is not None:
        _rider_for = rider_for
    original = RedisBackend._set_with_state
    if getattr(original, "_fileintel_measures", False):
        return
    original_set = RedisBackend._set
    original_store = RedisBackend._store_result
    original_read = RedisBackend._get_task_meta_for

    def kept_success(backend: Any, task_id: Any) -> bool:
        """Celery's check before a store, made now: True if a success is stored (and kept)."""
        return bool(original_read(backend, task_id)["status"] == states.SUCCESS)

    @functools.wraps(original_store)
    def _store_result(self: Any, task_id: Any, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        if state == states.SUCCESS and _rider_for is not None and _script_reads_results(self):
            _note.read_later = task_id
        try:
            return original_store(self, task_id, result, state, *args, **kwargs)
        finally:
            _note.read_later = _note.check_owed = None

    @functools.wraps(original_read)
    def _get_task_meta_for(self: Any, task_id: Any) -> Any:
        if task_id is not None and task_id == getattr(_note, "read_later", None):
            # Celery's read before it stores a success: put off to the write (module's text).
            _note.read_later, _note.check_owed = None, task_id
            return {"status": states.PENDING, "result": None}
        return original_read(self, task_id)

    @functools.wraps(original)
    def _set_with_state(self: Any, key: Any, value: Any, state: str) -> Any:
        try:
            stored = _measure(self, key, value, state)
            rider = _rider_for(self, stored.key, stored) if _rider_for and state == states.SUCCESS else None
        except Exception:  # pragma: no cover - a measurement never breaks a store
            stored, rider = None, None
        owed = getattr(_note, "check_owed", None)
        if owed is not None and rider is None:
            _note.check_owed = None
            if kept_success(self, owed):
                _note.stored = None
                return None
        _note.rider, _note.rider_key, _note.outcome = rider, stored.key if stored else None, None
        try:
            result = original(self, key, value, state)
        finally:
            _note.rider = None
        _note.stored = None if _note.outcome is RideOutcome.KEPT_STORED_SUCCESS else stored
        if rider is not None and _note.outcome is RideOutcome.BOTH:
            rider.landed()
        return result

    @functools.wraps(original_set)
    def _set(self: Any, key: Any, value: Any, *args: Any) -> Any:
        rider: Rider | None = getattr(_note, "rider", None)
        if rider is None or _raw_key(key) != _note.rider_key:
            return original_set(self, key, value, *args)
        owed = getattr(_note, "check_owed", None)
        # Celery's _set (5.3: no ``expires`` argument; 5.7: ``expires``, None for its own).
        expires = args[0] if args and args[0] is not None else self.expires
        outcome = rider.ride(self.client, key, value, expires or None, keep_success=owed is not None)
        if outcome is None:
            if owed is None or not kept_success(self, owed):
                return original_set(self, key, value, *args)
            outcome = RideOutcome.KEPT_STORED_SUCCESS
        _note.outcome = outcome
        return None

    setattr(_set_with_state, "_fileintel_measures", True)
    setattr(RedisBackend, "_store_result", _store_result)
    setattr(RedisBackend, "_get_task_meta_for", _get_task_meta_for)
    setattr(RedisBackend, "_set_with_state", _set_with_state)
    setattr(RedisBackend, "_set", _set)


def _script_reads_results(backend: Any) -> bool:
    """Whether the end script can read a stored result's status: JSON, uncompressed
    (``compression`` is Celery 5.7's ``result_compression``)."""
    return getattr(backend, "serializer", None) == "json" and not getattr(backend, "compression", None)


def _raw_key(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


def _measure(backend: Any, key: Any, value: Any, state: str) -> StoredResult:
    ttl = stored_ttl_s(backend, state)
    return StoredResult(_raw_key(key), state, _byte_length(value), time.time() + ttl if ttl else None, round(ttl) if ttl else None)
