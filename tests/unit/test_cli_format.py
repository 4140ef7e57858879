"""Unit tests of the CLI's formatting and plumbing with click's CliRunner (no Redis).

``describe``/``wait`` are replaced by functions returning hand-built ``TaskStatus`` objects:
this file checks what the CLI prints and which exit code it picks for a given status. That
the statuses are right is tests/integration/test_cli.py's job, against a real Redis and worker.
"""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import datetime, timedelta, timezone

import click
import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner

from celery_ext import cli
from celery_ext.cli import group, options, output, reporters, text
from celery_ext.status import (
    Outcome,
    Phase,
    Placeholder,
    Progress,
    ResultInfo,
    TaskError,
    TaskStatus,
)
from tests.status_checks import check_document

NOW = datetime.now(timezone.utc)
TID = "0b9f8a6e-1f6e-4a55-9d0b-2a4d3c2b1a00"


@pytest.fixture
def app():
    # Never contacted: describe/wait are replaced in every test that runs a command.
    app = Celery("unit", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")
    app.conf.result_expires = 3600
    return app


def invoke(app, *args, describe=None, wait=None, monkeypatch=None):
    if describe is not None:
        monkeypatch.setattr("celery_ext.lookup.describe", lambda _app, task_id: describe)
    if wait is not None:
        monkeypatch.setattr("celery_ext.watch.wait", wait)
    runner = CliRunner()
    return runner.invoke(cli.fileintel, list(args), obj=CLIContext(app=app, no_color=True, workdir=None))


def status(**overrides) -> TaskStatus:
    base = dict(
        task_id=TID,
        phase=Phase.SUCCEEDED,
        state="SUCCESS",
        name="proj.tasks.ocr",
        worker="celery@box",
        retries=0,
        runtime_s=1.25,
        queued_at=NOW - timedelta(seconds=5),
        started_at=NOW - timedelta(seconds=4),
        completed_at=NOW - timedelta(seconds=3),
        result_available=True,
        result_expires_at=NOW + timedelta(hours=1),
        expires_in_s=3600.0,
        result={"pages": 3},
        result_info=ResultInfo(bytes=120, inline=True),
    )
    base.update(overrides)
    return TaskStatus(**base)


RUNNING = dict(
    phase=Phase.RUNNING,
    state="PROGRESS",
    completed_at=None,
    result_available=False,
    result_expires_at=None,
    expires_in_s=None,
    result=None,
    result_info=ResultInfo(reason=Outcome.NOT_READY),
    progress=Progress(current=4, total=10, percent=40.0, message="page 4 [bold]of[/] 10", updated_at=None),
)


# --------------------------------------------------------------------------------------------
# the pieces


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0042, "4.2 ms"),
        (1.25, "1.2 s"),
        (2.0, "2 s"),
        (45, "45 s"),
        (60, "1 min"),
        (150, "2 min 30 s"),
        (3600, "1 h"),
        (3 * 3600 + 120, "3 h 2 min"),
        (86400, "1 d"),
        (None, "unknown"),
    ],
)
def test_duration(seconds, expected):
    assert text.duration_text(seconds) == expected


def test_size():
    assert text.size_text(512) == "512 bytes"
    assert text.size_text(50 * 1024 * 1024) == "50.0 MiB"
    assert text.size_text(None) == "unknown size"


def test_progress_text():
    assert text.progress_text(RUNNING["progress"]) == "40% (4/10) page 4 [bold]of[/] 10"
    assert text.progress_text(Progress(None, None, None, None, None)) == "started, no figures reported"
    assert text.progress_text(Progress(2.5, None, None, "a\nb", None)) == "(2.5 done) a b"


def test_one_line_is_tab_separated_and_single_line():
    line = text.one_line(status(**RUNNING))
    assert line.split("\t") == [TID, "running", "running (PROGRESS) 40% (4/10) page 4 [bold]of[/] 10"]
    failed = text.one_line(
        status(phase=Phase.FAILED, state="FAILURE", error=TaskError("ValueError", "builtins", "bad\ninput", None))
    )
    assert failed == f"{TID}\tfailed\tfailed ValueError: bad input"
    unknown = text.one_line(status(phase=Phase.UNKNOWN, state=None))
    assert unknown.split("\t")[1:] == ["unknown", "no stored result and no record"]


