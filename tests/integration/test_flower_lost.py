"""The board's "lost" section end to end: a task whose worker was killed (SIGKILL, no last
write) while it ran, read by a real Flower over HTTP and in Chromium at 1280 and 390 px.

``fileintel_lost_after`` is short (the worker beats every ``lost_after / 6`` s) so the task
reads lost a few seconds after the kill; celery_ext decides it, the board only shows it.
"""

from __future__ import annotations

import pytest

from flower_fileintel.testing import FlowerServer, http_get
from tests import proj
from tests.harness import LOST_AFTER, kill_worker_tree, lost_after, wait_for
from tests.pages import CELLS_REACHABLE, DESKTOP, PHONE, open_page
from tests.status_checks import wait_for_phase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTH = ("alice", "s3cret")


@pytest.fixture
def lost_task(app, subprocess_worker):
    """The id and worker of a task that was running when its worker was SIGKILLed; this
    process reads with ``fileintel_lost_after=LOST_AFTER`` for the test."""
    worker = subprocess_worker(pool="prefork", concurrency=1, env={"FILEINTEL_TEST_LOST_AFTER": str(LOST_AFTER)})
    with lost_after(app, LOST_AFTER):
        result = proj.sleep.delay(60)
        wait_for_phase(app, result.id, "running", timeout=20)
        kill_worker_tree(worker)
        yield {"id": result.id, "worker": worker.hostname}


@pytest.fixture
def flower(app, lost_task):
    with FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as server:
        yield server


def board(flower):
    resp = http_get(flower.url("/fileintel/board.json"), auth=AUTH)
    assert resp.status == 200
    return resp.json()


def test_a_task_whose_worker_died_leaves_running_for_the_lost_list(flower, lost_task):
    def lost_entry():
        return next((e for e in board(flower)["lost"] if e["task_id"] == lost_task["id"]), None)

    entry = wait_for(lost_entry, timeout=LOST_AFTER * 5, what="the killed worker's task in the lost list")
    assert entry["phase"] == "lost" and entry["outcome"] == "lost"
    assert entry["worker"] == lost_task["worker"] and entry["worker_last_seen_at"] is not None
    assert entry["worker_silent_for_s"] > LOST_AFTER * 0.5  # silent since before it read lost
    assert lost_task["id"] not in {e["task_id"] for e in board(flower)["running"]}


@pytest.mark.browser
def test_the_board_shows_a_lost_task_in_its_own_section_at_1280_and_390px(flower, lost_task, browser):
    wait_for(lambda: lost_task["id"] in {e["task_id"] for e in board(flower)["lost"]},
             timeout=LOST_AFTER * 5, what="the killed worker's task in the lost list")
    for viewport in (DESKTOP, PHONE):
        context = browser.new_context(http_credentials={"username": AUTH[0], "password": AUTH[1]}, viewport=viewport)
        page = context.new_page()
        try:
            open_page(page, flower.url("/fileintel"))
            row = page.locator(f'#fi-lost tr[data-task-id="{lost_task["id"]}"]')
            row.wait_for(timeout=10000)
            assert page.locator(f'#fi-running tr[data-task-id="{lost_task["id"]}"]').count() == 0
            assert row.locator('[data-label="Worker"]').text_content() == lost_task["worker"]
            seen = row.locator('[data-label="Worker last seen"] time')
            assert (seen.text_content() or "").endswith(" ago"), seen.text_content()
            assert (seen.get_attribute("title") or "").endswith(" UTC")  # the exact time on hover
            count = page.locator("#fi-lost-count").text_content()
            assert count == str(page.locator("#fi-lost tbody tr").count())
            assert page.locator("#fi-lost-empty").is_hidden()
            hint = page.locator("#fi-lost-hint")
            assert hint.is_visible() and "acks_late" in hint.text_content()
            # Right after Running, readable at both widths, every cell visible.
            headings = page.locator(".fi-h2").all_text_contents()
            assert headings[0].startswith("Running") and headings[1].startswith("Lost (their worker died)")
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            assert page.evaluate(CELLS_REACHABLE) == []
        finally:
            context.close()
