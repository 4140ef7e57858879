"""Progress: writing it (``report_progress``) and reading any shape of it (``normalize_progress``).

Written meta is compatible with celery-progress (``current``, ``total``, ``percent``,
``description``) plus ``message`` and a worker-side ``updated_at``. Reading accepts ours,
celery-progress's and the ``{current, total, percentage, message, timestamp}`` shape, and
every correction it makes is listed in ``Progress.issues``. It never raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from celery import Task

from celery_ext.status import Progress

__all__ = ["PROGRESS_STATE", "report_progress", "progress_meta", "normalize_progress"]

PROGRESS_STATE = "PROGRESS"
MESSAGE_MAX = 500

_CURRENT_KEYS = ("current", "done", "completed", "n")
_TOTAL_KEYS = ("total", "count", "of")
_PERCENT_KEYS = ("percent", "percentage", "pct")
_MESSAGE_KEYS = ("message", "description", "status", "msg")
_TIME_KEYS = ("updated_at", "timestamp", "time")


def progress_meta(current: float, total: float | None = None, message: str | None = None) -> dict[str, Any]:
    """The PROGRESS meta ``report_progress`` writes (also usable with ``update_state``)."""
    # No total: celery-progress's own shape for "unknown total" (total 0, percent 0), which
    # its JS draws as an empty bar and its GroupProgress can add up; readers here read it
    # back as "no total, no percent".
    percent = 0.0
    if total:
        percent = round(max(0.0, min(100.0, 100.0 * current / total)), 2)
    return {
        "pending": False,
        "current": current,
        "total": total or 0,
        "percent": percent,
        "description": message,  # celery-progress reads this key
        "message": message,
        "updated_at": datetime.now(timezone.utc).isoformat(),
    }


def report_progress(
    task: Task, current: float, total: float | None = None, message: str | None = None
) -> None:
    """Store a PROGRESS state for the running ``task`` (and publish it to waiters).

    Call it from inside a bound task (``@app.task(bind=True)``) as
    ``report_progress(self, 3, 10, "resizing images")``.
    """
    from celery_ext.receivers import keep_last_progress

    meta = progress_meta(current, total, message)
    task.update_state(state=PROGRESS_STATE, meta=meta)
    keep_last_progress(task, meta)


def normalize_progress(meta: Any, message_max: int = MESSAGE_MAX) -> Progress:
    """Read progress from any meta value; coerce, clamp and list every correction."""
    issues: list[str] = []
    if not isinstance(meta, Mapping):
        issues.append(f"progress meta is {type(meta).__name__}, not an object; ignored")
        return Progress(None, None, None, None, None, tuple(issues))

    current = _number(meta, _CURRENT_KEYS, "current", issues)
    total = _number(meta, _TOTAL_KEYS, "total", issues)
    percent = _number(meta, _PERCENT_KEYS, "percent", issues)

    if total == 0:
        # celery-progress's "unknown total" (its own recorder writes total 0, percent 0; a
        # negative total was set to 0 above, with an issue): not a correction in itself.
        # Its percent 0 is then a placeholder, not a reading.
        total = None
        if percent == 0:
            percent = None
    if current is not None and total is not None and current > total:
        issues.append(f"current {current:g} is above total {total:g}; capped")
        current = total

    computed = None if current is None or total is None else 100.0 * current / total
    if percent is None:
        if computed is not None:
            percent = computed
    elif percent > 100:
        issues.append(f"percent {percent:g} is above 100; " + ("recomputed" if computed is not None else "capped"))
        percent = computed if computed is not None else 100.0
    elif computed is not None and abs(percent - computed) > 1.0:
        issues.append(f"percent {percent:g} disagrees with current/total ({computed:.2f}); recomputed")
        percent = computed
    if percent is not None:
        percent = round(percent, 2)

    message = _message(meta, issues, message_max)
    updated_at = _timestamp(meta, issues)
    return Progress(current, total, percent, message, updated_at, tuple(issues))


def _first(meta: Mapping[Any, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in meta and meta[key] is not None:
            return key, meta[key]
    return None, None


def _number(meta: Mapping[Any, Any], keys: tuple[str, ...], label: str, issues: list[str]) -> float | None:
    key, raw = _first(meta, keys)
    if key is None:
        return None
    value: float
    if isinstance(raw, bool):
        issues.append(f"{label} is a boolean; ignored")
        return None
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:  # an int beyond any float (10**400)
            issues.append(f"{label} is an integer of {len(str(abs(raw)))} digits, beyond any float; ignored")
            return None
    elif isinstance(raw, str):
        try:
            value = float(raw.strip().rstrip("%"))
        except ValueError:
            issues.append(f"{label} {_short(raw)!r} is not a number; ignored")
            return None
        issues.append(f"{label} was the string {_short(raw)!r}; parsed")
    else:
        issues.append(f"{label} is {type(raw).__name__}, not a number; ignored")
        return None
    if not math.isfinite(value):
        issues.append(f"{label} is {value}; ignored")
        return None
    if value < 0:
        issues.append(f"{label} {value:g} is negative; set to 0")
        value = 0.0
    if key != keys[0]:
        issues.append(f"{label} read from {key!r}")
    return value


def _message(meta: Mapping[Any, Any], issues: list[str], limit: int) -> str | None:
    key, raw = _first(meta, _MESSAGE_KEYS)
    if key is None:
        return None
    if not isinstance(raw, str):
        issues.append(f"message is {type(raw).__name__}, not text; converted")
        try:
            raw = str(raw)
        except Exception:
            return None
    if len(raw) > limit:
        issues.append(f"message was {len(raw)} characters; cut to {limit}")
        raw = raw[:limit]
    return raw


def _timestamp(meta: Mapping[Any, Any], issues: list[str]) -> str | None:
    key, raw = _first(meta, _TIME_KEYS)
    if key is None:
        return None  # never "now": an unknown time stays unknown
    try:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return datetime.fromtimestamp(float(raw), timezone.utc).isoformat()
        if isinstance(raw, str):
            parsed = datetime.fromisoformat(raw)
            if parsed.tzinfo is None:
                issues.append("updated_at has no UTC offset; read as UTC")
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.isoformat()
    except (ValueError, OverflowError, OSError):
        pass
    issues.append(f"updated_at {_short(raw)!r} is not a time; ignored")
    return None


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:40]