def test_summary_lists_what_is_known():
    summary = text.summary(status())
    assert summary.splitlines()[0] == f"task       {TID}"
    assert "phase      succeeded" in summary
    assert "runtime    1.2 s" in summary
    assert "result     available, 120 bytes, expires" in summary and "(in " in summary
    assert "ago)" in summary  # relative times


def test_summary_of_an_evicted_result_says_so():
    evicted = status(expired=True, result_available=False, result=None, result_info=ResultInfo(reason=Outcome.EVICTED))
    assert "result     gone before its expiry (deleted or evicted)" in text.summary(evicted)
    expired = status(
        expired=True,
        result_available=False,
        result=None,
        result_expires_at=NOW - timedelta(minutes=1),
        result_info=ResultInfo(reason=Outcome.EXPIRED),
    )
    assert "result     expired" in text.summary(expired) and "expired at" not in text.summary(expired)


def test_status_says_an_expiry_once_in_one_time_format(app, monkeypatch):
    """The summary's note says when a result expired, and its result row only that it did;
    a result expiring soon is dated in its row, and the warning on stderr does not repeat it."""
    from celery_ext.notes import fmt_time

    expired_at = NOW - timedelta(minutes=1)
    note = f"It finished at {fmt_time(NOW - timedelta(hours=1))}; its result expired at {fmt_time(expired_at)} (result_expires=3600 s)."
    expired = status(
        expired=True, result_available=False, result=None, result_expires_at=expired_at,
        result_info=ResultInfo(bytes=120, reason=Outcome.EXPIRED), notes=(note,),
    )
    result = invoke(app, "status", TID, describe=expired, monkeypatch=monkeypatch)
    assert result.exit_code == 0
    shown = text.when_text(expired_at)
    assert fmt_time(expired_at) == shown  # notes write times as the summary does
    assert (result.stdout + result.stderr).count(shown) == 1
    assert "expired" in result.stdout.split("result", 1)[1].splitlines()[0]

    soon_at = NOW + timedelta(minutes=2)
    soon = status(expires_in_s=120.0, result_expires_at=soon_at)
    result = invoke(app, "status", TID, describe=soon, monkeypatch=monkeypatch)
    assert result.exit_code == 0
    assert result.stdout.count(text.when_text(soon_at)) == 1 and text.when_text(soon_at) not in result.stderr
    assert "expires soon" in result.stderr and "--output FILE" in result.stderr
    assert "in 2 min" not in result.stderr


def test_timeout_type():
    t = options.TimeoutType()
    assert t.convert("2.5", None, None) == 2.5
    assert t.convert("0", None, None) == 0
    assert t.convert("none", None, None) == float("inf")
    for bad in ("-1", "abc", "nan"):
        with pytest.raises(click.BadParameter):
            t.convert(bad, None, None)


def test_plain_updates_escape_task_data():
    class Out:
        quiet = False
        esc = staticmethod(output.Output.esc)

        def __init__(self):
            from rich.console import Console

            self.buffer = io.StringIO()
            self.console = Console(file=self.buffer, no_color=True, soft_wrap=True)

    out = Out()
    reporters.PlainReporter(out, enabled=True).update(status(**RUNNING))
    assert "page 4 [bold]of[/] 10" in out.buffer.getvalue()  # markup printed literally


def test_the_redis_down_warning_reads_as_one_sentence_each():
    """redis-py's messages end with a period; the warning adds none of its own after it."""
    from celery_ext.errors import BackendUnavailable

    shown = io.StringIO()

    class Out(output.Output):
        def __init__(self):
            from rich.console import Console

            self.quiet = False
            self._console = Console(file=shown, no_color=True, width=400)

    error = BackendUnavailable("redis://:secret@127.0.0.1:1/0", "Error 111 connecting to 127.0.0.1:1. Connection refused.")
    Out().backend_change(error)
    text = shown.getvalue()
    assert "Connection refused. Check that Redis is running" in text and "Retrying until the deadline." in text
    assert ".." not in text and "secret" not in text


