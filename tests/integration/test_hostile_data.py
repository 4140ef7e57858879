"""What a production store eventually holds: a bad datum degrades one task, never a reader.

Keys of the wrong type, absurd numbers, ids that are not ids and strings UTF-8 cannot
encode, written into the private Redis by hand, then read through every reader: describe,
the CLI, Flower's API, pages and board.
"""

from __future__ import annotations

import json
import uuid

import pytest

from celery_ext import describe, describe_many
from celery_ext.decoding import printable
from celery_ext.records import recent_task_ids, store_for
from celery_ext.status import Outcome, Phase
from flower_fileintel.testing import FlowerServer, http_get
from tests import proj
from tests.harness import run_celery
from tests.status_checks import check_document

pytestmark = pytest.mark.integration

SURROGATE_NAME = "report-\udcff.pdf"  # os.fsdecode() of a non-UTF-8 file name
AUTH = ("u", "p")


def _stored_ok(app) -> str:
    task_id = str(uuid.uuid4())
    app.backend.store_result(task_id, {"fine": True}, "SUCCESS")
    return task_id


# -- pure parts ------------------------------------------------------------------------------


def test_printable_escapes_only_what_utf8_cannot_encode():
    clean = {"name": "café", "items": [1, "x"]}
    assert printable(clean) is clean  # nothing copied when nothing changes
    assert printable({"f": SURROGATE_NAME, "k\ud800": ["\udcff"]}) == {"f": "report-\\udcff.pdf", "k\\ud800": ["\\udcff"]}


def test_file_intel_task_keeps_a_result_plain_celery_stores():
    """The sanitiser must not fail a task over a lone surrogate (plain Celery stores it as a
    JSON escape)."""
    assert proj.file_names() == {"file": SURROGATE_NAME}


# -- describe ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda r, s, t: r.hset(s.meta_key(t), "status", "SUCCESS"), id="meta-is-a-hash"),
        pytest.param(lambda r, s, t: r.rpush(s.meta_key(t), "SUCCESS"), id="meta-is-a-list"),
        pytest.param(lambda r, s, t: r.set(s.record_key(t), "not a hash"), id="record-is-a-string"),
        pytest.param(lambda r, s, t: r.set(s.meta_key(t), b'{"status": ["a", "list"], "result": 1}'), id="status-is-a-list"),
        pytest.param(lambda r, s, t: r.set(s.meta_key(t), b"\xff\xfe not json"), id="meta-is-not-json"),
    ],
)
def test_one_corrupt_task_reads_not_readable_and_the_others_normally(app, redis_client, corrupt):
    store = store_for(app)
    bad = str(uuid.uuid4())
    corrupt(redis_client, store, bad)
    good = _stored_ok(app)
    statuses = describe_many(app, [bad, good])
    assert statuses[1].phase is Phase.SUCCEEDED and statuses[1].result == {"fine": True}
    broken = statuses[0]
    assert broken.outcome is Outcome.NOT_READABLE, broken
    assert any("cannot be read" in note or "could not" in note or "not a Celery result" in note for note in broken.notes), broken.notes
    check_document(broken.to_dict())
    assert describe(app, bad).outcome is Outcome.NOT_READABLE  # the single-id path too


def test_absurd_numbers_in_a_record_are_dropped(app, redis_client):
    task_id = _stored_ok(app)
    redis_client.hset(store_for(app).record_key(task_id), mapping={
        "state": "SUCCESS", "rank": "3", "retries": "1e400", "runtime_s": "inf",
        "result_bytes": "nan", "completed_at": "1e300",
    })
    status = describe(app, task_id)
    assert status.phase is Phase.SUCCEEDED
    assert status.runtime_s is None and status.retries in (None, 0)
    json.dumps(status.to_dict(), allow_nan=False)  # what every edge does: no NaN, no inf


def test_progress_beyond_any_float_is_ignored_with_a_note(app):
    task_id = str(uuid.uuid4())
    app.backend.store_result(task_id, {"current": 10**400, "total": 10**401}, "PROGRESS")
    status = describe(app, task_id)
    assert status.phase is Phase.RUNNING and status.progress is not None
    assert status.progress.current is None and status.progress.total is None
    assert any("digits" in issue for issue in status.progress.issues)
    json.dumps(status.to_dict(), allow_nan=False)


