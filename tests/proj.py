"""The Celery app every test uses, in-process and in subprocesses (``celery -A tests.proj``).

Configured from the environment so a subprocess worker or a ``celery`` CLI run reaches the
same private Redis as the test that started it:

- ``FILEINTEL_TEST_REDIS_URL``: broker and result backend (set by the ``redis_server`` fixture).
- ``FILEINTEL_TEST_RESULT_EXPIRES``: ``result_expires`` in seconds (default 3600).
- ``FILEINTEL_TEST_RESULT_BACKEND``: another result backend (e.g. ``rpc://``); default the Redis.
- ``FILEINTEL_TEST_POOL_START_METHOD``: ``spawn`` for the spawn-pool test.
- ``FILEINTEL_TEST_LOST_AFTER``: ``fileintel_lost_after`` in seconds (the lost-worker tests).
- ``FILEINTEL_TEST_MAX_RESULT_BYTES``: ``fileintel_max_result_bytes`` (the outcome matrix).
- ``FILEINTEL_TEST_RECORDS_URL``: ``fileintel_redis_url``, records on a Redis of their own
  (the fault tests).
"""

from __future__ import annotations

import datetime
import decimal
import os
import time
from typing import Any

from celery import Celery
from celery.exceptions import Ignore, Reject

import celery_ext
from celery_ext import FileIntelTask, report_progress

REDIS_URL = os.environ.get("FILEINTEL_TEST_REDIS_URL", "redis://127.0.0.1:1/0")

app = Celery("proj", broker=REDIS_URL, backend=os.environ.get("FILEINTEL_TEST_RESULT_BACKEND", REDIS_URL))
app.conf.update(
    result_expires=int(os.environ.get("FILEINTEL_TEST_RESULT_EXPIRES", "3600")),
    result_extended=True,
    task_track_started=False,  # records must tell "running" without Celery's STARTED state
    broker_connection_retry_on_startup=True,
    worker_cancel_long_running_tasks_on_connection_loss=True,  # Celery 6 default; silences its warning
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    broker_transport_options={"visibility_timeout": 3600, "polling_interval": 0.1},
)
if os.environ.get("FILEINTEL_TEST_LOST_AFTER"):
    app.conf.fileintel_lost_after = float(os.environ["FILEINTEL_TEST_LOST_AFTER"])
if os.environ.get("FILEINTEL_TEST_MAX_RESULT_BYTES"):
    app.conf.fileintel_max_result_bytes = int(os.environ["FILEINTEL_TEST_MAX_RESULT_BYTES"])
if os.environ.get("FILEINTEL_TEST_RECORDS_URL"):
    app.conf.fileintel_redis_url = os.environ["FILEINTEL_TEST_RECORDS_URL"]
if os.environ.get("FILEINTEL_TEST_POOL_START_METHOD"):
    app.conf.worker_pool_start_method = os.environ["FILEINTEL_TEST_POOL_START_METHOD"]

celery_ext.install(app)

#: A queue no test worker consumes: tasks sent there stay queued.
NOBODY_QUEUE = "fileintel-nobody"


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def echo(value: Any) -> Any:
    return value


@app.task
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


@app.task(bind=True)
def progress_steps(self: Any, steps: int, delay: float, hold: float = 0.0) -> dict[str, int]:
    """Report progress ``steps`` times, ``delay`` apart, then wait ``hold`` seconds."""
    for i in range(1, steps + 1):
        report_progress(self, i, steps, message=f"step {i} of {steps}")
        time.sleep(delay)
    time.sleep(hold)
    return {"steps": steps}


@app.task(bind=True)
def progress_until(self: Any, key: str, timeout: float = 60.0) -> str:
    """Report progress 1 of 2, then run until Redis ``key`` exists (a test's "you may stop
    now", so a running task outlives a page check without a fixed sleep) or ``timeout``."""
    report_progress(self, 1, 2, message="halfway")
    client = self.backend.client
    deadline = time.monotonic() + timeout
    while not client.exists(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"


@app.task(bind=True)
def raw_progress(self: Any, meta: Any, hold: float) -> str:
    """Write arbitrary PROGRESS meta (as third-party code would) and stay running."""
    self.update_state(state="PROGRESS", meta=meta)
    time.sleep(hold)
    return "done"


@app.task(bind=True)
def custom_state(self: Any, state: str, hold: float) -> str:
    self.update_state(state=state, meta={"stage": state.lower()})
    time.sleep(hold)
    return "done"


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=1)
def retried_once(self: Any) -> str:
    """Retries once, at once, then succeeds."""
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "done"


@app.task(bind=True, max_retries=1)
def retried_elsewhere_then_fails(self: Any, queue: str) -> None:
    """Retries once, to ``queue`` (another worker's), a second later; then fails there."""
    if self.request.retries == 0:
        raise self.retry(countdown=1, queue=queue)
    raise RuntimeError("failed after its retry")


@app.task(bind=True, max_retries=3, default_retry_delay=30)
def retry_later(self: Any) -> None:
    """Retries once with a long countdown, so the test sees it in RETRY."""
    raise self.retry(exc=RuntimeError("temporary outage"))


@app.task(ignore_result=True)
def fire_and_forget(x: int) -> int:
    return x


@app.task
def big_result(nbytes: int) -> str:
    return "x" * nbytes


@app.task
def ignored() -> None:
    raise Ignore()


@app.task(bind=True)
def ignored_after_progress(self: Any) -> None:
    """Stores a state of its own, then asks Celery to store nothing more."""
    self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
    raise Ignore()


@app.task
def rejected(reason: str) -> None:
    raise Reject(reason, requeue=False)


@app.task(base=FileIntelTask)
def odd_values() -> dict[str, Any]:
    """A result JSON cannot hold: FileIntelTask stores a sanitized copy instead of failing."""
    return {
        "tags": {"a"},
        "blob": b"\x00\x01",
        "when": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        "price": decimal.Decimal("1.10"),
        "ratio": float("nan"),
        "items": [1, object()],
    }


@app.task(base=FileIntelTask)
def file_names() -> dict[str, str]:
    """A file name read with os.fsdecode(): a lone surrogate, which plain Celery stores."""
    return {"file": "report-\udcff.pdf"}


@app.task
def plain_odd_values() -> Any:
    """The same without FileIntelTask: Celery stores FAILURE (EncodeError)."""
    return {"tags": {"a"}}


@app.task
def html_payload() -> dict[str, str]:
    return {"html": "<script>alert(1)</script><img src=x onerror=alert(2)>"}