# --------------------------------------------------------------------------------------------
# commands with CliRunner


def test_status_json_is_the_document(app, monkeypatch):
    doc_status = status()
    result = invoke(app, "status", TID, "--json", describe=doc_status, monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert check_document(json.loads(result.stdout)) == doc_status.to_dict()


def test_status_exits_0_for_a_failed_task(app, monkeypatch):
    failed = status(phase=Phase.FAILED, state="FAILURE", result=None, error=TaskError("KeyError", None, "'x'", None))
    result = invoke(app, "status", TID, describe=failed, monkeypatch=monkeypatch)
    assert result.exit_code == 0
    assert "error      KeyError: 'x'" in result.stdout


def test_result_prints_compact_json_when_piped(app, monkeypatch):
    result = invoke(app, "result", TID, describe=status(), monkeypatch=monkeypatch)
    assert result.exit_code == 0
    assert result.stdout == '{"pages": 3}\n'
    assert result.stderr == ""


def test_result_warns_about_placeholders_and_soon_expiry(app, monkeypatch):
    soon = status(
        expires_in_s=120.0,
        result_expires_at=NOW + timedelta(minutes=2),
        result_info=ResultInfo(bytes=50, inline=True, placeholders=(Placeholder("$.tags", "set", "{'a'}"),)),
    )
    result = invoke(app, "result", TID, describe=soon, monkeypatch=monkeypatch)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"pages": 3}
    assert "$.tags (set)" in result.stderr
    assert "expires in 2 min" in result.stderr and "--output FILE" in result.stderr


def test_result_too_large_exits_5_naming_output(app, monkeypatch):
    big = status(result=None, result_info=ResultInfo(bytes=200 * 1024 * 1024, inline=False, reason=Outcome.TOO_LARGE))
    result = invoke(app, "result", TID, describe=big, monkeypatch=monkeypatch)
    assert result.exit_code == 5
    assert result.stdout == ""
    assert "200.0 MiB" in result.stderr and "--output FILE" in result.stderr


def test_result_of_an_ignored_result_exits_3(app, monkeypatch):
    ignored = status(result_available=False, result=None, result_info=ResultInfo(reason=Outcome.NO_RESULT))
    result = invoke(app, "result", TID, describe=ignored, monkeypatch=monkeypatch)
    assert result.exit_code == 3
    assert "ignore_result" in result.stderr


def test_result_not_ready_mentions_progress_and_wait(app, monkeypatch):
    result = invoke(app, "result", TID, describe=status(**RUNNING), monkeypatch=monkeypatch)
    assert result.exit_code == 124
    assert "40% (4/10)" in result.stderr and "--wait" in result.stderr


def test_wait_uses_the_first_non_success_in_argument_order(app, monkeypatch):
    other = "11111111-2222-3333-4444-555555555555"
    statuses = {
        TID: status(**RUNNING),
        other: status(
            task_id=other,
            phase=Phase.FAILED,
            state="FAILURE",
            error=TaskError("E", None, "m", None),
            result_info=ResultInfo(reason=Outcome.FAILED),
        ),
    }

    def fake_wait(app, ids, *, timeout, on_update=None, on_backend_change=None):
        assert timeout == 1.0
        for task_id in ids:
            on_update(statuses[task_id])
        return {task_id: statuses[task_id] for task_id in ids}

    result = invoke(app, "wait", TID, other, TID, "-t", "1", "-j", wait=fake_wait, monkeypatch=monkeypatch)
    assert result.exit_code == 124  # the running one comes first
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["task_id"] for d in docs] == [TID, other]  # duplicates once, in order
    result = invoke(app, "wait", other, TID, "-t", "1", wait=fake_wait, monkeypatch=monkeypatch)
    assert result.exit_code == 1


