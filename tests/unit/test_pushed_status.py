"""``lookup.observe_pushed``: the final status ``wait()`` builds from a pushed result, without a
read, is the status ``describe`` classifies from a read of the same moment.

Each case encodes a result meta as Celery stores it (the bytes it SETEXes and PUBLISHes),
then classifies it twice: from the read script's reply for that moment (payload, STRLEN,
PTTL = the full expiry, the record) and from the push (the payload plus the record read
earlier). No Redis: the app only points at one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery

import celery_ext
from celery_ext import lookup
from celery_ext.classify import Observation
from celery_ext.status import Phase
from celery_ext.task_record import Rank

TID = "6f1d2c3b-4a5e-4f60-8b7a-9c0d1e2f3a4b"
NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)
EXPIRES = 3600
MAX_RESULT_BYTES = 4096


def make_app(**conf: Any) -> Celery:
    app = Celery("pushed", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.update(result_expires=EXPIRES, result_extended=True, fileintel_max_result_bytes=MAX_RESULT_BYTES, **conf)
    celery_ext.install(app)
    return app


@pytest.fixture(scope="module")
def app() -> Celery:
    return make_app()


def running_record(**extra: str) -> list[bytes]:
    """A record as HGETALL returns it inside the read script while the task runs."""
    fields = {
        "state": "STARTED",
        "rank": str(int(Rank.RUNNING)),
        "name": "proj.work",
        "worker": "w1@host",
        "queue": "celery",
        "queued_at": str((NOW - timedelta(seconds=3)).timestamp()),
        "started_at": str((NOW - timedelta(seconds=2)).timestamp()),
        "incarnation": "w1@host-1",
        **extra,
    }
    return [item.encode() for pair in fields.items() for item in pair]


def meta(state: str, result: Any, traceback: str | None = None) -> dict[str, Any]:
    return {
        "status": state,
        "result": result,
        "traceback": traceback,
        "children": [],
        "date_done": (NOW - timedelta(milliseconds=2)).isoformat(),
        "task_id": TID,
        "name": "proj.work",
        "args": [1],
        "kwargs": {},
        "worker": "w1@host",
        "retries": 0,
        "queue": "celery",
    }


def stored(app: Celery, value: dict[str, Any]) -> bytes:
    data: bytes | str = app.backend.encode(value)
    return data.encode() if isinstance(data, str) else data


def packed(record: list[bytes]) -> bytes:
    """The record as the read script returns it: ``<length>:<bytes>`` items."""
    return b"".join(b"%d:%s" % (len(item), item) for item in record)


def read_at_setup(app: Celery, record: list[bytes]) -> Observation:
    """wait()'s first read: nothing stored yet, the worker running the task beat 0.5 s ago."""
    reply = [0, -2, None, None, packed(record), "0.5"]
    return lookup._from_script(app, TID, reply, NOW - timedelta(seconds=1), EXPIRES, None)


def read_now(app: Celery, payload: bytes, record: list[bytes]) -> Observation:
    """What the read script returns right after Celery stored ``payload``, for a record not
    final yet (a failure's end comes after Celery published)."""
    loaded = len(payload) <= MAX_RESULT_BYTES
    reply = [len(payload), EXPIRES * 1000, payload if loaded else None, None if loaded else payload[:256], packed(record), "0.5"]
    return lookup._from_script(app, TID, reply, NOW, EXPIRES, None)


REVOKED = {"exc_type": "TaskRevokedError", "exc_message": ["terminated"], "exc_module": "celery.exceptions"}
FAILED = {"exc_type": "ValueError", "exc_message": ["no space left"], "exc_module": "builtins"}
CASES = {
    "success": meta("SUCCESS", {"total": 3, "files": ["a.pdf", "b.pdf"]}),
    "failure": meta("FAILURE", FAILED, traceback='Traceback (most recent call last):\n  File "t.py"\nValueError: no space left\n'),
    "revoked": meta("REVOKED", REVOKED),
    "non-JSON result": meta(
        "SUCCESS", {"blob": b"\x00\x01", "when": NOW, "name": "report-\udcff.pdf", "ratio": 0.5}
    ),
    "result near the size limit": meta("SUCCESS", "x" * (MAX_RESULT_BYTES - 600)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_pushed_final_result_classifies_as_describe_reads_it(app: Celery, case: str) -> None:
    record = running_record(progress='{"current": 2, "total": 4}')
    payload = stored(app, CASES[case])
    assert len(payload) <= MAX_RESULT_BYTES
    pushed = lookup.observe_pushed(app, read_at_setup(app, record), payload, now=NOW)
    assert pushed is not None, "a small, decodable final result needs no read"
    from_push = lookup.status_of(app, pushed)
    from_read = lookup.status_of(app, read_now(app, payload, record))
    assert from_push.phase.settled and from_push.phase is not Phase.UNKNOWN
    assert from_push.to_dict() == from_read.to_dict()


@pytest.mark.parametrize(
    "why, value",
    [
        ("still running: progress", meta("PROGRESS", {"current": 3, "total": 4})),
        ("retrying: not final", meta("RETRY", FAILED)),
        ("above fileintel_max_result_bytes: describe does not load it", meta("SUCCESS", "x" * MAX_RESULT_BYTES)),
    ],
)
def test_what_only_a_read_can_tell_is_read(app: Celery, why: str, value: dict[str, Any]) -> None:
    earlier = read_at_setup(app, running_record())
    assert lookup.observe_pushed(app, earlier, stored(app, value), now=NOW) is None, why


def test_undecodable_payloads_and_unreadable_tasks_are_read(app: Celery) -> None:
    earlier = read_at_setup(app, running_record())
    assert lookup.observe_pushed(app, earlier, b"\xff not json", now=NOW) is None
    broken = lookup._unreadable(TID, NOW, "its stored data could not be interpreted")
    assert lookup.observe_pushed(app, broken, stored(app, CASES["success"]), now=NOW) is None


def test_a_pickled_result_is_read_when_this_reader_refuses_pickle() -> None:
    app = make_app(result_serializer="pickle", accept_content=["json", "pickle"], result_accept_content=["json", "pickle"])
    payload = stored(app, CASES["success"])
    assert lookup.observe_pushed(app, read_at_setup(app, running_record()), payload, now=NOW) is None


def test_records_in_another_redis_are_read() -> None:
    """There describe reads the result through Celery's API and sizes it another way."""
    app = make_app(fileintel_redis_url="redis://127.0.0.1:2/0")
    payload = stored(app, CASES["success"])
    assert lookup.observe_pushed(app, read_at_setup(app, running_record()), payload, now=NOW) is None


def test_a_task_with_a_backend_of_its_own_gets_that_backends_expiry() -> None:
    """``@app.task(backend=...)`` with a shorter ``expires`` (as the demo's ``expiring`` case):
    the pushed result expires when that backend says, not when the app's would."""
    from celery.backends.redis import RedisBackend

    app = make_app()
    short = RedisBackend(app=app, url="redis://127.0.0.1:1/0", expires=120)

    @app.task(name="proj.short", backend=short)
    def short_lived() -> None: ...

    record = running_record(name="proj.short")
    pushed = lookup.observe_pushed(app, read_at_setup(app, record), stored(app, CASES["success"]), now=NOW)
    assert pushed is not None and pushed.ttl_s == 120
    plain = lookup.observe_pushed(app, read_at_setup(app, running_record()), stored(app, CASES["success"]), now=NOW)
    assert plain is not None and plain.ttl_s == EXPIRES
