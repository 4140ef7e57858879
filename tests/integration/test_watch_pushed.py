"""``wait()`` returns the final status built from the pushed result (no read after the push),
and that document is the one ``describe()`` returns a moment later.

Except for what only the worker's final record brings: the pushed status is built from the
record as read before the push (a success's record end lands in the same transaction as its
result, other ends a moment after). Those fields are either still unknown or the same; every
other field is identical.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import celery_ext
import celery_ext.lookup
from celery_ext.records import store_for
from celery_ext.status import Phase
from celery_ext.task_record import Rank
from tests import proj
from tests.harness import wait_for
from tests.status_checks import (
    check_document,
    reports_progress_as_started,
    revoke_confirmed,
)
from tests.status_checks import wait_for as wait_for_status

pytestmark = pytest.mark.integration

#: Written by the worker's final record, with or after Celery's publish: ``runtime_s``;
#: ``started_at`` of a task shorter than the "started" write's 0.2 s fold; the result's expiry as the worker
#: measured it (a read without the record computes it from the TTL, to the millisecond); and
#: ``expires_in_s``, which ticks from read to read. (And the original reprs of FileIntelTask's
#: placeholders: until the record has them, the result itself names each one's path and type.)
FROM_THE_FINAL_RECORD = {"runtime_s", "started_at", "result_expires_at", "expires_in_s"}
UNTIL_THE_RECORD = "(replaced before it was stored)"


@pytest.fixture
def reads(monkeypatch) -> list[list[str]]:
    """The ids of every read ``wait()`` makes."""
    calls: list[list[str]] = []
    real = celery_ext.lookup.observe_many

    def counting(app: Any, ids: Any) -> Any:
        calls.append(list(ids))
        return real(app, ids)

    monkeypatch.setattr(celery_ext.lookup, "observe_many", counting)
    return calls


def _final_record(app: Any, task_id: str) -> celery_ext.TaskStatus:
    """describe(), once the worker's final record has landed."""
    store = store_for(app)

    def record_is_final(status: celery_ext.TaskStatus) -> bool:
        rank = store.client().hget(store.record_key(task_id), "rank")
        return rank is not None and int(rank) == int(Rank.TERMINAL)

    return wait_for_status(app, task_id, record_is_final, timeout=30)


#: Celery stores REVOKED twice for a task revoked before it ran (the second payload is larger,
#: with its own date), and our record comes after both: a reader at the first write, pushed or
#: read, sees that write's size and date, and no worker or retries until the record. (A
#: describe() at that moment says the same: this is not the push's doing.)
FROM_THE_SECOND_REVOKED_WRITE = {"worker", "retries", "completed_at", "result_info"}


def _same_document(waited: celery_ext.TaskStatus, later: celery_ext.TaskStatus, may_differ: frozenset[str] = frozenset()) -> None:
    ours, theirs = check_document(waited.to_dict()), check_document(later.to_dict())
    ours_placeholders = ours["result_info"].pop("placeholders")
    theirs_placeholders = theirs["result_info"].pop("placeholders")
    assert [(p["path"], p["type"]) for p in ours_placeholders] == [(p["path"], p["type"]) for p in theirs_placeholders]
    for mine, final in zip(ours_placeholders, theirs_placeholders):
        assert mine["repr"] in (final["repr"], UNTIL_THE_RECORD)
    differs = {k for k in ours if ours[k] != theirs[k]}
    assert differs <= FROM_THE_FINAL_RECORD | may_differ, {k: (ours[k], theirs[k]) for k in differs}
    for field in ("runtime_s", "started_at", "worker", "retries"):
        assert ours[field] in (None, theirs[field]), field  # not known yet, never different


def test_the_final_status_comes_from_the_push_without_another_read(app, worker, reads):
    release = f"release-{uuid.uuid4()}"
    task_id = proj.progress_until.delay(release).id
    wait_for(lambda: reports_progress_as_started(app, task_id), what="the task running with its record")
    del reads[:]

    def release_after_the_first_read(status: celery_ext.TaskStatus) -> None:
        if status.phase is Phase.RUNNING:  # wait() has subscribed and read: let the task end
            app.backend.client.set(release, 1)

    outcome = celery_ext.wait(app, [task_id], timeout=30, on_update=release_after_the_first_read)
    waited = outcome[task_id]
    assert waited.phase is Phase.SUCCEEDED and waited.result == "released"
    assert reads == [[task_id]]  # the read at set-up; the final status came with the push
    later = _final_record(app, task_id)
    assert waited.started_at is not None  # read at set-up: the task was running
    _same_document(waited, later)


def _failed(app: Any) -> str:
    return str(proj.fail.delay("no space left").id)


def _revoked(app: Any) -> str:
    task_id = str(uuid.uuid4())
    revoke_confirmed(app, task_id)  # the worker holds the id before the task arrives
    proj.add.apply_async((1, 2), task_id=task_id)
    return task_id


def _large(app: Any) -> str:
    return str(proj.big_result.delay(200_000).id)  # well above one pushed update's decoding limit


def _not_json(app: Any) -> str:
    return str(proj.odd_values.delay().id)  # sets, bytes, datetimes, Decimal, NaN: sanitized


@pytest.mark.parametrize(
    "send, phase, may_differ",
    [
        (_failed, Phase.FAILED, frozenset()),
        (_revoked, Phase.REVOKED, frozenset(FROM_THE_SECOND_REVOKED_WRITE)),
        (_large, Phase.SUCCEEDED, frozenset()),
        (_not_json, Phase.SUCCEEDED, frozenset()),
    ],
    ids=["failure", "revoked", "large result", "non-JSON result"],
)
def test_the_waited_status_is_what_describe_says_a_moment_later(app, worker, send, phase, may_differ):
    """Whichever way the status arrived (pushed, or read when the task ended first)."""
    task_id = send(app)
    waited = celery_ext.wait(app, [task_id], timeout=30)[task_id]
    assert waited.phase is phase
    _same_document(waited, _final_record(app, task_id), may_differ)