def test_wait_default_timeout_comes_from_settings(app, monkeypatch):
    app.conf.fileintel_wait_timeout = 7
    seen = {}

    def fake_wait(app, ids, *, timeout, on_update=None, on_backend_change=None):
        seen["timeout"] = timeout
        return {task_id: status(task_id=task_id) for task_id in ids}

    assert invoke(app, "wait", TID, wait=fake_wait, monkeypatch=monkeypatch).exit_code == 0
    assert seen["timeout"] == 7
    assert invoke(app, "wait", TID, "-t", "none", wait=fake_wait, monkeypatch=monkeypatch).exit_code == 0
    assert seen["timeout"] is None


def test_keyboard_interrupt_exits_130(app, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    result = invoke(app, "wait", TID, "-t", "5", wait=interrupted, monkeypatch=monkeypatch)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr


def test_malformed_id_is_a_usage_error(app, monkeypatch):
    def no_redis(*args, **kwargs):
        raise AssertionError("no Redis call for a malformed id")

    monkeypatch.setattr("celery_ext.lookup.describe", no_redis)
    result = invoke(app, "status", "bad*id")
    assert result.exit_code == 2
    assert "Redis would read as a pattern" in result.stderr


# --------------------------------------------------------------------------------------------
# the group: help, lazy sub-commands, a light import


@pytest.mark.parametrize("command", [[], ["status"], ["result"], ["wait"]])
def test_help_has_the_exit_code_table(app, command):
    result = invoke(app, *command, "--help")
    assert result.exit_code == 0
    for code, meaning in cli.EXIT_CODES:
        assert f"{int(code):>3}  {meaning}" in result.stdout


@pytest.mark.parametrize(
    ("command", "argument", "json_help"),
    [
        ("status", "TASK_ID", "Print the fileintel.task-status/1 JSON document on stdout."),
        ("result", "TASK_ID", "instead of the bare value"),
        ("wait", "TASK_ID...", "one per line (JSON Lines)"),
    ],
)
def test_help_describes_the_arguments_once_and_json_as_it_is(app, command, argument, json_help):
    result = invoke(app, command, "--help")
    assert result.exit_code == 0
    help_text = " ".join(result.stdout.split())  # unwrapped
    arguments = result.stdout.split("Arguments:\n", 1)[1].split("\n\n", 1)[0]
    assert arguments.split()[0] == argument and "short id" in arguments
    described = re.findall(rf"^\s+{re.escape(argument)}\s", result.stdout, re.M)
    assert len(described) == 1  # in the Arguments section only, not again (bare) among the options
    assert json_help in help_text
    assert ("JSON Lines" in help_text) is (command == "wait")  # only wait prints several documents


def _registered(monkeypatch, **commands):
    """Pretend these entry points (name -> "module:attr") are all the group registers."""
    from importlib.metadata import EntryPoint

    eps = {name: EntryPoint(name, value, cli.COMMANDS_ENTRY_POINT_GROUP) for name, value in commands.items()}
    monkeypatch.setattr(group, "command_entry_points", lambda: eps)


def test_subcommands_that_cannot_be_imported_are_omitted(monkeypatch):
    _registered(monkeypatch, ghost="no_such_module_anywhere:ghost")
    plugins = cli.FileIntelGroup(name="g")
    ctx = click.Context(plugins)
    assert "ghost" not in plugins.list_commands(ctx)
    assert plugins.get_command(ctx, "ghost") is None


def test_subcommands_load_on_demand_from_their_entry_point(monkeypatch):
    module = type(sys)("fake_fileintel_plugin")
    module.extra = click.Command("extra", callback=lambda: None)
    monkeypatch.setitem(sys.modules, "fake_fileintel_plugin", module)
    _registered(monkeypatch, extra="fake_fileintel_plugin:extra")
    plugins = cli.FileIntelGroup(name="g")
    ctx = click.Context(plugins)
    assert plugins.get_command(ctx, "extra") is module.extra
    assert "extra" in plugins.list_commands(ctx)


def test_the_installed_package_registers_its_subcommands():
    """doctor, flower and demo come from the entry-point group, not from names in celery_ext.cli."""
    registered = group.command_entry_points()
    assert {name: ep.value for name, ep in registered.items() if name in ("doctor", "flower", "demo")} == {
        "doctor": "celery_ext.doctor:doctor",
        "flower": "flower_fileintel.command:flower",
        "demo": "fileintel_demo:demo",
    }
    ctx = click.Context(cli.fileintel)
    assert {"doctor", "flower", "demo", "status", "result", "wait"} <= set(cli.fileintel.list_commands(ctx))


def test_progress_bar_reaches_100_only_on_success():
    from rich.console import Console

    class Out:
        console = Console(file=io.StringIO(), force_terminal=True, width=100)

    last_step = dict(RUNNING, progress=Progress(current=10, total=10, percent=100.0, message=None, updated_at=None))
    with reporters.BarReporter(Out()) as bars:
        bars.update(status(**last_step))
        assert bars.progress.tasks[0].completed == 99.0
        bars.update(status(phase=Phase.FAILED, state="FAILURE", error=TaskError("E", None, "m", None)))
        assert bars.progress.tasks[0].completed == 99.0
    with reporters.BarReporter(Out()) as bars:
        bars.update(status(**RUNNING))
        assert bars.progress.tasks[0].completed == 40.0
        bars.update(status())
        assert bars.progress.tasks[0].completed == bars.progress.tasks[0].total == 100.0


def _tty_bars():
    """A BarReporter on a forced colour terminal, as ``wait`` draws it in a TTY."""
    from rich.console import Console

    class Out:
        console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=200)

    out = Out()
    return out, reporters.BarReporter(out)


