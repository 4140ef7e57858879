"""Prometheus metrics of the plugin, in the default registry so they show on Flower's /metrics.

``/metrics`` is public in Flower, so labels carry only small fixed vocabularies (route names,
phases, outcomes, windows): never a task id, a task name or any payload text. Names follow
Prometheus' conventions: counters end in ``_total`` (added by the client library), times in
``_seconds``, sizes in ``_bytes``. ``ops/`` holds alert rules and a Grafana dashboard built on
these names (a test checks that every name they use is served).

The inventory gauges (``fileintel_active_tasks``, ``fileintel_results_expiring``,
``fileintel_records_expiring``) come from ``celery_ext.inventory``: a ``InventoryRefresher``
thread re-reads them every ``REFRESH_S`` seconds, so a scrape never waits on Redis.
"""

from __future__ import annotations

import logging
import platform
import threading
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from celery_ext.status import Phase

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "BUILD_INFO",
    "LOOKUPS",
    "OUTCOMES",
    "LOOKUP_SECONDS",
    "RESULT_BYTES",
    "PROGRESS_CORRECTIONS",
    "LIVE_SUBSCRIBERS",
    "LIVE_MESSAGES",
    "PUBSUB_CONNECTED",
    "REDIS_ERRORS",
    "ACTIVE_TASKS",
    "RESULTS_EXPIRING",
    "RECORDS_EXPIRING",
    "INVENTORY_AGE",
    "InventoryRefresher",
    "start_inventory",
    "stop_inventory",
    "REFRESH_S",
]

logger = logging.getLogger(__name__)

#: Seconds between two inventory reads.
REFRESH_S = 30.0

BUILD_INFO = Gauge(
    "fileintel_build_info",
    "Always 1; the labels say which flower-fileintel, Celery, Flower and Python serve /metrics.",
    ["version", "celery", "flower", "python"],
)
LOOKUPS = Counter(
    "fileintel_flower_lookups",
    "Task lookups served by the flower-fileintel plugin, by route and task phase.",
    ["route", "phase"],
)
OUTCOMES = Counter(
    "fileintel_flower_lookup_outcomes",
    "Outcome of task lookups (celery_ext.status.Outcome: ok, not_ready, failed, lost, expired, ...).",
    ["route", "outcome"],
)
LOOKUP_SECONDS = Histogram(
    "fileintel_flower_lookup_seconds",
    "Time to read one task's status from Redis (run off the IOLoop).",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RESULT_BYTES = Counter(
    "fileintel_flower_result_served_bytes",
    "Bytes of task results sent to clients (result API and downloads).",
    ["route"],
)
PROGRESS_CORRECTIONS = Counter(
    "fileintel_flower_progress_corrections",
    "Corrections progress normalisation made to published progress updates, counted once "
    "per update as the plugin's live connection receives it (not once per read).",
)
LIVE_SUBSCRIBERS = Gauge(
    "fileintel_flower_live_subscribers",
    "Browsers and API waiters currently receiving pushed updates.",
    ["stream"],
)
LIVE_MESSAGES = Counter(
    "fileintel_flower_live_messages",
    "Task state messages received on the plugin's Redis pub/sub connection.",
)
PUBSUB_CONNECTED = Gauge(
    "fileintel_flower_pubsub_connected",
    "1 while the plugin's single Redis pub/sub connection is subscribed, else 0.",
)
REDIS_ERRORS = Counter(
    "fileintel_flower_redis_errors",
    "Redis errors seen by the plugin (lookups, downloads, the pub/sub connection, inventory).",
    ["operation"],
)
ACTIVE_TASKS = Gauge(
    "fileintel_active_tasks",
    "Started, unfinished tasks in the bootstep's index (newest 200), by phase; "
    "'lost' means their worker stopped beating.",
    ["phase"],
)
RESULTS_EXPIRING = Gauge(
    "fileintel_results_expiring",
    "Finished tasks in the index (newest 1,000) whose result expires within the window "
    "('1h', '1d'), or has expired ('expired').",
    ["within"],
)
RECORDS_EXPIRING = Gauge(
    "fileintel_records_expiring",
    "Finished tasks in the index (newest 1,000) whose task record expires within the window "
    "('1h', '1d'), or has expired ('expired').",
    ["within"],
)
INVENTORY_AGE = Gauge(
    "fileintel_inventory_last_success_timestamp_seconds",
    "Unix time of the last successful inventory read (0: none yet).",
)

for _stream in ("task", "board", "wait"):
    LIVE_SUBSCRIBERS.labels(_stream).set(0)
for _operation in ("lookup", "download", "board", "pubsub", "inventory"):
    REDIS_ERRORS.labels(_operation)


def _build_info() -> None:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    from celery_ext import __version__

    BUILD_INFO.labels(__version__, installed("celery"), installed("flower"), platform.python_version()).set(1)


_build_info()


class InventoryRefresher:
    """A daemon thread that reads ``celery_ext.inventory`` into the gauges every ``interval``."""

    def __init__(self, app: Celery, interval: float = REFRESH_S) -> None:
        self.app = app
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fileintel-inventory", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        """One read (raises what ``take_inventory`` raises)."""
        import time

        from celery_ext.inventory import take_inventory

        inventory = take_inventory(self.app)
        for phase in Phase:
            if not phase.finished:
                ACTIVE_TASKS.labels(phase.value).set(inventory.active_by_phase.get(phase, 0))
        for window, count in inventory.results_expiring.items():
            RESULTS_EXPIRING.labels(window).set(count)
        for window, count in inventory.records_expiring.items():
            RECORDS_EXPIRING.labels(window).set(count)
        INVENTORY_AGE.set(time.time())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # Redis down, or a bad datum: the next round tries again
                REDIS_ERRORS.labels("inventory").inc()
                logger.warning("flower-fileintel: could not refresh the inventory metrics: %s", exc)
            self._stop.wait(self.interval)


_refreshers: dict[int, InventoryRefresher] = {}
_refreshers_lock = threading.Lock()


def start_inventory(app: Celery) -> None:
    """Keep the inventory gauges fresh for ``app`` (once per app and process)."""
    with _refreshers_lock:
        if id(app) in _refreshers:
            return
        refresher = InventoryRefresher(app)
        _refreshers[id(app)] = refresher
    refresher.start()


def stop_inventory(app: Celery) -> None:
    """Stop refreshing for ``app`` (its Flower is shutting down)."""
    with _refreshers_lock:
        refresher = _refreshers.pop(id(app), None)
    if refresher is not None:
        refresher.stop()