def test_lone_surrogates_are_shown_escaped(app):
    ok = str(uuid.uuid4())
    app.backend.store_result(ok, {"file": SURROGATE_NAME}, "SUCCESS")
    failed = str(uuid.uuid4())
    app.backend.store_result(failed, ValueError(f"cannot open {SURROGATE_NAME}"), "FAILURE")
    assert describe(app, ok).result == {"file": "report-\\udcff.pdf"}
    error = describe(app, failed).error
    assert error is not None and error.message == "cannot open report-\\udcff.pdf"
    for task_id in (ok, failed):
        json.dumps(describe(app, task_id).to_dict(), ensure_ascii=False).encode("utf-8")  # printable


def test_ids_in_an_index_that_are_not_ids_are_skipped(app, redis_client):
    store = store_for(app)
    good = str(uuid.uuid4())
    redis_client.zadd(store.finished_key, {good: 2, "bad*id": 3, "x" * 300: 4, b"\xff\xfe": 5})
    assert recent_task_ids(app, "finished", 10) == [good]


# -- the readers: CLI, Flower -----------------------------------------------------------------


def test_the_cli_reads_corrupt_and_unprintable_tasks_without_a_traceback(app, redis_client):
    bad = str(uuid.uuid4())
    redis_client.hset(store_for(app).meta_key(bad), "status", "SUCCESS")
    odd = str(uuid.uuid4())
    app.backend.store_result(odd, {"file": SURROGATE_NAME}, "SUCCESS")

    status = run_celery("fileintel", "status", bad, "--json")
    assert "Traceback" not in status.stderr, status.stderr
    assert json.loads(status.stdout)["outcome"] == "not_readable"
    result = run_celery("fileintel", "result", bad)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert "cannot be decoded here" in result.stderr

    shown = run_celery("fileintel", "result", odd)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"file": "report-\\udcff.pdf"}


def test_flower_serves_corrupt_and_unprintable_tasks_and_the_board_keeps_the_rest(app, redis_client):
    store = store_for(app)
    bad = str(uuid.uuid4())
    redis_client.set(store.record_key(bad), "not a hash")
    redis_client.zadd(store.active_key, {bad: 1, "not*an*id": 2})
    odd = str(uuid.uuid4())
    app.backend.store_result(odd, {"file": SURROGATE_NAME}, "SUCCESS")
    running = str(uuid.uuid4())
    app.backend.store_result(running, {"current": 10**400, "total": 4}, "PROGRESS")
    redis_client.zadd(store.active_key, {running: 3})

    with FlowerServer(app, basic_auth=["u:p"]) as flower:
        for task_id in (bad, odd, running):
            for path in (f"/api/fileintel/task/{task_id}", f"/fileintel/task/{task_id}",
                         f"/api/fileintel/task/{task_id}/result", f"/api/fileintel/task/{task_id}/result/download"):
                resp = http_get(flower.url(path), auth=AUTH)
                assert resp.status < 500, (path, resp.status, resp.text[:300])
        page = http_get(flower.url(f"/fileintel/task/{odd}"), auth=AUTH).text
        assert "report-\\\\udcff.pdf" in page  # the escaped name, as JSON text
        download = http_get(flower.url(f"/api/fileintel/task/{odd}/result/download"), auth=AUTH)
        assert download.status == 200 and json.loads(download.body) == {"file": "report-\\udcff.pdf"}
        board = http_get(flower.url("/fileintel/board.json"), auth=AUTH)
        assert board.status == 200, board.text[:300]
    rows = {row["task_id"]: row for row in board.json()["running"]}
    assert rows[running]["phase"] == "running"  # the healthy row is still there
    assert rows[bad]["outcome"] == "not_readable"  # the bad one is marked, not fatal


