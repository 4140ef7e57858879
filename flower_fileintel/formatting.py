"""How the pages write numbers and times, and when a running task counts as stalled.

Sizes and durations use the CLI's own wording (``celery_ext.cli.text``), so "4.2 MiB" and
"2 min 30 s" read the same in a terminal and in the browser. ``fileintel.js`` mirrors these
functions for what it updates live; the browser tests hold both to the same examples.
Everything that depends on the clock takes ``now``: tests pass a fixed one.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from celery_ext.cli.text import duration_text, size_text
from celery_ext.settings import FileIntelSettings

__all__ = [
    "STALLED_AFTER_S",
    "size_text",
    "duration_text",
    "percent_text",
    "absolute_text",
    "relative_text",
    "runtime_of",
    "elapsed_s",
    "stalled_for_s",
]

#: A running task whose last progress report is older than this is flagged "no progress for
#: N s" on the board (a task that never reported progress is not flagged: many never do).
#: The default of the ``fileintel_stalled_after`` setting, which the board uses.
STALLED_AFTER_S = FileIntelSettings.stalled_after


def percent_text(percent: float | None) -> str:
    """Whole percents, rounded down so that 99.6 % never reads as done: ``"18 %"``."""
    if percent is None or not math.isfinite(percent):
        return "—"
    return f"{int(max(0.0, min(100.0, percent)) // 1)} %"


def absolute_text(moment: datetime | None) -> str:
    """``2026-12-03 10:31:02 UTC`` (no microseconds), or a dash."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative_text(moment: datetime | None, now: datetime) -> str:
    """``"3 min ago"``, ``"in 27 min"``, ``"just now"`` (within a second), or a dash."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "just now"
    span = duration_text(round(abs(delta)))
    return f"in {span}" if delta > 0 else f"{span} ago"


def runtime_of(
    runtime_s: float | None, started_at: datetime | None, completed_at: datetime | None
) -> float | None:
    """The runtime the record gives, else (a revoked task has none) completed - started."""
    if runtime_s is not None:
        return runtime_s
    if started_at is None or completed_at is None:
        return None
    span = (completed_at - started_at).total_seconds()
    return span if span >= 0 else None


def elapsed_s(started_at: datetime | None, now: datetime) -> float | None:
    """How long a running task has run, or None when its start is not known."""
    if started_at is None:
        return None
    return max(0.0, (now - started_at).total_seconds())


def stalled_for_s(
    progress_updated_at: datetime | None, now: datetime, threshold: float = STALLED_AFTER_S
) -> float | None:
    """Seconds since the last progress report when that is more than ``threshold``; None
    when the task is not stalled (or never reported progress)."""
    if progress_updated_at is None:
        return None
    age = (now - progress_updated_at).total_seconds()
    return age if age > threshold else None
