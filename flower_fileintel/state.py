"""What the plugin keeps per Flower application: settings, executors, the live hub and the
board's snapshot. Created lazily on the first request (``get_state``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, TypeVar

from flower_fileintel import metrics
from flower_fileintel.consumers import (
    QueueConsumers,
    consumers_of,
    live_worker_queues,
    needs_inspection,
)
from flower_fileintel.formatting import (
    STALLED_AFTER_S,
    elapsed_s,
    runtime_of,
    stalled_for_s,
)
from flower_fileintel.sharing import InFlight

__all__ = ["STATIC_DIR", "PluginState", "get_state"]

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: Threads for status lookups (one Redis round trip each). Our own pool: Flower's blocking
#: runner has 5 shared slots, and long waits never hold a thread here (they use push).
LOOKUP_THREADS = 8
#: Threads for downloads (each holds one for the length of a transfer).
DOWNLOAD_THREADS = 4
#: Recently finished tasks on the board (running ones: celery_ext's ACTIVE_READ_LIMIT).
BOARD_FINISHED_LIMIT = 25
#: The last failed or revoked tasks the board pins, from their own index: successes, however
#: many, cannot push them out of sight as they do in "recently finished".
BOARD_FAILURES_LIMIT = 10
#: Finished tasks' board entries kept between reads (a finished task's entry only changes
#: with its expiry): the board's and a few pages', least recently shown first out.
FINISHED_CACHE_SIZE = 4 * (BOARD_FINISHED_LIMIT + BOARD_FAILURES_LIMIT)

#: Tasks the board's "stuck" section shows (queued longer than ``fileintel_stuck_after``,
#: oldest first): what one snapshot reads of the "queued" index, whatever it holds.
BOARD_STUCK_LIMIT = 25
#: While tasks are stuck and a live worker's queues are unknown (or were inspected longer ago
#: than this), ask Flower to inspect its workers again, at most this often.
INSPECT_AGAIN_S = 60.0

T = TypeVar("T")
logger = logging.getLogger(__name__)

class PluginState:
    """What the plugin keeps per Flower application: settings, executors and the live hub."""

    def __init__(self, application: Any) -> None:
        from celery_ext.settings import get_settings
        from flower_fileintel.live import LiveHub

        self.application = application
        self.capp = application.capp
        self.settings = get_settings(self.capp)
        self.executor = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="fileintel-lookup")
        self.download_executor = ThreadPoolExecutor(
            DOWNLOAD_THREADS, thread_name_prefix="fileintel-download"
        )
        self.hub = LiveHub(self.capp, self.describe_many, self.board_snapshot)
        self._snapshots: InFlight[dict[str, Any]] = InFlight(self._take_board_snapshot)
        metrics.start_inventory(self.capp)
        self._board_lock = threading.Lock()
        self._finished_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: When we last asked Flower to inspect its workers (it also does as it starts).
        self._inspected_at = -INSPECT_AGAIN_S
        #: The record's result expiry when each cached entry was read: a keep changes it, and
        #: the entry is then read again (describe decides the expiry, not the board).
        self._expiry_seen: dict[str, datetime | None] = {}

    def _keep_finished(self, used: list[str]) -> None:
        """Under the board lock: the cached entries of ``used`` (the ids a board or a page
        shows now) are the last to go; past the cache's size the least recently used go.
        (Oldest first instead, paging through "finished" pushed out the board's own entries.)"""
        for task_id in used:
            if task_id in self._finished_cache:
                self._finished_cache.move_to_end(task_id)
        while len(self._finished_cache) > FINISHED_CACHE_SIZE:
            oldest, _ = self._finished_cache.popitem(last=False)
            self._expiry_seen.pop(oldest, None)

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call in the lookup pool, off the IOLoop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))

    async def describe(self, task_id: str) -> Any:
        import celery_ext

        return await self.run(celery_ext.describe, self.capp, task_id)

    async def describe_id_or_prefix(self, task_id: str) -> Any:
        from celery_ext.prefix import describe_id_or_prefix

        return await self.run(describe_id_or_prefix, self.capp, task_id)

    async def describe_many(self, task_ids: list[str]) -> list[Any]:
        import celery_ext

        return await self.run(celery_ext.describe_many, self.capp, task_ids)

    def mark_fetched(self, task_id: str) -> None:
        """Record, in the background, that ``task_id``'s result was fetched (the board's
        "nobody fetched it"); the response never waits for it and never fails by it."""
        from celery_ext.fetched import mark_fetched

        try:
            self.executor.submit(mark_fetched, self.capp, task_id)
        except RuntimeError:  # Flower is shutting down: the pool takes no more work
            pass

    async def board_snapshot(self, *, join: bool = False) -> dict[str, Any]:
        """The board now; ``join``: or the one being taken as this is asked (``sharing.py``),
        for a polling page. Callers only read it."""
        return await self._snapshots.take(join=join)

    async def _take_board_snapshot(self) -> dict[str, Any]:
        snapshot = await self.run(self._board_snapshot)
        # On the IOLoop: Flower's view of its workers is only touched there.
        workers = self.live_worker_queues()
        for entry in snapshot["stuck"]:
            entry["consumers"] = consumers_of(entry["queue"], workers).to_dict(entry["queue"])
        if snapshot["stuck"]:
            self.inspect_workers_if_stale(workers)
        return snapshot

    def live_worker_queues(self) -> dict[str, frozenset[str] | None] | None:
        """Flower's live workers and their queues (``consumers.live_worker_queues``); call on
        the IOLoop."""
        events = getattr(getattr(self.application, "events", None), "state", None)
        try:
            return live_worker_queues(dict(getattr(events, "workers", None) or {}), self.application.workers)
        except Exception:  # Flower's internals changed shape: "unknown", never a broken board
            logger.warning("fileintel: cannot read Flower's workers", exc_info=True)
            return None

    def inspect_workers_if_stale(self, workers: dict[str, frozenset[str] | None] | None) -> None:
        """Ask Flower to inspect its workers again (their ``active_queues``) when a live one
        is not known yet or the last inspection is old, at most every INSPECT_AGAIN_S; call
        on the IOLoop."""
        now = time.monotonic()
        if now - self._inspected_at < INSPECT_AGAIN_S and not needs_inspection(workers):
            return
        if now - self._inspected_at < INSPECT_AGAIN_S / 4:
            return  # asked lately: its replies are on their way
        self._inspected_at = now
        try:
            self.application.update_workers()
        except Exception:
            logger.warning("fileintel: cannot ask Flower to inspect its workers", exc_info=True)

    def _board_snapshot(self) -> dict[str, Any]:
        """Running, lost, stuck, recently finished, pinned failures and expiring-soon tasks (runs in
        the lookup pool; ``board_snapshot`` adds who consumes each stuck task's queue).

        A finished task does not change, so its board entry (which never holds the result)
        is read once and cached; only its expiry is recomputed. Results above
        METADATA_ONLY_BYTES are not even loaded for that one read.
        """
        from celery_ext.fetched import record_marks
        from celery_ext.lookup import METADATA_ONLY_BYTES, describe_many
        from celery_ext.records import ACTIVE_READ_LIMIT, store_for
        from celery_ext.stuck import stuck_among

        stuck_after = self.settings.stuck_after
        read_at = time.time()
        # Every index page the board shows, in one round trip.
        pages = store_for(self.capp).index_pages(
            active=ACTIVE_READ_LIMIT,
            finished=BOARD_FINISHED_LIMIT,
            failed=BOARD_FAILURES_LIMIT,
            queued_before=(read_at - stuck_after, BOARD_STUCK_LIMIT),
        )
        stuck = [stuck_entry(t) for t in stuck_among(self.capp, pages.queued, read_at)]
        active, finished, failed = pages.active, pages.finished, pages.failed
        # What changes on a finished task: its expiry (a keep) and its last fetch. One
        # pipelined read of the board's finished page, whatever the number of tasks.
        marks = dict(zip(finished, record_marks(self.capp, finished)))
        with self._board_lock:
            for task_id, mark in marks.items():
                if task_id in self._finished_cache and self._expiry_seen.get(task_id) != mark.result_expires_at:
                    del self._finished_cache[task_id]  # kept since it was read: read it again
            missing = list(dict.fromkeys(i for i in finished + failed if i not in self._finished_cache))
        ids = active + missing
        # The board shows no results: load none but small progress payloads.
        statuses = describe_many(self.capp, ids, max_result_bytes=METADATA_ONLY_BYTES) if ids else []
        now = time.time()
        moment = datetime.fromtimestamp(now, timezone.utc)
        stalled_after = self.settings.stalled_after
        running, lost = split_active(statuses[: len(active)], moment, stalled_after)
        with self._board_lock:
            for status in statuses[len(active):]:
                if status.ready:
                    self._finished_cache[status.task_id] = finished_entry(status)
                    seen = marks.get(status.task_id)
                    self._expiry_seen[status.task_id] = seen.result_expires_at if seen else None
            self._keep_finished(finished + failed)
            done = [
                _with_current_expiry(_with_marks(self._finished_cache[i], marks.get(i)), now)
                for i in finished if i in self._finished_cache
            ]
            failures = [_with_current_expiry(self._finished_cache[i], now) for i in failed if i in self._finished_cache]
        warning = self.settings.expiry_warning
        expiring = sorted(
            (
                d for d in done
                if d["result_available"] and d["expires_in_s"] is not None
                and d["expires_in_s"] <= warning
            ),
            key=lambda d: d["expires_in_s"],
        )
        return {
            "running": running,
            "lost": lost,
            "stuck": stuck,
            "stuck_after_s": stuck_after,
            "finished": done,
            "failures": failures,
            "expiring": expiring,
            "expiring_unfetched": sum(1 for d in expiring if d["fetched_at"] is None),
            "expiry_warning_s": warning,
            "stalled_after_s": stalled_after,
        }

    async def finished_page(self, query: Any) -> dict[str, Any]:
        return await self.run(self._finished_page, query)

    def _finished_page(self, query: Any) -> dict[str, Any]:
        """One page of "recently finished" under ``query`` (a ``finished.FinishedQuery``),
        entries as on the board (runs in the lookup pool)."""
        from celery_ext.lookup import METADATA_ONLY_BYTES, describe_many
        from celery_ext.records import store_for
        from flower_fileintel.finished import find_finished

        page = find_finished(store_for(self.capp), query)
        with self._board_lock:
            missing = [i for i in page.task_ids if i not in self._finished_cache]
        statuses = describe_many(self.capp, missing, max_result_bytes=METADATA_ONLY_BYTES) if missing else []
        now = time.time()
        fresh = {s.task_id: finished_entry(s) for s in statuses}
        with self._board_lock:
            for task_id, entry in fresh.items():
                if entry["ready"]:
                    self._finished_cache[task_id] = entry
            self._keep_finished(page.task_ids)
            entries = [
                _with_current_expiry(self._finished_cache.get(i) or fresh[i], now)
                for i in page.task_ids if i in self._finished_cache or i in fresh
            ]
        return {
            "tasks": entries,
            "page": page.page,
            "page_size": page.page_size,
            "has_next": page.has_next,
            "index_size": page.index_size,
            "scanned": page.scanned,
            "filters": {
                "phase": query.phase.value if query.phase else None,
                "name": query.name,
                "id_prefix": query.id_prefix,
            },
        }

    def close(self) -> None:
        metrics.stop_inventory(self.capp)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.download_executor.shutdown(wait=False, cancel_futures=True)


