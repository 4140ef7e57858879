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
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery import states

__all__ = ["StoredResult", "wrap_redis_backend", "take_stored", "stored_ttl_s"]


@dataclass(frozen=True)
class StoredResult:
    key: bytes
    state: str
    nbytes: int
    #: Epoch seconds when the stored result expires; None: it never does.
    expires_at: float | None
    #: The TTL Celery gave it, in seconds: the backend's own ``expires``, which a task with
    #: its own backend may set apart from the app's ``result_expires``; None: no TTL.
    ttl_s: int | None = None


_note = threading.local()


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


def wrap_redis_backend() -> None:
    """Measure every result the Redis backend stores (once per process; idempotent)."""
    from celery.backends.redis import RedisBackend

    original = RedisBackend._set_with_state
    if getattr(original, "_fileintel_measures", False):
        return

    @functools.wraps(original)
    def _set_with_state(self: Any, key: Any, value: Any, state: str) -> Any:
        result = original(self, key, value, state)
        try:
            ttl = stored_ttl_s(self, state)
            raw_key = key if isinstance(key, bytes) else str(key).encode()
            _note.stored = StoredResult(
                raw_key, state, _byte_length(value), time.time() + ttl if ttl else None, round(ttl) if ttl else None
            )
        except Exception:  # pragma: no cover - a measurement never breaks a store
            _note.stored = None
        return result

    setattr(_set_with_state, "_fileintel_measures", True)
    setattr(RedisBackend, "_set_with_state", _set_with_state)
