"""The demo cases: what each sends, what it must reach, and how a status is shown.

One ``CaseRun`` per task sent. ``observe()`` is fed each fresh ``TaskStatus`` and decides
when the case has reached what it demonstrates (``done``) and whether it showed what it
should (``ok``). The runner does the I/O; this module only decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.result import AsyncResult

from celery_ext.status import Outcome, Phase, TaskStatus

__all__ = ["CaseSpec", "CaseRun", "CASES", "CASE_KEYS", "status_line", "REVOKE_AFTER_S"]

#: How long after a task finished its record may still be on its way.
RECORD_GRACE_S = 5.0
#: The revoke case is revoked once it runs, or after this many seconds at the latest.
REVOKE_AFTER_S = 8.0


@dataclass(frozen=True)
class CaseSpec:
    key: str
    title: str
    #: What the case reaches, as the summary shows it.
    expected: str
    #: Sends the task; gets the demo app module and whether this is a quick (scripted) run.
    send: Callable[[Any, bool], AsyncResult]
    #: Another ``celery fileintel`` command worth trying on it (``{id}`` is the task id).
    also: str | None = None


def _send_progress(demo: Any, quick: bool) -> AsyncResult:
    images, delay = (8, 0.4) if quick else (60, 1.0)
    return demo.resize_images.delay(images, delay)


def _send_failure(demo: Any, quick: bool) -> AsyncResult:
    rows = ["1001,ACME,2026-01-03,120.00", "1002,Globex,2026-01-04,99.50", "1003,Initech;2026-01-05;18.25"]
    return demo.import_invoices.delay(rows)


def _send_placeholders(demo: Any, quick: bool) -> AsyncResult:
    return demo.build_manifest.delay()


def _send_download(demo: Any, quick: bool) -> AsyncResult:
    return demo.export_table.delay(10_000)


def _send_expiring(demo: Any, quick: bool) -> AsyncResult:
    return demo.quick_sum.delay(list(range(1, 11)))


def _send_queued(demo: Any, quick: bool) -> AsyncResult:
    return demo.nightly_report.apply_async(queue=demo.NOBODY_QUEUE)


def _send_revoked(demo: Any, quick: bool) -> AsyncResult:
    return demo.long_export.delay(300)


def _send_html(demo: Any, quick: bool) -> AsyncResult:
    return demo.render_comment.delay()


CASES: tuple[CaseSpec, ...] = (
    CaseSpec("progress", "long task reporting progress", "running with progress, then succeeded", _send_progress,
             also="wait {id}"),
    CaseSpec("failure", "fails with a traceback", "failed, with traceback", _send_failure),
    CaseSpec("placeholders", "non-JSON return value", "succeeded, with placeholders", _send_placeholders),
    CaseSpec("download", "1 MB result (above the 256 KiB inline limit)", "succeeded, too large: download", _send_download,
             also="result {id} --output export.json"),
    CaseSpec("expiring", "result that expires while you watch", "succeeded, then expired", _send_expiring),
    CaseSpec("queued", "on a queue no worker consumes", "queued", _send_queued),
    CaseSpec("revoked", "revoked while running", "revoked", _send_revoked),
    CaseSpec("html", "result with HTML in it", "succeeded, HTML shown as text", _send_html),
)
CASE_KEYS = tuple(c.key for c in CASES)

HTML_MARKER = "<script>alert(1)</script>"


@dataclass
class CaseRun:
    """One sent demo task and what has been seen of it."""

    spec: CaseSpec
    task_id: str
    #: In a scripted run the expiring case waits for its result to expire.
    wait_for_expiry: bool = False
    sent_at: float = field(default_factory=time.monotonic)
    phases: list[str] = field(default_factory=list)
    progress_seen: bool = False
    warning_seen: bool = False
    revoke_sent: bool = False
    #: When a finished phase was first seen (records are written just after the result).
    finished_at: float | None = None
    done: bool = False
    ok: bool = False
    detail: str = ""
    last_line: str = ""
    last_status: TaskStatus | None = None
    #: None until checked; then "ok" or what Flower got wrong.
    flower: str | None = None

    @property
    def reached(self) -> str:
        status = self.last_status
        if status is None:
            return "-"
        return f"{status.phase.value}{' (expired)' if status.expired else ''}"

    def wants_revoke(self) -> bool:
        """True when the runner should revoke this task now."""
        if self.spec.key != "revoked" or self.revoke_sent or self.last_status is None:
            return False
        if self.last_status.phase.finished:
            return False
        return self.last_status.phase is Phase.RUNNING or time.monotonic() - self.sent_at > REVOKE_AFTER_S

    def observe(self, status: TaskStatus, warning_s: float) -> None:
        """Take a new status; set ``done``/``ok``/``detail`` once the case showed its point."""
        self.last_status = status
        if not self.phases or self.phases[-1] != status.phase.value:
            self.phases.append(status.phase.value)
        if status.phase is Phase.RUNNING and status.progress is not None:
            if status.progress.percent is not None and status.progress.message:
                self.progress_seen = True
        if status.result_available and status.expires_in_s is not None and status.expires_in_s <= warning_s:
            self.warning_seen = True
        if status.phase.finished and self.finished_at is None:
            self.finished_at = time.monotonic()
        if self.done:
            return
        verdict = _JUDGES[self.spec.key](self, status)
        if verdict is not None:
            self.done = True
            self.ok, self.detail = verdict



Verdict = tuple[bool, str] | None  # None: not decided yet, keep watching
Judge = Callable[[CaseRun, TaskStatus], Verdict]


def _once_ended(expected: Phase) -> Callable[[Judge], Judge]:
    """A judge that waits until the task has finished and fails it unless it ended
    ``expected``; the decorated judge only looks at tasks that did."""

    def decorate(judge: Judge) -> Judge:
        def judged(run: CaseRun, s: TaskStatus) -> Verdict:
            if not s.phase.finished:
                return None
            if s.phase is not expected:
                return False, f"ended {s.phase.value}, expected {expected.value}"
            return judge(run, s)

        return judged

    return decorate


@_once_ended(Phase.SUCCEEDED)
def _judge_progress(run: CaseRun, s: TaskStatus) -> Verdict:
    if not run.progress_seen:
        return False, "succeeded, but no progress with a message was seen while it ran"
    return True, f"progress seen while running; succeeded ({_fmt_result(s)})"


@_once_ended(Phase.FAILED)
def _judge_failure(run: CaseRun, s: TaskStatus) -> Verdict:
    if s.error is None:
        return False, "failed, but no error details were reported"
    if not s.error.traceback or "Traceback" not in s.error.traceback:
        return False, f"failed ({s.error.type}) but without a traceback"
    return True, f"{s.error.type}: {s.error.message[:60]}"


@_once_ended(Phase.SUCCEEDED)
def _judge_placeholders(run: CaseRun, s: TaskStatus) -> Verdict:
    paths = [p.path for p in s.result_info.placeholders]
    if not paths and _within(run, RECORD_GRACE_S):
        return None  # the worker writes the record (which lists them) just after the result
    if not paths:
        return False, "succeeded, but no placeholders were listed"
    return True, f"{len(paths)} placeholders: {', '.join(paths[:4])}"


@_once_ended(Phase.SUCCEEDED)
def _judge_download(run: CaseRun, s: TaskStatus) -> Verdict:
    if s.outcome is not Outcome.TOO_LARGE:
        return False, f"succeeded, but its outcome is {s.outcome.value}, expected too_large"
    return True, f"{s.result_info.bytes} bytes stored, offered as a download"


def _judge_expiring(run: CaseRun, s: TaskStatus) -> Verdict:
    if s.phase.finished and s.phase is not Phase.SUCCEEDED:
        return False, f"ended {s.phase.value}, expected succeeded"
    if s.phase is not Phase.SUCCEEDED:
        return None
    if not run.wait_for_expiry:
        return True, f"succeeded; its result expires in {_secs(s.expires_in_s)}"
    if not s.expired:
        return None
    warned = "after an expiry warning" if run.warning_seen else "(no warning was seen)"
    return run.warning_seen, f"succeeded, then expired {warned}"


def _judge_queued(run: CaseRun, s: TaskStatus) -> Verdict:
    if s.phase is Phase.QUEUED:
        return True, "queued, nobody consumes its queue"
    if s.phase is Phase.UNKNOWN:
        return None
    return False, f"{s.phase.value}, expected queued"


@_once_ended(Phase.REVOKED)
def _judge_revoked(run: CaseRun, s: TaskStatus) -> Verdict:
    why = s.error.message if s.error else ""
    return True, f"revoked{f' ({why})' if why else ''}"


@_once_ended(Phase.SUCCEEDED)
def _judge_html(run: CaseRun, s: TaskStatus) -> Verdict:
    result = s.result if isinstance(s.result, dict) else {}
    if result.get("comment") != HTML_MARKER:
        return False, "succeeded, but the HTML text did not come back unchanged"
    return True, "HTML-like text kept as text"


_JUDGES: dict[str, Judge] = {
    "progress": _judge_progress,
    "failure": _judge_failure,
    "placeholders": _judge_placeholders,
    "download": _judge_download,
    "expiring": _judge_expiring,
    "queued": _judge_queued,
    "revoked": _judge_revoked,
    "html": _judge_html,
}


def _within(run: CaseRun, seconds: float) -> bool:
    return run.finished_at is not None and time.monotonic() - run.finished_at < seconds


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _fmt_result(s: TaskStatus) -> str:
    text = repr(s.result)
    return text if len(text) <= 60 else text[:57] + "..."


def status_line(s: TaskStatus, warning_s: float) -> str:
    """One short line about a status, for the running log (changes only are printed)."""
    parts = [s.phase.value]
    if s.progress is not None and s.progress.percent is not None:
        # In 25 % steps, so the log shows movement without a line per update.
        step = int(s.progress.percent // 25 * 25)
        parts.append(f"{step}%+" if step < 100 else "100%")
    if s.error is not None:
        message = s.error.message if len(s.error.message) <= 70 else s.error.message[:67] + "..."
        parts.append(f"{s.error.type}: {message}")
    if s.result_info.placeholders:
        parts.append(f"{len(s.result_info.placeholders)} placeholders")
    if s.outcome is Outcome.TOO_LARGE:
        parts.append(f"{s.result_info.bytes} bytes: download it")
    if s.expired:
        parts.append("result expired")
    elif s.phase is Phase.SUCCEEDED and s.result_available and s.expires_in_s is not None:
        if s.expires_in_s <= warning_s:
            parts.append(f"expiry warning: result expires within {warning_s:.0f} s")
        else:
            parts.append("result stored")
    return ", ".join(parts)
