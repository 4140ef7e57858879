"""The verdict, decided once: ``classify.build_status`` on hand-built facts, and every
``Outcome`` walked through every edge's table (CLI exit codes, the result API, sentences,
the status document's schema). Pure: no Redis, no app, no worker.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from celery_ext.classify import Observation, build_status
from celery_ext.cli import RESULT_EXIT, WAIT_EXIT, ExitCode
from celery_ext.settings import FileIntelSettings
from celery_ext.status import Outcome, Phase
from celery_ext.task_record import TaskRecord
from celery_ext.verdict import SENTENCES, sentence
from tests.harness import REPO_ROOT
from tests.status_checks import check_document

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)
TID = "3b7c5f2e-8d41-4c55-9f0e-2f6f0b1d7a10"
SETTINGS = FileIntelSettings()
AGO = {s: NOW - timedelta(seconds=s) for s in (5, 10, 30, 100, 3600, 7200)}


def meta(status: str, result: object = None, **extra: object) -> dict[str, object]:
    return {"status": status, "result": result, "traceback": None, "date_done": None, **extra}


def record(state: str, **fields: object) -> TaskRecord:
    return TaskRecord(state=state, **fields)  # type: ignore[arg-type]


def observe(
    meta_: dict[str, object] | None = None,
    rec: TaskRecord | None = None,
    *,
    stored_bytes: int | None = None,
    **extra: object,
) -> Observation:
    if meta_ is not None and stored_bytes is None:
        stored_bytes = 120
    return Observation(
        task_id=TID,
        meta=meta_,
        stored_bytes=stored_bytes,
        ttl_s=extra.pop("ttl_s", 3000.0 if meta_ is not None else None),  # type: ignore[arg-type]
        head_state=extra.pop("head_state", None),  # type: ignore[arg-type]
        record=rec,
        records_enabled=True,
        now=NOW,
        result_expires_s=3600,
        **extra,  # type: ignore[arg-type]
    )


DONE = record("SUCCESS", started_at=AGO[7200], completed_at=AGO[3600], result_bytes=120)

#: (name, observation, phase, outcome): one row per way a task can look to a reader.
CASES = [
    ("nothing known", observe(), Phase.UNKNOWN, Outcome.UNKNOWN),
    ("sent", observe(rec=record("SENT", queued_at=AGO[5])), Phase.QUEUED, Outcome.NOT_READY),
    ("running", observe(rec=record("STARTED", started_at=AGO[5])), Phase.RUNNING, Outcome.NOT_READY),
    ("progress", observe(meta("PROGRESS", {"current": 2, "total": 4}), record("STARTED")), Phase.RUNNING, Outcome.NOT_READY),
    ("retrying", observe(meta("RETRY"), record("RETRY")), Phase.RETRYING, Outcome.NOT_READY),
    ("ok", observe(meta("SUCCESS", 5), DONE), Phase.SUCCEEDED, Outcome.OK),
    ("ok without record", observe(meta("SUCCESS", [1, 2])), Phase.SUCCEEDED, Outcome.OK),
    ("failed", observe(meta("FAILURE", {"exc_type": "ValueError", "exc_message": ["bad"]})), Phase.FAILED, Outcome.FAILED),
    (
        "failed, meta expired",
        observe(rec=record("FAILURE", error_type="ValueError", error_message="bad", error_traceback="Traceback...\nValueError: bad", result_bytes=300)),
        Phase.FAILED,
        Outcome.FAILED,
    ),
    ("revoked", observe(meta("REVOKED"), record("REVOKED", error_type="TaskRevokedError")), Phase.REVOKED, Outcome.REVOKED),
    (
        "expired",
        observe(rec=record("SUCCESS", completed_at=AGO[7200], result_bytes=120, result_expires_at=AGO[3600])),
        Phase.SUCCEEDED,
        Outcome.EXPIRED,
    ),
    (
        "evicted",
        observe(rec=record("SUCCESS", completed_at=AGO[10], result_bytes=120, result_expires_at=NOW + timedelta(hours=1))),
        Phase.SUCCEEDED,
        Outcome.EVICTED,
    ),
    (
        "evicted, never expires",
        observe(rec=record("SUCCESS", completed_at=AGO[10], result_bytes=120, result_never_expires=True)),
        Phase.SUCCEEDED,
        Outcome.EVICTED,
    ),
    ("ignore_result", observe(rec=record("SUCCESS", ignore_result=True)), Phase.SUCCEEDED, Outcome.NO_RESULT),
    ("rpc backend", observe(rec=record("SUCCESS"), backend_keeps_results=False), Phase.SUCCEEDED, Outcome.NO_RESULT),
    ("nothing measured", observe(rec=record("SUCCESS", result_bytes=0)), Phase.SUCCEEDED, Outcome.NO_RESULT),
    ("too large", observe(stored_bytes=50_000_000, head_state="SUCCESS", rec=DONE), Phase.SUCCEEDED, Outcome.TOO_LARGE),
    ("ignored", observe(rec=record("IGNORED", completed_at=AGO[5], result_bytes=0)), Phase.SUCCEEDED, Outcome.NO_RESULT),
    (
        "ignored after storing a state of its own",
        observe(meta("PROGRESS", {"current": 1}), record("IGNORED", completed_at=AGO[5], result_bytes=0)),
        Phase.SUCCEEDED,
        Outcome.NO_RESULT,
    ),
    (
        "ignore_result, STARTED stored by task_track_started",
        observe(meta("STARTED"), record("SUCCESS", ignore_result=True)),
        Phase.SUCCEEDED,
        Outcome.NO_RESULT,
    ),
    (
        "rejected",
        observe(meta("STARTED"), record("REJECTED", error_type="Reject", error_message="bad input", result_bytes=0)),
        Phase.FAILED,
        Outcome.FAILED,
    ),
    (
        "succeeded, then a late RETRY of its first run stored over its result",
        observe(meta("RETRY"), record("SUCCESS", completed_at=AGO[5], retries=1, result_bytes=120, result_expires_at=NOW + timedelta(hours=1))),
        Phase.SUCCEEDED,
        Outcome.EVICTED,
    ),
    (
        "succeeded long ago, its result expired, then sent again with its id and retrying",
        observe(meta("RETRY"), record("SUCCESS", completed_at=AGO[7200], result_bytes=120, result_expires_at=AGO[3600])),
        Phase.RETRYING,
        Outcome.NOT_READY,
    ),
    (
        "failed, then sent again with its id and running",
        observe(meta("STARTED"), record("FAILURE", error_type="ValueError")),
        Phase.RUNNING,
        Outcome.NOT_READY,
    ),
    (
        "not decodable, no record",
        observe(stored_bytes=80, unreadable="it cannot be decoded by this app"),
        Phase.UNKNOWN,
        Outcome.NOT_READABLE,
    ),
    ("not decodable, record", observe(stored_bytes=80, unreadable="pickle", rec=DONE), Phase.SUCCEEDED, Outcome.NOT_READABLE),
    (
        "worker silent too long",
        observe(rec=record("STARTED", started_at=AGO[100], incarnation="a1"), worker_silent_s=90.0),
        Phase.LOST,
        Outcome.LOST,
    ),
    (
        "worker never beat, running long",
        observe(rec=record("STARTED", started_at=AGO[100], incarnation="a1"), worker_silent_s=math.inf),
        Phase.LOST,
        Outcome.LOST,
    ),
    (
        "worker never beat, just started",
        observe(rec=record("STARTED", started_at=AGO[5], incarnation="a1"), worker_silent_s=math.inf),
        Phase.RUNNING,
        Outcome.NOT_READY,
    ),
    (
        "worker beating, busy for long",
        observe(rec=record("STARTED", started_at=AGO[7200], incarnation="a1"), worker_silent_s=8.0),
        Phase.RUNNING,
        Outcome.NOT_READY,
    ),
    (
        "worker silent but the task finished",
        observe(meta("SUCCESS", 1), record("SUCCESS", incarnation="a1"), worker_silent_s=900.0),
        Phase.SUCCEEDED,
        Outcome.OK,
    ),
]


@pytest.mark.parametrize("name, obs, phase, outcome", CASES, ids=[c[0] for c in CASES])
def test_classification(name, obs, phase, outcome):
    status = build_status(obs, SETTINGS)
    assert (status.phase, status.outcome) == (phase, outcome)
    doc = check_document(status.to_dict())
    assert doc["outcome"] == outcome.value
    assert doc["result_info"]["reason"] == (None if outcome is Outcome.OK else outcome.value)
    assert (doc["result"] is not None) == (outcome is Outcome.OK)
    assert sentence(status)  # every row has something to say


def test_every_outcome_has_a_classification_case():
    assert {c[3] for c in CASES} == set(Outcome)


def test_every_outcome_goes_through_every_edge_table():
    from flower_fileintel.handlers import PAGE_BANNER, RESULT_API

    for outcome in Outcome:
        assert isinstance(RESULT_EXIT[outcome], ExitCode), outcome
        assert isinstance(WAIT_EXIT[outcome], ExitCode), outcome
        status_code, code = RESULT_API[outcome]
        assert 200 <= status_code < 500 and code, outcome
        assert outcome in SENTENCES
        assert outcome in PAGE_BANNER
    # No table has rows for outcomes that do not exist.
    for table in (RESULT_EXIT, WAIT_EXIT, RESULT_API, SENTENCES, PAGE_BANNER):
        assert set(table) == {o.value for o in Outcome}


def test_every_phase_goes_through_every_edge():
    """A new phase fails here until the CLI display, the pages' badge style, the schema and
    the README's status document know it."""
    import json

    from celery_ext.cli.reporters import PHASE_STYLE
    from celery_ext.status import Phase

    root = REPO_ROOT
    css = (root / "flower_fileintel" / "static" / "fileintel.css").read_text()
    schema = json.loads((root / "celery_ext" / "schema" / "task-status-1.json").read_text())
    readme = (root / "README.md").read_text()
    assert set(PHASE_STYLE) == {p.value for p in Phase}
    assert set(schema["properties"]["phase"]["enum"]) == {p.value for p in Phase}
    for phase in Phase:
        assert f".fi-phase-{phase.value} " in css, phase
        assert f"`{phase.value}`" in readme, phase


