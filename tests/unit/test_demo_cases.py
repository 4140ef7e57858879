"""How the demo judges each case, on hand-built statuses (no processes, no Redis)."""

from __future__ import annotations

from typing import Any

# -- the case judging, without processes ---------------------------------------------------


def _status(phase: str, **kwargs: Any) -> Any:
    from celery_ext.status import Phase, TaskStatus

    return TaskStatus(task_id="5a1b0c3e-0000-4000-8000-000000000000", phase=Phase(phase), state=None, **kwargs)


def _run(key: str, **kwargs: Any) -> Any:
    from fileintel_demo.cases import CASES, CaseRun

    spec = next(c for c in CASES if c.key == key)
    return CaseRun(spec, "5a1b0c3e-0000-4000-8000-000000000000", **kwargs)


def test_expiring_case_needs_the_warning_then_the_expiry() -> None:
    run = _run("expiring", wait_for_expiry=True)
    run.observe(_status("succeeded", result_available=True, expires_in_s=14.0), warning_s=7)
    assert not run.done
    run.observe(_status("succeeded", result_available=True, expires_in_s=5.0), warning_s=7)
    assert run.warning_seen and not run.done
    run.observe(_status("succeeded", expired=True), warning_s=7)
    assert run.done and run.ok


def test_progress_case_fails_without_progress_seen() -> None:
    from celery_ext.status import Progress

    quiet = _run("progress")
    quiet.observe(_status("succeeded", result_available=True), warning_s=7)
    assert quiet.done and not quiet.ok

    chatty = _run("progress")
    chatty.observe(_status("running", progress=Progress(1, 8, 12.5, "resizing", None)), warning_s=7)
    chatty.observe(_status("succeeded", result_available=True), warning_s=7)
    assert chatty.done and chatty.ok


def test_placeholders_case_waits_briefly_for_the_record() -> None:
    from celery_ext.status import Placeholder, ResultInfo

    run = _run("placeholders")
    run.observe(_status("succeeded", result_available=True), warning_s=7)
    assert not run.done  # the record listing placeholders is written just after the result
    listed = ResultInfo(bytes=10, inline=True, placeholders=(Placeholder("$.tags", "set", "{'a'}"),))
    run.observe(_status("succeeded", result_available=True, result_info=listed), warning_s=7)
    assert run.done and run.ok


def test_revoked_case_is_revoked_once_it_runs() -> None:
    run = _run("revoked")
    run.observe(_status("queued"), warning_s=7)
    assert not run.wants_revoke()
    run.observe(_status("running"), warning_s=7)
    assert run.wants_revoke()
    run.revoke_sent = True
    assert not run.wants_revoke()
