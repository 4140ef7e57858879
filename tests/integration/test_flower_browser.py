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
from tests.pages import CELLS_REACHABLE, DESKTOP, PHONE, open_page
from tests.status_checks import reports_progress_as_started

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
def page(browser):
    context = browser.new_context(http_credentials=AUTH)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def test_hostile_task_text_executes_nothing_and_is_shown_literally(app, worker, flower, page):
    from tests.proj import NOBODY_QUEUE

    result = app.tasks["tests.proj.echo"].delay({"html": PAYLOAD})
    result.get(timeout=10)
    failed = app.tasks["tests.proj.fail"].delay(PAYLOAD)
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    running = app.tasks["tests.proj.raw_progress"].delay({"current": 1, "total": 4, "message": PAYLOAD}, 10)
    wait_for(lambda: reports_progress_as_started(app, running.id))
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


# --------------------------------------------------------------------------------------------
# the on-call board: phone width, dark mode, readable formats, the task's story

#: Lines an element's text takes (its height over its line height).
LINES = """el => {
  const style = getComputedStyle(el);
  const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.2;
  return Math.round(el.getBoundingClientRect().height / line);
}"""

#: WCAG contrast ratio of each badge's text colour against its background colour.
BADGE_CONTRAST = """() => {
  function lum(css) {
    const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  return Array.from(document.querySelectorAll('.fi-badge')).map(el => {
    const s = getComputedStyle(el);
    const a = lum(s.color), b = lum(s.backgroundColor);
    return [el.textContent, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), s.backgroundColor];
  });
}"""


@pytest.fixture
def board_tasks(app, worker):
    """A running task, and a succeeded, a failed and a revoked one on the board."""
    import uuid

    from celery_ext.records import recent_task_ids
    from tests.status_checks import revoke_confirmed

    ok = app.tasks["tests.proj.add"].delay(2, 3)
    ok.get(timeout=10)
    failed = app.tasks["tests.proj.fail"].delay("disk full")
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    revoked_id = str(uuid.uuid4())
    revoke_confirmed(app, revoked_id)
    app.tasks["tests.proj.add"].apply_async((1, 2), task_id=revoked_id)
    release = f"release-{uuid.uuid4()}"
    running = app.tasks["tests.proj.progress_until"].delay(release)
    wait_for(lambda: reports_progress_as_started(app, running.id))
    wait_for(lambda: {ok.id, failed.id, revoked_id} <= set(recent_task_ids(app, "finished", 20)))
    yield {"ok": ok.id, "failed": failed.id, "revoked": revoked_id, "running": running.id}
    app.backend.client.set(release, 1)
    assert running.get(timeout=30) == "released"


def open_board(page, flower, task_ids):
    open_page(page, flower.url("/fileintel"))
    for task_id in task_ids:
        page.locator(f'.fi-table tr[data-task-id="{task_id}"]').first.wait_for(timeout=10000)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
def test_board_fits_the_width_and_every_cell_can_be_seen(browser, flower, board_tasks, viewport):
    context = browser.new_context(http_credentials=AUTH, viewport=viewport)
    page = context.new_page()
    try:
        open_board(page, flower, board_tasks.values())
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert page.evaluate(CELLS_REACHABLE) == []
        for code in page.locator(".fi-id code").all():
            assert code.evaluate(LINES) <= 1  # the short id stays on one line...
            assert len(code.get_attribute("title")) == 36  # ...with the whole id on hover
        open_page(page, flower.url(f"/fileintel/task/{board_tasks['failed']}"))
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        assert page.locator("#fi-task-id").evaluate(LINES) <= 3
    finally:
        context.close()


def flower_version() -> str:
    import flower

    return flower.__version__


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_badges_are_readable_in_both_themes(browser, flower, board_tasks, scheme):
    context = browser.new_context(http_credentials=AUTH, color_scheme=scheme)
    page = context.new_page()
    try:
        open_board(page, flower, board_tasks.values())
        theme = page.evaluate("document.documentElement.getAttribute('data-bs-theme')")
        if theme is None and scheme == "dark":  # the oldest Flower we support: always light
            pytest.skip(f"Flower {flower_version()} has no theme switch, so no dark theme")
        assert (theme or "light") == scheme
        contrasts = page.evaluate(BADGE_CONTRAST)
        assert {text for text, _, _ in contrasts} >= {"succeeded", "failed", "revoked", "running"}
        for text, ratio, background in contrasts:
            assert ratio >= 4.5, f"{text} badge: contrast {ratio:.2f} on {background} ({scheme})"
    finally:
        context.close()