def test_the_tables_say_what_the_docs_promise():
    from flower_fileintel.handlers import RESULT_API

    promised = {
        "ok": (0, 200),
        "failed": (1, 409),
        "revoked": (1, 409),
        "lost": (1, 409),
        "expired": (3, 410),
        "evicted": (3, 410),
        "no_result": (3, 404),
        "not_readable": (3, 422),
        "unknown": (4, 404),
        "too_large": (5, 413),
        "not_ready": (124, 202),
    }
    assert {o.value: (int(RESULT_EXIT[o]), RESULT_API[o][0]) for o in Outcome} == promised
    assert {o.value for o in Outcome if WAIT_EXIT[o] is ExitCode.OK} == {
        "ok", "expired", "evicted", "no_result", "not_readable", "too_large"
    }


def test_each_outcome_has_its_own_sentence():
    by_outcome = {}
    for _, obs, _, outcome in CASES:
        by_outcome.setdefault(outcome, sentence(build_status(obs, SETTINGS)))
    assert "stores no result" in by_outcome[Outcome.NO_RESULT]
    assert "expired" not in by_outcome[Outcome.NO_RESULT]
    assert "cannot be decoded" in by_outcome[Outcome.NOT_READABLE]
    assert "evicted" not in by_outcome[Outcome.NOT_READABLE] and "large" not in by_outcome[Outcome.NOT_READABLE]
    assert "died" in by_outcome[Outcome.LOST]
    assert "expired at" in by_outcome[Outcome.EXPIRED]
    assert "maxmemory-policy" in by_outcome[Outcome.EVICTED]
    assert len(set(by_outcome.values())) == len(Outcome)


