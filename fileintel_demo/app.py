"""The demo's Celery app and tasks: ``celery -A fileintel_demo.app ...``.

Every case flower-fileintel handles has a task here. The running demo (``fileintel-demo``)
starts the worker and Flower on this app and tells them where its Redis is through the
environment; a ``celery -A fileintel_demo.app fileintel status <id>`` typed in
another terminal finds the running demo through a small state file instead (see
``state_file()``), so the commands the demo prints work as they are. With neither (the demo
has stopped), importing this module prints ``NOT_RUNNING`` and exits: the commands never
read another Redis by accident.

Settings, from the environment (the demo runner sets them):

- ``FILEINTEL_DEMO_REDIS_URL``: broker and result backend.
- ``FILEINTEL_DEMO_KEY_PREFIX``: ``global_keyprefix`` for every key the demo writes, so a
  shared Redis (``--redis URL``) keeps the demo's keys apart (nothing is ever flushed).
- ``FILEINTEL_DEMO_RESULT_EXPIRES``: how long the ``expiring`` case's results live, in seconds
  (default 120, so one expires while you watch). Every other case keeps its result for
  ``SHOWCASE_RESULT_EXPIRES`` (30 minutes, the app's ``result_expires``), so it can still be
  opened long after it ran.
- ``FILEINTEL_DEMO_EXPIRY_WARNING``: ``fileintel_expiry_warning`` (default: half of the
  ``expiring`` case's lifetime).
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend

import celery_ext
from celery_ext import FileIntelTask

__all__ = [
    "app",
    "DEMO_QUEUE",
    "NOBODY_QUEUE",
    "DEFAULT_RESULT_EXPIRES",
    "SHOWCASE_RESULT_EXPIRES",
    "MAX_RESULT_BYTES",
    "state_file",
    "read_state",
]

#: The queue the demo worker consumes.
DEMO_QUEUE = "fileintel-demo"
#: A queue no worker consumes: a task sent there stays queued.
NOBODY_QUEUE = "fileintel-demo-nobody"
#: The ``expiring`` case's results live two minutes, so its expiry warning and expired view
#: show up while you watch.
DEFAULT_RESULT_EXPIRES = 120
#: Every other case's result lives 30 minutes (the app's ``result_expires``): the demo stays
#: worth exploring while you read its pages.
SHOWCASE_RESULT_EXPIRES = 30 * 60
#: A low inline limit, so a 1 MB result is offered as a download.
MAX_RESULT_BYTES = 256 * 1024
#: Said, instead of reading whatever Redis the machine runs, when no demo is running.
NOT_RUNNING = (
    "The flower-fileintel demo is not running (any more): its Redis, worker and Flower stopped "
    "with it, so there is nothing to read. Start it again with `fileintel-demo` (or scripts/demo); "
    "to read a Redis of your own with the demo app, set FILEINTEL_DEMO_REDIS_URL (and "
    "FILEINTEL_DEMO_KEY_PREFIX if its keys have another prefix)."
)
#: Exit status then: EX_UNAVAILABLE, as ``celery fileintel`` uses when Redis is down.
NOT_RUNNING_EXIT = 69
DEFAULT_KEY_PREFIX = "fileintel-demo:"
#: The demo's ``fileintel_stuck_after``: its queued case reads "stuck" after this long.
STUCK_AFTER = 20


def state_file() -> Path:
    """Where a running demo says which Redis and key prefix it uses (one per user;
    ``FILEINTEL_DEMO_STATE_FILE`` puts it elsewhere)."""
    if os.environ.get("FILEINTEL_DEMO_STATE_FILE"):
        return Path(os.environ["FILEINTEL_DEMO_STATE_FILE"])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"fileintel-demo-{uid}.json"


def read_state() -> dict[str, Any]:
    """The running demo's state file, or ``{}`` when no demo runs (or it died without
    removing the file)."""
    try:
        data = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return {}
    try:
        os.kill(data["pid"], 0)
    except ProcessLookupError:
        return {}
    except OSError:  # alive, but another user's: still a running demo
        pass
    return data


def _config() -> tuple[str, str]:
    url = os.environ.get("FILEINTEL_DEMO_REDIS_URL")
    prefix = os.environ.get("FILEINTEL_DEMO_KEY_PREFIX")
    if url is None:
        state = read_state()
        if not state.get("redis_url"):
            # A command the demo printed, typed after it stopped: say so, rather than
            # silently read the machine's default Redis (and report its tasks as unknown).
            print(NOT_RUNNING, file=sys.stderr)
            raise SystemExit(NOT_RUNNING_EXIT)
        url = str(state["redis_url"])
        prefix = prefix or state.get("key_prefix")
    return url, str(prefix or DEFAULT_KEY_PREFIX)


REDIS_URL, KEY_PREFIX = _config()
RESULT_EXPIRES = int(os.environ.get("FILEINTEL_DEMO_RESULT_EXPIRES", DEFAULT_RESULT_EXPIRES))
EXPIRY_WARNING = int(os.environ.get("FILEINTEL_DEMO_EXPIRY_WARNING", max(1, RESULT_EXPIRES // 2)))

app = Celery("fileintel-demo", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    result_expires=SHOWCASE_RESULT_EXPIRES,
    result_extended=True,
    task_default_queue=DEMO_QUEUE,
    task_track_started=True,
    task_send_sent_event=True,
    worker_send_task_events=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # Every key under one prefix: a shared Redis keeps the demo's data apart.
    broker_transport_options={"global_keyprefix": KEY_PREFIX, "polling_interval": 0.2},
    result_backend_transport_options={"global_keyprefix": KEY_PREFIX},
    # A local Redis answers at once; never hang the demo on a dead one.
    redis_socket_timeout=10,
    redis_socket_connect_timeout=5,
    fileintel_max_result_bytes=MAX_RESULT_BYTES,
    fileintel_expiry_warning=EXPIRY_WARNING,
    # The ``queued`` case's task waits on a queue nobody consumes: shown as stuck on the
    # board within a demo's first minute, not after the default five.
    fileintel_stuck_after=STUCK_AFTER,
)
celery_ext.install(app)

# ``result_expires`` is one setting per app (``expires=`` on a call is when the task stops
# being run, not how long its result lives), so the one short-lived result comes from a
# backend of its own: the same Redis and key prefix, a shorter TTL. The worker records the
# TTL each result really got, so the record and the board tell each case's true expiry.
expiring_backend = RedisBackend(app=app, url=REDIS_URL, expires=RESULT_EXPIRES)


# -- the demo tasks ---------------------------------------------------------------------------


@app.task(base=FileIntelTask, bind=True, name="demo.resize_images")
def resize_images(self: FileIntelTask, images: int = 30, delay: float = 1.0) -> dict[str, Any]:
    """A long task that reports progress, with a message, after every image."""
    for i in range(images):
        self.report_progress(i, images, f"resizing photo-{i + 1:03d}.jpg ({i + 1} of {images})")
        time.sleep(delay)
    self.report_progress(images, images, "all images resized")
    return {"resized": images, "thumbnails": f"thumbnails/{self.request.id}/"}


def _parse_row(line_no: int, line: str) -> list[str]:
    columns = line.split(",")
    if len(columns) != 4:
        raise ValueError(f"invoices.csv line {line_no}: expected 4 columns, found {len(columns)}: {line!r}")
    return columns


@app.task(name="demo.import_invoices")
def import_invoices(rows: list[str]) -> int:
    """Fails with a traceback: the third row is malformed."""
    return len([_parse_row(n, line) for n, line in enumerate(rows, start=1)])


@app.task(base=FileIntelTask, name="demo.build_manifest")
def build_manifest() -> dict[str, Any]:
    """Returns values JSON cannot hold; FileIntelTask stores placeholders, and it succeeds."""
    return {
        "files": 3,
        "tags": {"invoices", "2026"},
        "checksum": b"\x8f\x1e\x00\xa4",
        "generated_at": datetime.datetime.now(datetime.timezone.utc),
        "total": decimal.Decimal("1249.50"),
        "batch": uuid.uuid4(),
    }


@app.task(base=FileIntelTask, name="demo.export_table")
def export_table(rows: int = 10_000) -> dict[str, Any]:
    """Returns about 1 MB: above the demo's 256 KiB inline limit, so it is a download."""
    return {
        "rows": [
            {"id": i, "sku": f"SKU-{i:06d}", "name": f"demo product number {i}", "price_cents": (i * 37) % 10_000}
            for i in range(rows)
        ]
    }


@app.task(name="demo.quick_sum", backend=expiring_backend)
def quick_sum(numbers: list[int]) -> dict[str, int]:
    """Finishes at once; its result expires after ``RESULT_EXPIRES`` seconds (its own backend)."""
    return {"sum": sum(numbers), "count": len(numbers)}


@app.task(name="demo.nightly_report")
def nightly_report() -> str:
    """Sent to a queue no worker consumes: it stays queued."""
    return "report"


@app.task(base=FileIntelTask, bind=True, name="demo.long_export")
def long_export(self: FileIntelTask, seconds: int = 300) -> str:
    """Runs for minutes, reporting progress; the demo revokes (terminates) it."""
    for i in range(seconds):
        self.report_progress(i, seconds, f"exporting chunk {i + 1} of {seconds}")
        time.sleep(1)
    return "exported"


@app.task(name="demo.render_comment")
def render_comment() -> dict[str, str]:
    """A result with HTML in it: every page must show it as text, never run it."""
    return {
        "author": "mallory",
        "comment": "<script>alert(1)</script>",
        "signature": '<img src=x onerror="alert(2)">',
    }