def test_board_rows_read_well_and_ids_copy(browser, flower, board_tasks):
    context = browser.new_context(http_credentials=AUTH)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        open_board(page, flower, board_tasks.values())
        import re

        ok_row = page.locator(f'#fi-finished tr[data-task-id="{board_tasks["ok"]}"]')
        assert re.fullmatch(r"[\d.]+ (ms|s)", ok_row.locator('td[data-label="Runtime"]').text_content())
        revoked = page.locator(f'#fi-finished tr[data-task-id="{board_tasks["revoked"]}"]')
        # revoked before it started: no runtime to show (one that ran shows start to end:
        # test_board_format.py)
        assert revoked.locator('td[data-label="Runtime"]').text_content() == "\u2014"
        completed = revoked.locator("time.fi-when")
        assert completed.get_attribute("title").endswith(" UTC")  # absolute on hover
        text = completed.text_content()
        assert text == "just now" or text.endswith(" ago")
        assert "T" not in text and "." not in text  # no raw ISO timestamps
        percent = page.locator(f'#fi-running tr[data-task-id="{board_tasks["running"]}"] .fi-percent')
        assert percent.text_content() == "50 %"
        # No task is lost: the section says so, without its what-to-do paragraph.
        assert page.locator("#fi-lost-empty").is_visible() and page.locator("#fi-lost-hint").is_hidden()
        assert "tabular-nums" in percent.evaluate("el => getComputedStyle(el).fontVariantNumeric")
        button = page.locator(f'#fi-finished tr[data-task-id="{board_tasks["ok"]}"] .fi-copy')
        button.click()
        page.wait_for_function("el => el.getAttribute('data-copied') === '1'", arg=button.element_handle())
        assert page.evaluate("navigator.clipboard.readText()") == board_tasks["ok"]
        pinned = page.locator(f'#fi-failures tr[data-task-id="{board_tasks["failed"]}"]')
        assert pinned.locator('td[data-label="Phase"]').text_content() == "failed"
        assert pinned.locator('td[data-label="Error"]').text_content().startswith("ValueError")
    finally:
        context.close()


def test_the_pages_formats_match_the_pythons(page, flower):
    """fileintel.js mirrors flower_fileintel.formatting: the same examples, the same text."""
    from datetime import datetime, timedelta, timezone

    from flower_fileintel.formatting import (
        absolute_text,
        duration_text,
        percent_text,
        relative_text,
        size_text,
    )

    open_page(page, flower.url("/fileintel"))
    now = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    now_ms = now.timestamp() * 1000
    for seconds in (0.004, 0.25, 2, 9.5, 45, 75, 150, 3600, 7260, 90000, 200000):
        assert page.evaluate("s => fileintelFormat.duration(s)", seconds) == duration_text(seconds)
    for nbytes in (0, 512, 4300, 4_404_019, 5 * 1024**3):
        assert page.evaluate("n => fileintelFormat.bytes(n)", nbytes) == size_text(nbytes)
    for value in (0, 15, 18.3333, 99.9, 100):
        assert page.evaluate("v => fileintelFormat.percent(v)", value) == percent_text(value)
    for delta in (-180, 27 * 60, 0.3, -7260):
        moment = now + timedelta(seconds=delta)
        assert page.evaluate("([iso, now]) => fileintelFormat.relative(iso, now)", [moment.isoformat(), now_ms]) == relative_text(moment, now)
    assert page.evaluate("iso => fileintelFormat.absolute(iso)", now.isoformat()) == absolute_text(now)


def test_board_shows_loading_before_its_first_data(browser, flower):
    context = browser.new_context(http_credentials=AUTH)
    page = context.new_page()
    try:
        # Hold the board's data back: the page must not claim that nothing exists meanwhile.
        page.route("**/fileintel/events", lambda route: route.abort())
        page.route("**/fileintel/board.json", lambda route: None)  # never answered
        page.goto(flower.url("/fileintel"))
        page.wait_for_function("() => document.documentElement.getAttribute('data-fileintel-ready') === '1'")
        assert page.locator("#fi-finished-empty").text_content() == "Loading…"
        assert "No finished tasks" not in page.locator("#fi-board").text_content()
    finally:
        context.close()


