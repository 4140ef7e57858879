"""Readers never run code from the store: a pickled payload whose ``__reduce__`` writes a
canary file is stored for a succeeded, a failed and a running task of an app that accepts
pickle; every route and command that shows them leaves no canary and says why the value is
not shown. With the opt-in (``--decode-pickle``), the value is shown.
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from datetime import datetime, timezone

import pytest

import celery_ext
from celery_ext.records import store_for
from celery_ext.status import Outcome, Phase
from flower_fileintel.testing import FlowerServer, http_get
from tests import pickle_proj
from tests.harness import run_celery

pytestmark = pytest.mark.integration

AUTH = ("alice", "s3cret")


@pytest.fixture
def stored(app, redis_client, tmp_path):
    """Three tasks whose stored meta is a pickle carrying the canary; returns (ids, canary)."""
    canary = tmp_path / "canary"
    papp = pickle_proj.app
    store = store_for(papp)
    now = time.time()
    ids = {"succeeded": str(uuid.uuid4()), "failed": str(uuid.uuid4()), "running": str(uuid.uuid4())}
    metas = {
        "succeeded": {"status": "SUCCESS", "result": pickle_proj.Canary(str(canary))},
        "failed": {"status": "FAILURE", "result": pickle_proj.Canary(str(canary))},
        "running": {"status": "PROGRESS", "result": {"current": 1, "total": 2, "message": pickle_proj.Canary(str(canary))}},
    }
    records = {
        "succeeded": {"state": "SUCCESS", "rank": "3", "completed_at": repr(now)},
        "failed": {"state": "FAILURE", "rank": "3", "completed_at": repr(now), "error_type": "ValueError",
                   "error_message": "disk full"},
        "running": {"state": "STARTED", "rank": "2", "started_at": repr(now)},
    }
    for kind, task_id in ids.items():
        meta = {"traceback": None, "children": [], "task_id": task_id,
                "date_done": datetime.now(timezone.utc).isoformat() if kind != "running" else None, **metas[kind]}
        payload = pickle.dumps(meta)
        redis_client.set(store.meta_key(task_id), payload, ex=3600)
        redis_client.hset(store.record_key(task_id), mapping={**records[kind], "name": "tests.proj.add",
                                                              "result_bytes": str(len(payload))})
    yield ids, canary
    assert not papp.conf.get("fileintel_decode_pickle"), "a test left the opt-in on"


def test_describe_refuses_pickle_and_says_how_to_allow_it(stored):
    ids, canary = stored
    statuses = {kind: celery_ext.describe(pickle_proj.app, tid) for kind, tid in ids.items()}
    assert not canary.exists()
    ok = statuses["succeeded"]
    assert ok.outcome is Outcome.NOT_READABLE and ok.result is None and ok.result_available
    assert any("stored as pickle" in n and "fileintel_decode_pickle = True" in n for n in ok.notes)
    failed = statuses["failed"]
    assert failed.outcome is Outcome.FAILED and failed.error is not None and failed.error.message == "disk full"
    running = statuses["running"]
    assert running.phase is Phase.RUNNING and running.progress is None
    assert any("stored as pickle" in n for n in running.notes)


@pytest.mark.slow
def test_no_cli_command_unpickles_without_the_flag(stored):
    ids, canary = stored
    for kind, task_id in ids.items():
        for args in (("status", task_id), ("status", task_id, "--json"), ("result", task_id),
                     ("result", task_id, "--output", "-"), ("wait", task_id, "--timeout", "0")):
            run = run_celery("fileintel", *args, app="tests.pickle_proj")
            assert "Traceback" not in run.stderr, run.stderr
            assert not canary.exists(), (kind, args)
    run = run_celery("fileintel", "result", ids["succeeded"], app="tests.pickle_proj")
    assert run.returncode == 3 and "pickle" in run.stderr and "--decode-pickle" in run.stderr
    doc = json.loads(run_celery("fileintel", "status", ids["succeeded"], "--json", app="tests.pickle_proj").stdout)
    assert doc["outcome"] == "not_readable"


@pytest.mark.slow
def test_with_the_flag_the_cli_shows_the_value(stored):
    ids, canary = stored
    run = run_celery("fileintel", "result", ids["succeeded"], "--decode-pickle", app="tests.pickle_proj")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "the canary's value"
    assert canary.exists()  # the opt-in really decodes pickle: that is what it means


def test_no_flower_route_unpickles(stored):
    ids, canary = stored
    with FlowerServer(pickle_proj.app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as flower:
        paths = ["/fileintel", "/fileintel/board.json"]
        for task_id in ids.values():
            paths += [
                f"/api/fileintel/task/{task_id}",
                f"/api/fileintel/task/{task_id}/result",
                f"/api/fileintel/task/{task_id}/result/download",
                f"/fileintel/task/{task_id}",
                f"/fileintel/task/{task_id}/status.json",
                f"/fileintel/task/{task_id}/download",
            ]
        for path in paths:
            resp = http_get(flower.url(path), auth=AUTH)
            assert resp.status < 500, (path, resp.status)
            assert not canary.exists(), path

        ok = ids["succeeded"]
        result = http_get(flower.url(f"/api/fileintel/task/{ok}/result"), auth=AUTH)
        assert (result.status, result.json()["code"]) == (422, "result_not_readable")
        assert "pickle" in json.dumps(result.json()["task"]["notes"])
        page = http_get(flower.url(f"/fileintel/task/{ok}"), auth=AUTH).text
        assert 'data-outcome="not_readable"' in page and "fileintel_decode_pickle" in page and 'id="fi-raw"' in page

        # The raw download hands over the bytes as stored, decoding nothing.
        raw = http_get(flower.url(f"/api/fileintel/task/{ok}/result/raw"), auth=AUTH)
        assert raw.status == 200 and raw.headers["Content-Type"] == "application/octet-stream"
        assert raw.body == store_for(pickle_proj.app).client().get(store_for(pickle_proj.app).meta_key(ok))
        assert not canary.exists()
        assert http_get(flower.url(f"/api/fileintel/task/{ok}/result/raw")).status == 401  # still authenticated


def test_live_updates_do_not_unpickle_pushed_messages(stored):
    """A pushed state change is decoded on the board's fast path: pickle is refused there too."""
    from celery_ext.push import Message
    from flower_fileintel.live import LiveHub

    ids, canary = stored
    hub = LiveHub(pickle_proj.app, describe_many=lambda ids: [], board_snapshot=lambda: {})
    payload = pickle.dumps({"status": "PROGRESS", "result": {"current": pickle_proj.Canary(str(canary))}})
    assert hub._board_update(Message(ids["running"], payload)) is None
    assert not canary.exists()