@pytest.mark.parametrize(
    "path, says",
    [
        ("{tmp}/no/such/dir/out.json", "does not exist"),
        ("/proc/fileintel-out.json", "cannot write"),
        ("", "give a file name"),
        ("{tmp}/" + "n" * 300, "the file name is 300 bytes"),
        ("{tmp}", "is a directory"),
    ],
)
def test_result_output_to_a_path_that_cannot_be_written_is_exit_2(app, tmp_path, path, says):
    task_id = _stored_ok(app)
    target = path.format(tmp=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    run = run_celery("fileintel", "result", task_id, "--output", target)
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert says in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written left behind


def test_a_board_that_cannot_be_refreshed_tells_its_viewers(app):
    """The SSE stream reports a problem instead of going silent (and recovers after)."""
    import asyncio

    from flower_fileintel.live import LiveHub
    from flower_fileintel.watchers import BoardWatcher

    answers = [RuntimeError("Redis said no"), {"running": [], "finished": [], "expiring": []}]

    async def board_snapshot():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def describe_many(ids):
        return []

    async def scenario():
        hub = LiveHub(app, describe_many, board_snapshot)
        watcher = BoardWatcher()
        hub.board_watchers.add(watcher)
        await hub._refresh_board()
        first = (watcher.take_problem(), watcher.take())
        await hub._refresh_board()
        second = (watcher.take_problem(), watcher.take())
        return first, second

    (problem, (snapshot, _)), (no_problem, (fresh, _)) = asyncio.run(scenario())
    assert problem is not None and "Redis said no" in problem and snapshot is None
    assert no_problem is None and json.loads(fresh)["running"] == []


# -- fuzz: arbitrary bytes and wrong types in a task's keys and the indexes ---------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_bytes = st.binary(max_size=64)
_json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
).map(lambda value: json.dumps(value).encode())
_metas = st.fixed_dictionaries(
    {"status": st.sampled_from(["SUCCESS", "FAILURE", "PROGRESS", "STARTED", "RETRY", "REVOKED", "WEIRD"]) | st.integers()},
    optional={"result": st.recursive(st.none() | st.integers() | st.floats() | st.text(max_size=10),
                                     lambda c: st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=8),
              "traceback": st.text(max_size=30) | st.integers(), "date_done": st.text(max_size=30) | st.integers()},
).map(lambda meta: json.dumps(meta).encode())
_meta_writes = st.one_of(
    st.tuples(st.just("set"), _bytes | _json_texts | _metas),
    st.tuples(st.just("hash"), st.dictionaries(_bytes.filter(bool), _bytes, min_size=1, max_size=3)),
    st.tuples(st.just("list"), st.lists(_bytes, min_size=1, max_size=3)),
    st.tuples(st.just("none"), st.none()),
)
_record_fields = st.sampled_from(
    [b"state", b"rank", b"name", b"worker", b"runtime_s", b"retries", b"started_at", b"completed_at",
     b"result_bytes", b"result_expires_ts", b"error_type", b"error_message", b"error_traceback",
     b"progress", b"incarnation", b"placeholders", b"\xff\xfe"]
)
_record_values = _bytes | st.sampled_from([b"1e400", b"inf", b"nan", b"-1", b"3", b"STARTED", b"SUCCESS", b"2"])
_record_writes = st.one_of(
    st.tuples(st.just("hash"), st.dictionaries(_record_fields, _record_values, min_size=1, max_size=6)),
    st.tuples(st.just("set"), _bytes),
    st.tuples(st.just("none"), st.none()),
)


def _write(client, key, how, value):
    client.delete(key)
    if how == "set":
        client.set(key, value)
    elif how == "hash":
        client.hset(key, mapping=value)
    elif how == "list":
        client.rpush(key, *value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=_meta_writes, record=_record_writes, junk_ids=st.lists(_bytes.filter(bool), max_size=3))
def test_fuzz_every_reader_answers_with_a_valid_document(app, redis_client, meta, record, junk_ids):
    store = store_for(app)
    bad = "fuzzed-task"
    _write(redis_client, store.meta_key(bad), *meta)
    _write(redis_client, store.record_key(bad), *record)
    good = _stored_ok(app)
    redis_client.zadd(store.active_key, {bad: 1, good: 2, **{junk: 3 for junk in junk_ids}})
    try:
        ids = recent_task_ids(app, "active", 10)
        assert bad in ids and good in ids
        statuses = describe_many(app, [bad, good])
        check_document(statuses[0].to_dict())
        assert statuses[1].phase is Phase.SUCCEEDED and statuses[1].result == {"fine": True}
        json.dumps(statuses[0].to_dict(), ensure_ascii=False).encode("utf-8")  # printable anywhere
    finally:
        redis_client.delete(store.active_key, store.meta_key(good))