def test_a_task_that_ended_with_ignore_or_reject_says_so_and_shows_no_stored_state():
    """What a task stored before it raised Ignore or Reject is not its result."""
    ignored = build_status(observe(meta("PROGRESS", {"current": 1}), record("IGNORED", completed_at=AGO[5], result_bytes=0)), SETTINGS)
    assert ignored.state == "IGNORED" and not ignored.result_available and ignored.result is None
    assert ignored.completed_at == AGO[5] and ignored.progress is None
    assert sentence(ignored) == f"task {TID} ended at 2026-12-03 09:59:55 UTC with Ignore: Celery stores no result for it."
    [note] = ignored.notes
    assert "Ignore" in note and "stored before (update_state) is not its result" in note
    rejected = build_status(observe(rec=record("REJECTED", error_type="Reject", error_message="bad input")), SETTINGS)
    assert rejected.error is not None and (rejected.error.type, rejected.error.message) == ("Reject", "bad input")
    assert sentence(rejected) == f"task {TID} failed (Reject: bad input): it has no result, only an error."
    assert any("Reject without requeue" in note for note in rejected.notes)


def test_a_success_celery_wrote_a_late_retry_over_says_so():
    """A task retried at once can succeed before its first run's RETRY is stored: Celery's
    key then says RETRY for good; the record's success is the truth, and the result is lost."""
    done = record("SUCCESS", completed_at=AGO[5], retries=1, result_bytes=120, result_expires_at=NOW + timedelta(hours=1))
    status = build_status(observe(meta("RETRY", {"exc_type": "Retry"}), done), SETTINGS)
    assert status.state == "SUCCESS" and status.completed_at == AGO[5] and status.result is None
    assert not status.result_available and status.progress is None
    assert "written over" in sentence(status)
    [note] = status.notes
    assert "Celery then stored RETRY over its result" in note and "will not run again" in note
    assert "maxmemory" not in note  # the cause is known
    # A RETRY too large to load is read from its payload's head: the same verdict, the same note.
    from_head = build_status(observe(stored_bytes=50_000_000, head_state="RETRY", rec=done), SETTINGS)
    assert from_head.notes == status.notes and sentence(from_head) == sentence(status)


