"""The board's "stuck" section end to end: tasks sent to a queue no worker consumes, with a
real worker on another queue, a real Flower (over HTTP, and in Chromium at 1280 px) and the
private Redis.

Flower learns its live workers from heartbeat events; the in-process test worker's are fed
into Flower's own events state (``FlowerServer`` does not capture events), and the worker's
queues come from a real ``inspect active_queues`` the plugin asks Flower to send.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from celery_ext.records import store_for
from flower_fileintel.testing import FlowerServer, http_get
from tests.harness import wait_for
from tests.pages import DESKTOP, open_page

pytestmark = pytest.mark.integration

AUTH = ("alice", "s3cret")
#: A second queue nobody consumes at first; a worker starts consuming it mid-test.
LATER_QUEUE = "fileintel-later"


@contextlib.contextmanager
def stuck_after(app, seconds):
    """``fileintel_stuck_after`` set for a while (read when Flower's plugin state is created);
    None afterwards reads as the default."""
    before = app.conf.get("fileintel_stuck_after")
    app.conf["fileintel_stuck_after"] = seconds
    try:
        yield
    finally:
        app.conf["fileintel_stuck_after"] = before


@pytest.fixture
def stuck_soon(app):
    with stuck_after(app, 1.0):
        yield 1.0


@pytest.fixture
def flower(app, stuck_soon):
    with FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as server:
        yield server


def get(server, path):
    return http_get(server.url(path), auth=AUTH)


def worker_is_alive_in_flower(flower, hostname):
    """A heartbeat event from ``hostname``, as Flower's event capture would apply it."""
    now = time.time()
    event = {"type": "worker-heartbeat", "hostname": hostname, "timestamp": now, "local_received": now,
             "utcoffset": 0, "pid": 1, "clock": 1, "freq": 600.0, "active": 0, "processed": 0,
             "loadavg": [0.0, 0.0, 0.0], "sw_ident": "py-celery", "sw_ver": "5", "sw_sys": "Linux"}
    flower.call(lambda: flower.flower_app.events.state.event(event))


def stuck_entries(flower):
    resp = get(flower, "/fileintel/board.json")
    assert resp.status == 200
    return resp.json()["stuck"]


def test_tasks_on_a_queue_nobody_consumes_are_stuck_with_queue_age_and_no_consumer(app, worker, flower):
    from tests.proj import NOBODY_QUEUE

    worker_is_alive_in_flower(flower, worker.hostname)
    nobody = [app.tasks["tests.proj.add"].apply_async((i, i), queue=NOBODY_QUEUE).id for i in range(3)]
    later = app.tasks["tests.proj.add"].apply_async((5, 5), queue=LATER_QUEUE)
    consumed = app.tasks["tests.proj.add"].delay(1, 2)
    assert consumed.get(timeout=10) == 3

    def all_four_stuck_and_flower_knows_the_worker():
        entries = stuck_entries(flower)
        return [e["task_id"] for e in entries] == [*nobody, later.id] and all(
            e["consumers"]["state"] == "none" for e in entries
        )

    wait_for(all_four_stuck_and_flower_knows_the_worker, timeout=20, what="the stuck tasks with their consumers")
    entries = stuck_entries(flower)
    assert [e["queue"] for e in entries] == [NOBODY_QUEUE] * 3 + [LATER_QUEUE]
    assert all(e["queued_for_s"] > 1.0 and e["phase"] == "queued" for e in entries)
    assert [e["queued_for_s"] for e in entries] == sorted((e["queued_for_s"] for e in entries), reverse=True)
    assert entries[0]["consumers"]["text"] == f"no live worker consumes {NOBODY_QUEUE}"
    assert consumed.id not in {e["task_id"] for e in entries}

    page = get(flower, f"/fileintel/task/{nobody[0]}")
    assert page.status == 200
    text = page.body.decode()
    assert 'id="fi-queued"' in text and 'data-stuck="true"' in text
    assert f"no live worker consumes {NOBODY_QUEUE}" in text and f"-Q {NOBODY_QUEUE}" in text

    # A worker starts consuming the second queue: its task runs and leaves the section and
    # the index; the three others stay.
    app.control.add_consumer(LATER_QUEUE, destination=[worker.hostname], reply=True, timeout=5)
    assert later.get(timeout=10) == 10
    wait_for(lambda: [e["task_id"] for e in stuck_entries(flower)] == nobody, what="the consumed task to leave")
    wait_for(lambda: store_for(app).client().zscore(store_for(app).queued_key, later.id) is None,
             what="the consumed task to leave the queued index")


def test_a_task_page_shows_a_queued_tasks_age_and_queue_before_it_is_stuck(app, worker):
    from tests.proj import NOBODY_QUEUE

    with stuck_after(app, 3600.0), FlowerServer(app, basic_auth=[f"{AUTH[0]}:{AUTH[1]}"]) as flower:
        queued = app.tasks["tests.proj.add"].apply_async((1, 1), queue=NOBODY_QUEUE)
        text = get(flower, f"/fileintel/task/{queued.id}").body.decode()
        assert 'id="fi-queued"' in text and 'data-stuck="false"' in text
        assert f'<code id="fi-queued-queue">{NOBODY_QUEUE}</code>' in text
        assert stuck_entries(flower) == []  # queued, not stuck


@pytest.mark.browser
@pytest.mark.slow
def test_the_board_shows_three_stuck_tasks_with_queue_and_age_at_1280px(app, worker, flower, browser):
    from tests.proj import NOBODY_QUEUE

    worker_is_alive_in_flower(flower, worker.hostname)
    nobody = [app.tasks["tests.proj.add"].apply_async((i, i), queue=NOBODY_QUEUE).id for i in range(3)]
    wait_for(lambda: [e["task_id"] for e in stuck_entries(flower)] == nobody, what="three stuck tasks")
    context = browser.new_context(http_credentials={"username": AUTH[0], "password": AUTH[1]}, viewport=DESKTOP)
    page = context.new_page()
    try:
        open_page(page, flower.url("/fileintel"))
        rows = page.locator("#fi-stuck tbody tr")
        wait_for(lambda: rows.count() == 3 and "no live worker" in rows.nth(2).text_content(),
                 timeout=20, what="three stuck rows saying nobody consumes their queue")
        assert [rows.nth(i).get_attribute("data-task-id") for i in range(3)] == nobody
        for i in range(3):
            row = rows.nth(i)
            assert row.locator('[data-label="Queue"]').text_content() == NOBODY_QUEUE
            age = row.locator('[data-label="Queued for"]').text_content()
            assert age.endswith(" s") or "min" in age, age  # "3 s", "1 min 2 s": a duration
            assert row.locator('[data-label="Consumers"]').text_content() == f"no live worker consumes {NOBODY_QUEUE}"
        assert page.locator("#fi-stuck-count").text_content() == "3"
        assert page.locator("#fi-stuck-empty").is_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    finally:
        context.close()
