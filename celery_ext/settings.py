"""Every ``fileintel_*`` setting, its default and what it does, read once from ``app.conf``.

Set them like any Celery setting (``app.conf.fileintel_record_ttl = ...``, a config module,
or ``app.config_from_object``). ``install(app)`` registers the defaults, so
``app.conf.fileintel_*`` always has a value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from celery import Celery

__all__ = ["FileIntelSettings", "DEFAULTS", "get_settings", "result_expires_seconds"]

ResultPolicy = Literal["sanitize", "warn", "fail"]
SizePolicy = Literal["store", "fail"]

MIB = 1024 * 1024
DAY = 24 * 3600


@dataclass(frozen=True)
class FileIntelSettings:
    """The resolved settings. Field ``x`` is read from ``app.conf.fileintel_x``."""

    #: Results whose stored payload is larger than this are never loaded into memory
    #: by readers: ``result`` is null with reason ``too_large`` (download them instead).
    max_result_bytes: int = 10 * MIB
    #: How long (seconds) a task record is kept. Never shorter than the result TTL plus a day,
    #: so an expired result can still be explained.
    record_ttl: int = 7 * DAY
    #: Record ``queued_at`` when a producer that called ``install(app)`` sends a task,
    #: so a queued task is told apart from an unknown id. Costs one Redis command per send.
    track_sent: bool = True
    #: Where task records live when the result backend is not Redis. ``None``: the backend URL
    #: if it is Redis, else the broker URL if it is Redis, else records are off.
    redis_url: str | None = None
    #: FileIntelTask only: what to do with a return value JSON cannot hold.
    #: ``sanitize`` stores a JSON-safe copy with placeholders, ``warn`` stores it as is and
    #: logs, ``fail`` raises ``ResultNotSerializable`` naming the path.
    result_policy: ResultPolicy = "sanitize"
    #: FileIntelTask only: ``store`` keeps results above max_result_bytes intact and logs their
    #: size; ``fail`` raises ``ResultTooLarge`` instead.
    result_size_policy: SizePolicy = "store"
    #: Warn (CLI, Flower) when a stored result expires within this many seconds.
    expiry_warning: int = 600
    #: Default ``--timeout`` (seconds) of ``celery fileintel wait`` and ``result --wait``.
    wait_timeout: float = 300.0
    #: Socket timeout (seconds) of the worker's record writes: a slow Redis never stalls a task.
    record_write_timeout: float = 0.5
    #: Connect and read timeout (seconds) of every reader's Redis call (describe, the CLI,
    #: Flower): a Redis that accepts connections and never answers gives BackendUnavailable
    #: (exit 69, HTTP 503) after this long instead of hanging.
    read_timeout: float = 5.0
    #: Longest progress message kept; longer ones are cut and the cut is listed in ``issues``.
    progress_message_max: int = 500
    #: A running task reads ``lost`` once the worker running it has given no sign of life
    #: (a liveness beat from a thread of its own, every ``lost_after / 6`` s) for this long.
    lost_after: float = 60.0
    #: Flower's board flags a running task "no progress for N s" once its last progress report
    #: is older than this many seconds (a task that never reported progress is not flagged).
    stalled_after: float = 60.0
    #: How much of a failure's traceback its record keeps (head and tail, in characters),
    #: so it can be read after the result has expired.
    traceback_max: int = 4096
    #: Let readers (the CLI, Flower) decode results stored as pickle. Off by default: loading
    #: pickle runs code from the store, and viewing a task must not be a way to run code.
    decode_pickle: bool = False
    #: A task still queued this many seconds after it was sent is "stuck": Flower's board lists
    #: it (oldest first, with its queue and whether a live worker consumes that queue) and its
    #: page warns. Needs producers that called ``install(app)`` (they record the send).
    stuck_after: float = 300.0


DEFAULTS: dict[str, Any] = {
    f"fileintel_{f.name}": f.default for f in fields(FileIntelSettings)
}


def get_settings(app: Celery) -> FileIntelSettings:
    """Read every ``fileintel_*`` setting from ``app.conf`` (defaults where unset)."""
    conf = app.conf
    values: dict[str, Any] = {}
    for f in fields(FileIntelSettings):
        value = conf.get(f"fileintel_{f.name}", None)
        values[f.name] = f.default if value is None and f.name != "redis_url" else value
    settings = FileIntelSettings(**values)
    _validate(settings)
    return settings


def _validate(settings: FileIntelSettings) -> None:
    if settings.result_policy not in ("sanitize", "warn", "fail"):
        raise ValueError(
            f"fileintel_result_policy must be 'sanitize', 'warn' or 'fail', not {settings.result_policy!r}"
        )
    if settings.result_size_policy not in ("store", "fail"):
        raise ValueError(
            f"fileintel_result_size_policy must be 'store' or 'fail', not {settings.result_size_policy!r}"
        )
    positive = {
        "max_result_bytes": "a number of bytes",
        "record_ttl": "a number of seconds",
        "wait_timeout": "a number of seconds",
        "record_write_timeout": "a number of seconds",
        "read_timeout": "a number of seconds",
        "progress_message_max": "a number of characters",
        "lost_after": "a number of seconds",
        "stalled_after": "a number of seconds",
        "traceback_max": "a number of characters",
        "stuck_after": "a number of seconds",
    }
    if isinstance(settings.expiry_warning, bool) or not isinstance(settings.expiry_warning, (int, float)) \
            or not settings.expiry_warning >= 0:
        raise ValueError(f"fileintel_expiry_warning must be a number of seconds >= 0, not {settings.expiry_warning!r}")
    for name, unit in positive.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"fileintel_{name} must be {unit} > 0, not {value!r}")


def result_expires_seconds(app: Celery) -> int | None:
    """``result_expires`` in seconds, or None when results never expire (None or 0)."""
    expires = app.conf.result_expires
    if expires is None:
        return None
    seconds = int(expires.total_seconds()) if hasattr(expires, "total_seconds") else int(expires)
    return seconds or None


def effective_record_ttl(app: Celery, settings: FileIntelSettings) -> int:
    """The record TTL: ``record_ttl``, but never shorter than the result TTL plus a day."""
    result_ttl = result_expires_seconds(app) or 0
    return max(settings.record_ttl, result_ttl + DAY)
