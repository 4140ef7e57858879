"""The plugin's pages in a real headless Chromium (Debian's ``chromium`` via Playwright).

- task text (result, error, progress message, name) carrying ``<script>`` / ``<img onerror>``
  runs nothing and is shown literally;
- a running task's progress bar moves without a reload, on the detail page and the board,
  by push and by the polling fallback.
"""

from __future__ import annotations

import pytest

from celery_ext import describe
from flower_fileintel.testing import FlowerServer
from tests.harness import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.slow]

AUTH = {"username": "viewer", "password": "pw"}
SCRIPT = "<script>alert('script')</script>"
IMG = "<img src=x onerror=alert('img')>"
PAYLOAD = SCRIPT + IMG


@pytest.fixture
def flower(app):
    with FlowerServer(app, basic_auth=[f"{AUTH['username']}:{AUTH['password']}"]) as server:
        yield server


@pytest.fixture
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(http_credentials=AUTH)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def open_page(page, url):
    page.goto(url)
    # The page's script ran, and a live page has applied its first update (pushed or polled).
    page.wait_for_function(
        "() => document.documentElement.getAttribute('data-fileintel-ready') === '1'"
        " && (window.fileintelTransport === undefined"
        "     || document.documentElement.getAttribute('data-fileintel-live') === '1')"
    )


def test_hostile_task_text_executes_nothing_and_is_shown_literally(app, worker, flower, page):
    from tests.proj import NOBODY_QUEUE

    result = app.tasks["tests.proj.echo"].delay({"html": PAYLOAD})
    result.get(timeout=10)
    failed = app.tasks["tests.proj.fail"].delay(PAYLOAD)
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    running = app.tasks["tests.proj.raw_progress"].delay({"current": 1, "total": 4, "message": PAYLOAD}, 10)
    wait_for(lambda: describe(app, running.id).progress is not None)
    named = app.send_task(PAYLOAD, queue=NOBODY_QUEUE)  # a task *name* carrying markup

    open_page(page, flower.url(f"/fileintel/task/{result.id}"))
    assert PAYLOAD in page.locator("#fi-result").text_content()

    open_page(page, flower.url(f"/fileintel/task/{failed.id}"))
    assert page.locator("#fi-error-message").text_content() == PAYLOAD
    assert PAYLOAD in page.locator("#fi-traceback").text_content()

    open_page(page, flower.url(f"/fileintel/task/{running.id}"))
    wait_for(lambda: page.locator("#fi-progress-message").text_content() == PAYLOAD)
    assert page.evaluate("window.fileintelTransport") == "push"

    open_page(page, flower.url(f"/fileintel/task/{named.id}"))
    assert page.locator("#fi-name").text_content() == PAYLOAD

    open_page(page, flower.url("/fileintel"))
    row = page.locator(f'#fi-running tr[data-task-id="{running.id}"]')
    row.wait_for(timeout=10000)
    assert PAYLOAD in row.text_content()

    assert page.dialogs == []
    for url in (f"/fileintel/task/{result.id}", f"/fileintel/task/{failed.id}", f"/fileintel/task/{running.id}", "/fileintel"):
        open_page(page, flower.url(url))
        assert page.locator(".fi-page img").count() == 0
        assert page.locator(".fi-page script").count() == 0
    assert page.dialogs == []


def _progress(page, selector):
    value = page.locator(selector).first.get_attribute("aria-valuenow")
    return float(value) if value is not None else -1.0


@pytest.mark.parametrize("transport", ["push", "poll"])
def test_progress_bar_moves_without_reload_on_the_detail_page(app, worker, flower, page, transport):
    result = app.tasks["tests.proj.progress_steps"].delay(10, 0.5)
    wait_for(lambda: describe(app, result.id).progress is not None)
    query = "?fi_transport=poll" if transport == "poll" else ""
    open_page(page, flower.url(f"/fileintel/task/{result.id}{query}"))
    page.evaluate("window.__notReloaded = true")
    first = _progress(page, "#fi-progressbar")
    wait_for(lambda: _progress(page, "#fi-progressbar") > first, timeout=10)
    assert page.evaluate("window.__notReloaded") is True
    assert page.evaluate("window.fileintelTransport") == transport
    assert page.locator("#fi-progress-message").text_content().startswith("step ")
    # at the end the page shows the final state (it reloads once to render the result)
    result.get(timeout=15)
    wait_for(lambda: "succeeded" in (page.locator("#fi-phase").text_content() or ""), timeout=10)
    assert page.dialogs == []


def test_progress_bar_moves_without_reload_on_the_board(app, worker, flower, page):
    result = app.tasks["tests.proj.progress_steps"].delay(10, 0.5)
    wait_for(lambda: describe(app, result.id).progress is not None)
    open_page(page, flower.url("/fileintel"))
    page.evaluate("window.__notReloaded = true")
    bar = f'#fi-running tr[data-task-id="{result.id}"] [role=progressbar]'
    page.locator(bar).wait_for(timeout=10000)
    first = _progress(page, bar)
    wait_for(lambda: _progress(page, bar) > first, timeout=10)
    assert page.evaluate("window.__notReloaded") is True
    assert page.evaluate("window.fileintelProgressBatches") >= 1  # moved by pushed batches
    result.get(timeout=15)


@pytest.mark.slow
def test_the_board_keeps_updating_across_a_flower_restart(app, worker, browser):
    """Viewers connected while Flower restarts (a real process, killed and started again on
    its port): the page falls back to polling and shows tasks that finish after the restart,
    with no reload."""
    from tests.harness import free_port, kill_process_tree, start_celery, wait_listening

    port = free_port()
    env = {"FLOWER_BASIC_AUTH": f"{AUTH['username']}:{AUTH['password']}"}

    def start_flower():
        proc = start_celery("fileintel", "flower", f"--port={port}", "--address=127.0.0.1", env=env)
        wait_listening(proc, port)
        return proc

    context = browser.new_context(http_credentials=AUTH)
    page = context.new_page()
    flower = start_flower()
    try:
        open_page(page, f"http://127.0.0.1:{port}/fileintel")
        kill_process_tree(flower, term_timeout=10)
        flower = start_flower()
        result = app.tasks["tests.proj.add"].delay(2, 3)
        assert result.get(timeout=30) == 5
        page.wait_for_function(
            "short => document.getElementById('fi-board').textContent.includes(short)",
            arg=result.id[:8], timeout=30000,
        )
        assert page.text_content("#fi-live")
    finally:
        kill_process_tree(flower, term_timeout=10)
        context.close()
