"""Retake README's screenshots from the running demo.

    .venv/bin/python scripts/screenshots.py [--port 5599]

Starts the demo for a minute and a half, waits until progress tasks are running and the\ndemo's queued task reads stuck, and
photographs in headless Chromium (Debian's ``chromium`` through Playwright):

- docs/board.png and docs/detail.png: the board and a running task's page, 1280x800, light;
- docs/board-dark.png: the whole board in Flower's dark theme (the browser prefers dark);
- docs/board-phone.png: the board at a phone's 390 px width (the whole page).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5599)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("screenshots: Debian's chromium is needed (apt-get install chromium)")
    state = REPO / ".screenshots-demo-state.json"
    env = dict(os.environ, FILEINTEL_DEMO_STATE_FILE=str(state))
    demo = subprocess.Popen(
        [sys.executable, "-m", "fileintel_demo", "--port", str(args.port), "--duration", "90",
         "--interval", "5"],
        cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{args.port}"
        task_id = _running_progress_task(base, env)
        _wait_for_stuck_task(base)
        time.sleep(2)  # let the bars move
        from playwright.sync_api import sync_playwright

        shots = [
            # (name, path, viewport, colour scheme, whole page)
            ("detail", f"/fileintel/task/{task_id}", DESKTOP, "light", False),
            ("board", "/fileintel", DESKTOP, "light", False),
            ("board-dark", "/fileintel", DESKTOP, "dark", True),
            ("board-phone", "/fileintel", PHONE, "light", True),
        ]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for name, path, viewport, scheme, full in shots:
                context = browser.new_context(viewport=viewport, color_scheme=scheme)
                page = context.new_page()
                page.goto(base + path)
                # live: the page applied its first pushed or polled data
                page.wait_for_function(
                    "() => document.documentElement.getAttribute('data-fileintel-live') === '1'"
                    " || !window.fileintelTransport"
                )
                page.wait_for_timeout(1000)  # a settled picture (bars mid-transition look odd)
                page.screenshot(path=str(REPO / "docs" / f"{name}.png"), full_page=full)
                print(f"wrote docs/{name}.png")
                context.close()
            browser.close()
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(30)
        state.unlink(missing_ok=True)


def _running_progress_task(base: str, env: dict[str, str]) -> str:
    """Wait for Flower and the demo's state file, then return the id of a running task that
    reports progress."""
    deadline = time.monotonic() + 60
    state = Path(env["FILEINTEL_DEMO_STATE_FILE"])
    while not state.exists() or not _answers(f"{base}/healthcheck"):
        if time.monotonic() > deadline:
            raise SystemExit("screenshots: the demo did not start within 60 s")
        time.sleep(0.5)
    os.environ.update(env)  # the demo app reads the state file when imported
    import celery_ext
    from celery_ext.records import recent_task_ids
    from fileintel_demo.app import app

    while time.monotonic() < deadline:
        for task_id in recent_task_ids(app, "active", 20):
            progress = celery_ext.describe(app, task_id).progress
            if progress is not None and (progress.percent or 0) > 15:
                return task_id
        time.sleep(1)
    raise SystemExit("screenshots: no running task with progress appeared within 60 s")


def _wait_for_stuck_task(base: str) -> None:
    """Wait until the board lists the demo's ``queued`` case as stuck (``fileintel_stuck_after``
    is 20 s in the demo) and knows whether a live worker consumes its queue, so the stuck
    section is photographed with a row that says it."""
    import json

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/fileintel/board.json", timeout=5) as response:
            stuck = json.load(response).get("stuck") or []
        if any(entry.get("consumers", {}).get("state") != "unknown" for entry in stuck):
            return
        time.sleep(1)
    raise SystemExit("screenshots: the board listed no stuck task with known consumers within 60 s")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
