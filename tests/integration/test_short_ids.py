"""Short ids: the 8 characters the board shows lead to the task in the CLI, the API and the
pages, when exactly one recent task starts with them."""

from __future__ import annotations

import json
import uuid

import pytest

from celery_ext.errors import AmbiguousTaskId
from celery_ext.prefix import describe_id_or_prefix, resolve_prefix
from celery_ext.records import store_for
from celery_ext.status import Outcome, Phase
from flower_fileintel.testing import FlowerServer, http_get
from tests import proj
from tests.harness import run_celery
from tests.status_checks import check_document, wait_for

AUTH = ("u", "p")


@pytest.fixture
def finished(app, worker):
    result = proj.add.delay(20, 22)
    result.get(timeout=30)
    wait_for(app, result.id, lambda s: s.runtime_s is not None, timeout=30)  # indexed as finished
    return result.id


@pytest.mark.integration
def test_a_unique_prefix_resolves_in_the_library_and_the_cli(app, finished):
    short = finished[:8]
    assert resolve_prefix(app, short) == finished
    assert describe_id_or_prefix(app, short).task_id == finished

    status = run_celery("fileintel", "status", short, "--json")
    assert status.returncode == 0, status.stderr
    document = check_document(json.loads(status.stdout))
    assert document["task_id"] == finished and document["phase"] == "succeeded"
    result = run_celery("fileintel", "result", short)
    assert (result.returncode, json.loads(result.stdout)) == (0, 42), result.stderr
    waited = run_celery("fileintel", "wait", short, "--json", "-t", "5")
    assert waited.returncode == 0 and json.loads(waited.stdout)["task_id"] == finished


@pytest.mark.integration
def test_a_unique_prefix_leads_to_the_task_in_flower(app, finished):
    short = finished[:8]
    with FlowerServer(app, basic_auth=["u:p"]) as flower:
        page = http_get(flower.url(f"/fileintel/task/{short}"), auth=AUTH)
        api = http_get(flower.url(f"/api/fileintel/task/{short}"), auth=AUTH)
    assert page.status == 302 and page.headers["Location"] == f"/fileintel/task/{finished}"
    assert api.status == 200 and api.json()["task_id"] == finished


@pytest.mark.integration
def test_an_ambiguous_prefix_lists_the_candidates_everywhere(app, redis_client):
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-aaaa-4aaa-8aaa-{i:012d}" for i in range(2)]
    redis_client.zadd(store_for(app).finished_key, {task_id: 1 for task_id in ids})
    with pytest.raises(AmbiguousTaskId) as raised:
        resolve_prefix(app, prefix)
    assert raised.value.candidates == ids
    run = run_celery("fileintel", "status", prefix)
    assert run.returncode == 2 and ids[0] in run.stderr and ids[1] in run.stderr, run.stderr
    with FlowerServer(app, basic_auth=["u:p"]) as flower:
        api = http_get(flower.url(f"/api/fileintel/task/{prefix}"), auth=AUTH)
    assert api.status == 400 and api.json()["code"] == "ambiguous_task_id"
    assert api.json()["candidates"] == ids


@pytest.mark.integration
def test_an_apps_own_short_id_wins_over_a_prefix_match(app, redis_client):
    own = "job-" + uuid.uuid4().hex[:6]
    longer = own + "-later"
    app.backend.store_result(own, "mine", "SUCCESS")
    redis_client.zadd(store_for(app).finished_key, {longer: 1})
    status = describe_id_or_prefix(app, own)
    assert (status.task_id, status.phase, status.result) == (own, Phase.SUCCEEDED, "mine")


@pytest.mark.integration
def test_a_prefix_of_nothing_recent_stays_unknown(app):
    status = describe_id_or_prefix(app, uuid.uuid4().hex[:10])
    assert status.outcome is Outcome.UNKNOWN