def test_task_page_shows_its_arguments_and_flowers_page_links_to_it(app, worker, flower, page):
    from tests.harness import feed_events

    result = app.tasks["tests.proj.echo"].delay({"file": "report.pdf"})
    result.get(timeout=10)
    feed_events(flower, result.id, "tests.proj.echo", args="({'file': 'report.pdf'},)", kwargs=PAYLOAD,
                routing_key="files")
    open_page(page, flower.url(f"/fileintel/task/{result.id}"))
    assert page.locator("#fi-args").text_content() == "({'file': 'report.pdf'},)"
    assert page.locator("#fi-kwargs").text_content() == PAYLOAD  # text, not markup
    assert page.locator("#fi-routing-key").text_content().startswith("files")
    page.goto(flower.url(f"/task/{result.id}"))
    link = page.locator("#fileintel-task-link")
    if page.locator("#task-page .detail-actions").count():  # Flower 2.1+: beside its buttons
        assert page.locator("#task-page .detail-actions #fileintel-task-link").count() == 1
    link.click()
    page.wait_for_url(flower.url(f"/fileintel/task/{result.id}"))
    assert page.dialogs == []


def test_finished_filters_and_paging_reach_past_the_first_page(app, worker, flower, page):
    from celery_ext.records import recent_task_ids

    failed = app.tasks["tests.proj.fail"].delay("found by the filter")
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    for r in [app.tasks["tests.proj.add"].delay(i, 1) for i in range(26)]:
        r.get(timeout=20)
    wait_for(lambda: len(recent_task_ids(app, "finished", 100)) == 27)
    open_page(page, flower.url("/fileintel"))
    row = f'#fi-finished tr[data-task-id="{failed.id}"]'
    page.locator("#fi-finished tbody tr").first.wait_for()
    assert page.locator(row).count() == 0  # 26 newer successes pushed it off page 1

    page.select_option("#fi-finished-filters select[name=phase]", "failed")
    page.locator(row).wait_for(timeout=10000)
    assert page.locator("#fi-finished tbody tr").count() == 1
    assert "phase=failed" in page.url  # a link to this view can be shared

    page.select_option("#fi-finished-filters select[name=phase]", "")
    page.fill("#fi-finished-filters input[name=q]", failed.id[:8])
    page.wait_for_function("id => { const rows = document.querySelectorAll('#fi-finished tbody tr');"
                           " return rows.length === 1 && rows[0].getAttribute('data-task-id') === id; }", arg=failed.id)

    page.fill("#fi-finished-filters input[name=q]", "")
    page.wait_for_function("() => document.querySelectorAll('#fi-finished tbody tr').length === 25")
    page.click("#fi-finished-next")
    page.locator(row).wait_for(timeout=10000)
    assert page.locator("#fi-finished-next").is_disabled()


def test_a_task_silent_past_fileintel_stalled_after_is_flagged_on_the_board(app, worker, browser):
    """The "no progress for N s" flag, end to end: the threshold comes from the
    ``fileintel_stalled_after`` setting (2 s here instead of 60), and a task that reported
    progress once and then went silent gets the flag without a reload."""
    import uuid

    release = f"release-{uuid.uuid4()}"
    silent = app.tasks["tests.proj.progress_until"].delay(release)  # reports 1 of 2, then nothing
    wait_for(lambda: reports_progress_as_started(app, silent.id))
    previous = app.conf.get("fileintel_stalled_after")  # None reads as the default
    app.conf.fileintel_stalled_after = 2  # read by the plugin when Flower starts
    try:
        with FlowerServer(app, basic_auth=[f"{AUTH['username']}:{AUTH['password']}"]) as flower:
            context = browser.new_context(http_credentials=AUTH)
            page = context.new_page()
            open_page(page, flower.url("/fileintel"))
            row = page.locator(f'#fi-running tr[data-task-id="{silent.id}"]')
            row.wait_for(timeout=10000)
            flag = row.locator(".fi-stalled")
            flag.wait_for(state="visible", timeout=30000)
            assert (flag.text_content() or "").startswith("no progress for ")
            assert "last progress report" in (flag.get_attribute("title") or "")
            context.close()
    finally:
        app.conf.fileintel_stalled_after = previous
        app.backend.client.set(release, 1)
    assert silent.get(timeout=30) == "released"
