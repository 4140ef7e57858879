"""One run, every edge: for each way a task can end up, the CLI's exit code, the result API's
HTTP status and the ``outcome`` in ``status --json`` and in the API's document follow the one
table (``cli.RESULT_EXIT``, ``handlers.RESULT_API``), against real workers, a real Flower
and the real ``celery`` executable.
"""

from __future__ import annotations

import json
import uuid

import pytest

from celery_ext.records import forget_store, meta_key
from celery_ext.status import Outcome, Phase
from flower_fileintel.testing import FlowerServer, http_get
from tests import proj
from tests.harness import run_celery
from tests.status_checks import revoke_confirmed, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = ("alice", "s3cret")
SHORT_QUEUE = "fileintel-short-results"
MAX_RESULT_BYTES = 2000
ENV = {"FILEINTEL_TEST_MAX_RESULT_BYTES": str(MAX_RESULT_BYTES)}

#: outcome -> (CLI `result` exit code, result API HTTP status): the table docs/cli.md and
#: docs/flower.md promise.
PROMISED = {
    Outcome.OK: (0, 200),
    Outcome.FAILED: (1, 409),
    Outcome.REVOKED: (1, 409),
    Outcome.EVICTED: (3, 410),
    Outcome.EXPIRED: (3, 410),
    Outcome.NO_RESULT: (3, 404),
    Outcome.UNKNOWN: (4, 404),
    Outcome.TOO_LARGE: (5, 413),
    Outcome.NOT_READY: (124, 202),
}


@pytest.fixture
def small_results(app):
    previous = app.conf.get("fileintel_max_result_bytes")
    app.conf.fileintel_max_result_bytes = MAX_RESULT_BYTES
    forget_store(app)
    yield
    app.conf.fileintel_max_result_bytes = previous
    forget_store(app)


def _settled(app, task_id, timeout=30.0):
    """Finished, and the worker's final record write has landed."""
    return wait_for(app, task_id, lambda s: s.phase.finished and s.completed_at is not None, timeout)


def test_every_outcome_reads_the_same_at_every_edge(app, small_results, redis_client, subprocess_worker):
    subprocess_worker(pool="prefork", concurrency=2, env=ENV)
    subprocess_worker(pool="solo", concurrency=1, queues=[SHORT_QUEUE], env={**ENV, "FILEINTEL_TEST_RESULT_EXPIRES": "1"})

    ids: dict[Outcome, str] = {}
    ids[Outcome.OK] = proj.add.delay(2, 3).id
    ids[Outcome.FAILED] = proj.fail.delay("disk full").id
    ids[Outcome.NO_RESULT] = proj.fire_and_forget.delay(1).id
    ids[Outcome.TOO_LARGE] = proj.echo.delay("x" * (MAX_RESULT_BYTES * 2)).id
    ids[Outcome.EVICTED] = proj.add.delay(4, 5).id
    ids[Outcome.EXPIRED] = proj.add.apply_async((6, 7), queue=SHORT_QUEUE).id
    ids[Outcome.NOT_READY] = proj.add.apply_async((1, 1), queue=proj.NOBODY_QUEUE).id
    ids[Outcome.UNKNOWN] = str(uuid.uuid4())
    running = proj.sleep.delay(60)
    ids[Outcome.REVOKED] = running.id

    wait_for(app, running.id, lambda s: s.phase is Phase.RUNNING, timeout=30)
    revoke_confirmed(app, running.id, terminate=True, signal="SIGKILL")
    for outcome in (Outcome.OK, Outcome.FAILED, Outcome.NO_RESULT, Outcome.TOO_LARGE, Outcome.EVICTED, Outcome.EXPIRED, Outcome.REVOKED):
        _settled(app, ids[outcome])
    redis_client.delete(meta_key(app, ids[Outcome.EVICTED]))
    wait_for(app, ids[Outcome.EXPIRED], lambda s: s.outcome is Outcome.EXPIRED, timeout=10)
    revoked = wait_for(app, running.id, lambda s: s.runtime_s is not None, timeout=10)
    assert revoked.outcome is Outcome.REVOKED and revoked.runtime_s > 0  # terminated while running

    seen = {}
    with FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as flower:
        for outcome, task_id in ids.items():
            status_doc = json.loads(run_celery("fileintel", "status", task_id, "--json", env=ENV).stdout)
            exit_code = run_celery("fileintel", "result", task_id, env=ENV).returncode
            api_doc = http_get(flower.url(f"/api/fileintel/task/{task_id}"), auth=AUTH).json()
            api_status = http_get(flower.url(f"/api/fileintel/task/{task_id}/result"), auth=AUTH).status
            seen[outcome] = (status_doc["outcome"], api_doc["outcome"], exit_code, api_status)
    expected = {o: (o.value, o.value, *PROMISED[o]) for o in ids}
    assert seen == expected