RED = "\x1b[31m"


@pytest.mark.parametrize(
    ("phase", "state", "error", "shown"),
    [
        (Phase.FAILED, "FAILURE", TaskError("ValueError", "builtins", "line 3: [bold]bad[/] row", None),
         "failed  ValueError: line 3: [bold]bad[/] row"),
        (Phase.REVOKED, "REVOKED", TaskError("TaskRevokedError", None, "terminated", None),
         "revoked  TaskRevokedError: terminated"),
    ],
    ids=["failed", "revoked"],
)
def test_wait_in_a_tty_draws_an_ended_task_red_and_still_with_its_error(phase, state, error, shown):
    out, bars = _tty_bars()
    queued = dict(RUNNING, phase=Phase.QUEUED, state="PENDING", progress=None)
    with bars:
        bars.update(status(**queued))
        row = bars.progress.tasks[0]
        assert bars.progress.columns[1].render(row).total is None  # queued, no figures: it pulses
        bars.update(status(phase=phase, state=state, progress=None, error=error))
        row = bars.progress.tasks[0]
        bar = bars.progress.columns[1].render(row)
        assert bar.total == 100 and not bar.pulse and bar.complete_style == "bold red"  # still, and red
        assert row.stop_time is not None  # its clock stopped: the row is finished
    drawn = out.console.file.getvalue()
    assert RED + f"{TID[:8]} ocr" in drawn  # the label in red
    assert RED + shown in drawn  # the error in the row, as text (task data is never markup)


def test_wait_in_a_tty_keeps_running_and_succeeded_rows_unred():
    out, bars = _tty_bars()
    with bars:
        bars.update(status(**RUNNING))
        bars.update(status())
        assert bars.progress.tasks[0].fields["ended_style"] == ""
    drawn = out.console.file.getvalue()
    assert RED not in drawn
    assert "\x1b[32msucceeded" in drawn  # green


def test_no_result_backend_is_a_usage_error():
    """``celery fileintel status ID`` without ``-A``: say so instead of "unknown" forever."""
    bare = Celery("bare")  # no backend configured
    result = invoke(bare, "wait", TID, "-t", "5")
    assert result.exit_code == 2
    assert "-A proj" in result.stderr
