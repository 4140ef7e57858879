"""Worker liveness: a beat that a busy task cannot stop, so a dead worker's tasks read ``lost``.

Each worker incarnation (one start of one worker) gets a random id. The worker's main
process runs a thread of its own that stores Redis's current time under
``<prefix>fileintel-worker-<incarnation>`` every ``fileintel_lost_after / 6`` seconds; a
thread, not the pool's event loop, so it keeps beating while a ``-P solo`` task blocks the
main thread. Task records name the incarnation that started them (pool children read it
from the environment, which both fork and spawn pass on), and ``describe`` compares the
last beat with Redis's clock: no beat for ``lost_after`` seconds means the worker is gone.
The key outlives the worker (``record_ttl``) so "last seen at" can still be told.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from celery import Celery

from celery_ext.records import store_for

__all__ = ["INCARNATION_ENV", "new_incarnation", "current_incarnation", "Heartbeat", "beat_interval"]

logger = logging.getLogger(__name__)

#: Where a worker's incarnation id is kept for its pool children.
INCARNATION_ENV = "FILEINTEL_WORKER_INCARNATION"
#: SET the key to the server's own clock (the one readers compare with), with a TTL.
BEAT_SCRIPT = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000), 'EX', ARGV[1])
return 1
"""
ERROR_LOG_INTERVAL = 60.0


def new_incarnation() -> str:
    """A fresh id for a worker that is starting, handed to its pool children."""
    incarnation = uuid.uuid4().hex
    os.environ[INCARNATION_ENV] = incarnation
    return incarnation


def current_incarnation() -> str | None:
    """The incarnation of the worker this process belongs to (None outside a worker)."""
    return os.environ.get(INCARNATION_ENV)


def beat_interval(lost_after: float) -> float:
    """Six beats per ``lost_after``: one or two lost packets never make a worker look dead."""
    return max(0.2, lost_after / 6)


class Heartbeat:
    """The beating thread of one worker incarnation."""

    def __init__(self, app: Celery, incarnation: str) -> None:
        self.app = app
        self.incarnation = incarnation
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fileintel-liveness", daemon=True)
        self._last_error_log = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        store = store_for(self.app)
        interval = beat_interval(store.settings.lost_after)
        key = store.worker_key(self.incarnation)
        ttl = str(store.record_ttl)
        while not self._stop.is_set():
            try:
                client = store.own_backend(store.settings.record_write_timeout).client
                client.eval(BEAT_SCRIPT, 1, key, ttl)
            except Exception as exc:  # Redis down: beat again later; never die
                now = time.monotonic()
                if now - self._last_error_log >= ERROR_LOG_INTERVAL:
                    self._last_error_log = now
                    logger.warning("fileintel: could not write the worker's liveness beat to %s: %s", store.display_url, exc)
            self._stop.wait(interval)
