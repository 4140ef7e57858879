"""How a task reads in one line or a summary: phase, progress, result, sizes, times."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from celery_ext.status import Progress, TaskStatus




# --------------------------------------------------------------------------------------------
# formatting (pure functions, unit-tested with CliRunner and directly)


def summary(task: TaskStatus, app: Celery | None = None) -> str:
    """The human ``status`` summary: aligned ``label  value`` lines."""
    rows: list[tuple[str, str]] = [("task", task.task_id), ("phase", phase_text(task))]
    if task.name:
        rows.append(("name", task.name))
    if task.worker:
        rows.append(("worker", task.worker))
    if task.retries:
        rows.append(("retries", str(task.retries)))
    for label, value in (
        ("queued", task.queued_at),
        ("started", task.started_at),
        ("completed", task.completed_at),
    ):
        if value is not None:
            rows.append((label, when_text(value, relative=True)))
    if task.runtime_s is not None:
        rows.append(("runtime", duration_text(task.runtime_s)))
    if task.progress is not None:
        rows.append(("progress", progress_text(task.progress)))
    rows.append(("result", result_text(task)))
    if task.error is not None:
        rows.append(("error", f"{task.error.type}: {task.error.message}"))
        if task.error.traceback:
            rows.append(("traceback", task.error.traceback.rstrip()))
    for note in task.notes:
        rows.append(("note", note))
    width = max(len(label) for label, _ in rows)
    indent = "\n" + " " * (width + 2)  # a multi-line value (the traceback) stays in its column
    return "\n".join(f"{label:<{width}}  {value.replace(chr(10), indent)}" for label, value in rows)


def one_line(task: TaskStatus) -> str:
    """``task_id<TAB>phase<TAB>detail``: one line a shell loop can ``read``."""
    detail = phase_text(task) if task.state is not None else "no stored result and no record"
    if task.progress is not None and not task.phase.finished:
        detail += f" {progress_text(task.progress)}"
    if task.error is not None:
        detail += f" {task.error.type}: {task.error.message}"
    elif task.phase.finished and task.runtime_s is not None:
        detail += f" in {duration_text(task.runtime_s)}"
    return f"{task.task_id}\t{task.phase.value}\t{single_line(detail)}"


def update_line(task: TaskStatus, *, clock: bool = True) -> str:
    """A progress line for stderr: ``10:31:02 <id> running (PROGRESS) 40% (4/10) step 4``."""
    import time

    task_id, phase, detail = one_line(task).split("\t", 2)
    if not detail.startswith(phase):
        detail = f"{phase}: {detail}"
    line = f"{task_id} {detail}"
    return f"{time.strftime('%H:%M:%S')} {line}" if clock else line


def single_line(text: str) -> str:
    return " ".join(text.split())


# The raw state each phase usually has; any other state is shown beside the phase.
USUAL_STATE = {
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "revoked": "REVOKED",
    "retrying": "RETRY",
    "queued": "PENDING",
}


def phase_text(task: TaskStatus) -> str:
    phase = task.phase.value
    if task.state and task.state != USUAL_STATE.get(phase):
        return f"{phase} ({task.state})"
    return phase


def progress_text(progress: Progress | None) -> str:
    if progress is None:
        return "-"
    parts = []
    if progress.percent is not None:
        parts.append(f"{progress.percent:.0f}%")
    if progress.current is not None and progress.total is not None:
        parts.append(f"({num(progress.current)}/{num(progress.total)})")
    elif progress.current is not None:
        parts.append(f"({num(progress.current)} done)")
    if progress.message:
        parts.append(single_line(progress.message))
    return " ".join(parts) or "started, no figures reported"


def result_text(task: TaskStatus) -> str:
    from celery_ext.status import Outcome

    info = task.result_info
    size = f", {size_text(info.bytes)}" if info.bytes is not None else ""
    outcome = task.outcome
    if outcome is Outcome.EXPIRED:
        # When it expired is the note's to say (an expired task always has one): said once.
        return f"expired{size}"
    if outcome is Outcome.EVICTED:
        return f"gone before its expiry (deleted or evicted){size}"
    if task.result_available and outcome in (Outcome.OK, Outcome.TOO_LARGE):
        expiry = ""
        if task.result_expires_at is not None:
            expiry = f", expires {when_text(task.result_expires_at, relative=True)}"
        elif task.phase.finished:
            expiry = ", never expires"
        extra = ""
        if outcome is Outcome.TOO_LARGE:
            extra = " (too large to show; use `result --output FILE`)"
        elif info.placeholders:
            extra = f" ({len(info.placeholders)} placeholder(s))"
        return f"available{size}{expiry}{extra}"
    return OUTCOME_TEXT[outcome] + size


#: How the ``result`` line of ``status`` names an outcome without a result to show.
OUTCOME_TEXT: Mapping[str, str] = {
    "ok": "available",
    "not_ready": "not ready",
    "unknown": "unknown",
    "failed": "none (the task failed)",
    "revoked": "none (the task was revoked)",
    "lost": "none (its worker died while it ran)",
    "expired": "expired",
    "evicted": "gone before its expiry (deleted or evicted)",
    "no_result": "none stored (ignore_result, or a backend that keeps none for other clients)",
    "not_readable": "stored, but not readable by this app",
    "too_large": "too large to show",
}


def num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def size_text(nbytes: int | None) -> str:
    if nbytes is None:
        return "unknown size"
    size = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{nbytes} bytes"  # pragma: no cover


def seconds_text(seconds: float) -> str:
    """A timeout as the user typed it: ``2 s``, ``0.5 s``."""
    return f"{seconds:g} s"


def duration_text(seconds: float | None) -> str:
    """``4.2 ms``, ``1.2 s``, ``45 s``, ``2 min 30 s``, ``1 h``, ``3 h 2 min``, ``1 d``."""
    if seconds is None:
        return "unknown"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.2g} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    total = int(round(seconds))
    minutes, secs = divmod(total, 60)
    if minutes == 0 or (minutes == 1 and secs):
        return f"{total} s"
    if minutes < 120 and (minutes % 60 or secs):
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 48 and (hours % 24 or minutes):
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def when_text(value: Any, *, relative: bool = False) -> str:
    """``2026-11-28 10:31:02 UTC`` (+ `` (3 min ago)`` / `` (in 5 min)`` when relative)."""
    from datetime import datetime, timezone

    if value is None:
        return "unknown"
    moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    text: str = moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if relative:
        delta = (moment - datetime.now(timezone.utc)).total_seconds()
        text += f" (in {duration_text(delta)})" if delta >= 0 else f" ({duration_text(-delta)} ago)"
    return text