def running_entry(status: Any, now: datetime, stalled_after: float = STALLED_AFTER_S) -> dict[str, Any]:
    """A running task as the board shows it: its entry plus ``elapsed_s`` (since it started)
    and ``stalled_for_s`` (seconds since its last progress report, when that is more than
    ``stalled_after``, the ``fileintel_stalled_after`` setting; else None)."""
    from flower_fileintel.watchers import board_entry

    entry = board_entry(status)
    progress = status.progress
    updated = _parse_time(progress.updated_at) if progress is not None else None
    entry["elapsed_s"] = elapsed_s(status.started_at, now)
    entry["stalled_for_s"] = stalled_for_s(updated, now, stalled_after)
    return entry


def split_active(
    statuses: list[Any], now: datetime, stalled_after: float = STALLED_AFTER_S
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The active index's tasks as the board's "running" and "lost" entries; tasks that have
    finished since the index was read are in neither. Lost is celery_ext's phase (its worker
    stopped beating), never decided here."""
    from celery_ext.status import Phase

    running: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    for status in statuses:
        if status.phase is Phase.LOST:
            lost.append(lost_entry(status, now))
        elif not status.ready:
            running.append(running_entry(status, now, stalled_after))
    return running, lost


def lost_entry(status: Any, now: datetime) -> dict[str, Any]:
    """A lost task as the board shows it: its entry plus ``elapsed_s`` (since it started) and
    ``worker_silent_for_s`` (since its worker's last liveness beat; None: it never beat)."""
    from flower_fileintel.watchers import board_entry

    entry = board_entry(status)
    entry["elapsed_s"] = elapsed_s(status.started_at, now)
    entry["worker_silent_for_s"] = elapsed_s(status.worker_last_seen_at, now)
    return entry


def stuck_entry(task: Any) -> dict[str, Any]:
    """A stuck task (``celery_ext.stuck.StuckTask``) as the board shows it: its entry plus
    ``queue`` and ``queued_for_s``; ``consumers`` comes from Flower's workers."""
    from flower_fileintel.watchers import board_entry

    entry = board_entry(task.status)
    entry["queue"] = task.queue
    entry["queued_for_s"] = round(task.queued_for_s, 3)
    entry["consumers"] = QueueConsumers("unknown").to_dict(task.queue)
    return entry


def finished_entry(status: Any) -> dict[str, Any]:
    """A finished task as the board shows it: its entry plus ``shown_runtime_s``, the runtime
    or, for a revoked task that has none, the time from its start to its end."""
    from flower_fileintel.watchers import board_entry

    entry = board_entry(status)
    entry["shown_runtime_s"] = runtime_of(status.runtime_s, status.started_at, status.completed_at)
    return entry


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _with_marks(entry: dict[str, Any], marks: Any) -> dict[str, Any]:
    """A cached finished entry with ``fetched_at`` as its record says now
    (``celery_ext.fetched``): the last time someone fetched the result through the CLI or the
    API (None: nobody has)."""
    fetched = marks.fetched_at if marks is not None else None
    return {**entry, "fetched_at": fetched.isoformat() if fetched is not None else None}


def _with_current_expiry(entry: dict[str, Any], now: float) -> dict[str, Any]:
    """A cached finished entry with ``expires_in_s`` (and ``expired``) as of ``now``."""
    at = entry.get("result_expires_at")
    if not at or not entry.get("result_available"):
        return entry
    left = datetime.fromisoformat(at).timestamp() - now
    if left > 0:
        return {**entry, "expires_in_s": round(left, 3)}
    return {**entry, "expires_in_s": 0.0, "expired": True, "result_available": False}


def get_state(application: Any) -> PluginState:
    """The plugin state of ``application`` (created on first use)."""
    state: PluginState | None = getattr(application, "fileintel_state", None)
    if state is None:
        state = PluginState(application)
        application.fileintel_state = state
    return state