def test_a_lost_task_says_when_its_worker_was_last_seen():
    obs = observe(rec=record("STARTED", started_at=AGO[100], incarnation="a1", worker="celery@w1"), worker_silent_s=75.0)
    status = build_status(obs, SETTINGS)
    assert status.worker_last_seen_at == NOW - timedelta(seconds=75)
    assert "celery@w1" in sentence(status) and "2026-12-03 09:58:45 UTC" in sentence(status)
    assert any("fileintel_lost_after=60 s" in n for n in status.notes)
    # A shorter setting makes a shorter silence enough; a longer one tolerates it.
    assert build_status(observe(rec=obs.record, worker_silent_s=20.0), FileIntelSettings(lost_after=10)).phase is Phase.LOST
    assert build_status(obs, FileIntelSettings(lost_after=120)).phase is Phase.RUNNING


def test_an_expired_failure_keeps_its_error_and_traceback_from_the_record():
    rec = record("FAILURE", error_type="ValueError", error_module="builtins", error_message="disk full",
                 error_traceback="Traceback (most recent call last):\n  ...\nValueError: disk full", result_bytes=400,
                 completed_at=AGO[7200], result_expires_at=AGO[3600])
    status = build_status(observe(rec=rec), SETTINGS)
    assert status.outcome is Outcome.FAILED and status.expired is True
    assert status.error is not None
    assert (status.error.type, status.error.message) == ("ValueError", "disk full")
    assert status.error.traceback and status.error.traceback.endswith("ValueError: disk full")


def test_a_revoked_task_keeps_its_runtime_and_last_progress():
    rec = record("REVOKED", started_at=AGO[30], completed_at=AGO[10], error_type="TaskRevokedError",
                 error_message="terminated", progress='{"current": 3, "total": 10, "message": "page 3"}')
    status = build_status(observe(meta("REVOKED"), rec), SETTINGS)
    assert status.outcome is Outcome.REVOKED
    assert status.runtime_s == 20.0
    assert status.progress is not None and (status.progress.current, status.progress.message) == (3, "page 3")
    assert "terminated" in sentence(status)
