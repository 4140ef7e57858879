"""Keeping a result: ``--for`` durations, what can be kept (decided from the ``Outcome``),
how each edge maps the answer, and the board's merge of the record's marks. No Redis: the
keep itself (the Lua script, the TTLs) is tests/integration/test_keep.py's job."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.bin.base import CLIContext
from click.testing import CliRunner

from celery_ext import cli
from celery_ext.cli import KEEP_EXIT, ExitCode
from celery_ext.keeping import (
    MAX_KEEP_S,
    InvalidDuration,
    KeepRefused,
    Kept,
    duration_words,
    parse_duration,
    refusal,
)
from celery_ext.status import Outcome, Phase, ResultInfo, TaskStatus

TID = "0b9f8a6e-1f6e-4a55-9d0b-2a4d3c2b1a00"
NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------------------------
# durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), (" 7D ", 604800), ("30d", 30 * 86400)],
)
def test_durations_in_each_unit(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "1.5h", "-1d", "7w", "1d2h", "abc", "9" * 12 + "s"])
def test_what_is_not_a_duration_says_how_to_write_one(text):
    with pytest.raises(InvalidDuration, match=r"90s, 30m, 12h or 7d"):
        parse_duration(text)


def test_zero_is_refused_as_no_time_at_all():
    with pytest.raises(InvalidDuration, match="no time at all"):
        parse_duration("0h")


def test_longer_than_the_bound_is_refused_saying_why():
    assert MAX_KEEP_S == 30 * 86400
    with pytest.raises(InvalidDuration) as caught:
        parse_duration("31d")
    message = str(caught.value)
    assert "30 days" in message and "no archive" in message and "--output FILE" in message


@pytest.mark.parametrize(
    ("seconds", "words"), [(604800, "7 days"), (86400, "1 day"), (7200, "2 hours"), (1800, "30 minutes"), (90, "90 seconds")]
)
def test_duration_words(seconds, words):
    assert duration_words(seconds) == words


# --------------------------------------------------------------------------------------------
# what can be kept


def status(outcome: Outcome, phase: Phase = Phase.SUCCEEDED, available: bool = True) -> TaskStatus:
    return TaskStatus(
        task_id=TID,
        phase=phase,
        state="SUCCESS",
        result_available=available,
        result_expires_at=NOW + timedelta(hours=1),
        result_info=ResultInfo(reason=None if outcome is Outcome.OK else outcome),
    )


@pytest.mark.parametrize(
    ("outcome", "phase", "words"),
    [
        (Outcome.UNKNOWN, Phase.UNKNOWN, "is unknown"),
        (Outcome.NOT_READY, Phase.RUNNING, "is running: nothing is stored to keep until it finishes"),
        (Outcome.NOT_READY, Phase.QUEUED, "is queued"),
        (Outcome.EXPIRED, Phase.SUCCEEDED, "already gone (expired)"),
        (Outcome.EVICTED, Phase.SUCCEEDED, "already gone (evicted)"),
        (Outcome.NO_RESULT, Phase.SUCCEEDED, "no stored result"),
    ],
)
def test_refused_when_there_is_nothing_to_keep(outcome, phase, words):
    why = refusal(status(outcome, phase, available=False))
    assert why is not None and words in why and TID in why


@pytest.mark.parametrize(
    ("outcome", "phase"),
    [
        (Outcome.OK, Phase.SUCCEEDED),
        (Outcome.TOO_LARGE, Phase.SUCCEEDED),
        (Outcome.NOT_READABLE, Phase.SUCCEEDED),
        (Outcome.FAILED, Phase.FAILED),
        (Outcome.REVOKED, Phase.REVOKED),
        (Outcome.LOST, Phase.LOST),
    ],
)
def test_a_stored_result_goes_on_to_the_keep(outcome, phase):
    assert refusal(status(outcome, phase)) is None


def test_every_outcome_has_a_keep_exit_code_and_http_status():
    from flower_fileintel.handlers import KEEP_API

    assert set(KEEP_EXIT) == {o.value for o in Outcome}
    assert set(KEEP_API) == set(Outcome)
    for outcome in Outcome:
        refused = refusal(status(outcome, Phase.RUNNING if outcome is Outcome.NOT_READY else Phase.SUCCEEDED)) is not None
        # Refused outcomes are errors on both edges; the others were kept (0 / 200).
        assert (KEEP_EXIT[outcome] is not ExitCode.OK) == refused, outcome
        assert (KEEP_API[outcome][0] >= 400) == refused, outcome
    assert KEEP_EXIT[Outcome.EXPIRED] is ExitCode.EXPIRED and KEEP_API[Outcome.EXPIRED] == (410, "result_expired")
    assert KEEP_EXIT[Outcome.UNKNOWN] is ExitCode.UNKNOWN and KEEP_API[Outcome.UNKNOWN] == (404, "unknown_task")


def test_sentences_say_until_when():
    until = NOW + timedelta(days=7)
    assert Kept(TID, "kept", until, 604800).sentence() == f"task {TID}'s result is kept until 2026-12-10 12:00:00 UTC"
    already = Kept(TID, "already", until, 3600).sentence()
    assert "already kept until 2026-12-10 12:00:00 UTC" in already and "1 hour" in already
    assert "never expires" in Kept(TID, "never", None, 60).sentence()
    assert Kept(TID, "kept", until, 604800).to_dict() == {
        "task_id": TID, "kept": True, "verdict": "kept", "result_expires_at": until.isoformat(), "requested_s": 604800,
        "message": f"task {TID}'s result is kept until 2026-12-10 12:00:00 UTC",
    }


# --------------------------------------------------------------------------------------------
# the CLI command (the keep replaced: which exit code and output for each answer)


@pytest.fixture
def app():
    return Celery("unit", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")


def invoke(app, *args):
    return CliRunner().invoke(cli.fileintel, list(args), obj=CLIContext(app=app, no_color=True, workdir=None))


def test_cli_kept_prints_the_sentence_and_exits_0(app, monkeypatch):
    calls = []

    def fake_keep(_app, task_id, seconds):
        calls.append((task_id, seconds))
        return Kept(task_id, "kept", NOW + timedelta(days=7), seconds)

    monkeypatch.setattr("celery_ext.keeping.keep", fake_keep)
    run = invoke(app, "keep", TID, "--for", "7d")
    assert run.exit_code == 0, run.output
    assert calls == [(TID, 604800)]
    assert "kept until 2026-12-10 12:00:00 UTC" in run.stdout
    run = invoke(app, "keep", TID, "--for", "12h", "--json")
    assert run.exit_code == 0
    assert json.loads(run.stdout)["verdict"] == "kept" and json.loads(run.stdout)["requested_s"] == 43200


@pytest.mark.parametrize(
    ("outcome", "phase", "code"),
    [(Outcome.EXPIRED, Phase.SUCCEEDED, 3), (Outcome.UNKNOWN, Phase.UNKNOWN, 4), (Outcome.NOT_READY, Phase.RUNNING, 2)],
)
def test_cli_refusals_exit_by_outcome(app, monkeypatch, outcome, phase, code):
    task = status(outcome, phase, available=False)

    def fake_keep(_app, task_id, seconds):
        raise KeepRefused(task, refusal(task) or "", outcome)

    monkeypatch.setattr("celery_ext.keeping.keep", fake_keep)
    run = invoke(app, "keep", TID, "--for", "7d", "--json")
    assert run.exit_code == code, run.output
    doc = json.loads(run.stdout)
    assert doc == {"task_id": TID, "kept": False, "reason": outcome.value, "message": refusal(task)}
    assert "error:" in run.stderr and "Traceback" not in run.output


@pytest.mark.parametrize("given", ["7", "1week", "31d", "0s"])
def test_cli_bad_duration_is_a_usage_error_before_any_keep(app, monkeypatch, given):
    monkeypatch.setattr("celery_ext.keeping.keep", lambda *a: pytest.fail("no keep for a bad --for"))
    run = invoke(app, "keep", TID, "--for", given)
    assert run.exit_code == 2
    assert "--for" in run.stderr and "Traceback" not in run.output


def test_cli_help_describes_the_argument_and_option(app):
    run = invoke(app, "keep", "--help")
    assert run.exit_code == 0
    assert "TASK_ID is a task id, or the short id" in run.stdout
    assert "--for" in run.stdout and "90s, 30m, 12h, 7d" in run.stdout and "Exit codes" in run.stdout


# --------------------------------------------------------------------------------------------
# the board: the record's marks over a cached entry


def test_board_entry_takes_the_records_last_fetch():
    from celery_ext.fetched import RecordMarks
    from flower_fileintel.state import _with_marks

    entry = {"task_id": TID, "result_available": True, "result_expires_at": NOW.isoformat()}
    fetched = NOW - timedelta(minutes=1)
    merged = _with_marks(entry, RecordMarks(NOW + timedelta(days=7), fetched))
    assert merged == {**entry, "fetched_at": fetched.isoformat()}  # the expiry is describe's to tell
    assert "fetched_at" not in entry  # the cached entry is not changed
    assert _with_marks(entry, RecordMarks(None, None))["fetched_at"] is None
    assert _with_marks(entry, None)["fetched_at"] is None
