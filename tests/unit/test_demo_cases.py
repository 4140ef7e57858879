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


# -- how long results live, and what is said once the demo stopped -----------------------------


def _demo_app(monkeypatch: Any) -> Any:
    """The demo app module, configured as the running demo configures it (no Redis is
    contacted: Celery connects on first use)."""
    import importlib

    monkeypatch.setenv("FILEINTEL_DEMO_REDIS_URL", "redis://127.0.0.1:1/0")
    return importlib.import_module("fileintel_demo.app")


def test_showcase_results_live_30_minutes_and_only_the_expiring_case_is_short(monkeypatch: Any) -> None:
    demo = _demo_app(monkeypatch)
    assert demo.app.conf.result_expires >= 30 * 60
    short = demo.quick_sum.backend
    assert short.expires == demo.RESULT_EXPIRES < 30 * 60
    # Same Redis keys as every other result: readers find it where they look.
    assert short.task_keyprefix == demo.app.backend.task_keyprefix
    others = [t for name, t in demo.app.tasks.items() if name.startswith("demo.") and name != "demo.quick_sum"]
    assert others and all(t.backend.expires >= 30 * 60 for t in others)


def test_the_expiring_case_sends_the_short_lived_task() -> None:
    from fileintel_demo.cases import CASES

    sent: list[str] = []

    class FakeTask:
        def __init__(self, name: str) -> None:
            self.name = name

        def delay(self, *args: Any) -> None:
            sent.append(self.name)

        def apply_async(self, **kwargs: Any) -> None:
            sent.append(self.name)

    class FakeDemo:
        NOBODY_QUEUE = "nobody"

        def __getattr__(self, name: str) -> FakeTask:
            return FakeTask(name)

    by_key = {c.key: c for c in CASES}
    by_key["expiring"].send(FakeDemo(), False)
    assert sent == ["quick_sum"]
    for key in set(by_key) - {"expiring"}:
        by_key[key].send(FakeDemo(), False)
    assert sent.count("quick_sum") == 1


def test_with_no_demo_running_its_commands_say_so_instead_of_reading_another_redis(
    monkeypatch: Any, tmp_path: Any, capsys: Any
) -> None:
    import os

    import pytest

    demo = _demo_app(monkeypatch)
    monkeypatch.delenv("FILEINTEL_DEMO_REDIS_URL")
    monkeypatch.delenv("FILEINTEL_DEMO_KEY_PREFIX", raising=False)
    state = tmp_path / "demo-state.json"
    monkeypatch.setenv("FILEINTEL_DEMO_STATE_FILE", str(state))
    with pytest.raises(SystemExit) as stopped:
        demo._config()
    assert stopped.value.code == 69
    assert "demo is not running (any more)" in capsys.readouterr().err

    # A running demo's state file: its Redis and prefix are used.
    state.write_text(f'{{"pid": {os.getpid()}, "redis_url": "redis://127.0.0.1:7/0", "key_prefix": "p:"}}')
    assert demo._config() == ("redis://127.0.0.1:7/0", "p:")


def test_after_the_demo_stopped_it_says_its_commands_no_longer_answer() -> None:
    from types import SimpleNamespace

    from fileintel_demo.report import print_stopped

    said: list[str] = []
    demo: Any = SimpleNamespace(
        flower_url="http://127.0.0.1:5555", external_redis=False, options=SimpleNamespace(keep_data=False),
        echo=said.append,
    )
    print_stopped(demo)
    assert len(said) == 1 and "The demo is not running any more" in said[0]
    assert "fileintel_demo.app fileintel" in said[0]

    said.clear()
    print_stopped(SimpleNamespace(**{**vars(demo), "flower_url": ""}))  # never started: nothing printed to try
    assert said == []
