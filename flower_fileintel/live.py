"""Live updates: ONE Redis pub/sub connection per Flower process, fanned out to every browser.

Celery publishes every state change of a task (PROGRESS included) on the channel named like
its result key. The hub PSUBSCRIBEs once to the pattern of all of them
(``celery_ext.records.meta_channel_pattern``) through ``celery_ext.push.AsyncSubscriber`` on
Flower's IOLoop (plain Redis and Sentinel alike; this module never opens Redis itself), and:

- marks the task *dirty* for detail-page viewers and ``?wait=`` waiters of that task;
- turns small PROGRESS / state messages into board updates without any Redis read;
- every ``coalesce_s`` (100 ms) flushes: one ``describe_many`` (in the plugin's executor) for
  all dirty watched tasks, one JSON text per task, the same text handed to every viewer.

A viewer holds a *latest value* slot, not a queue: a slow browser skips intermediate states
instead of piling them up, so 100 tasks x 2 updates/s x 20 viewers stays cheap.

Pub/sub is at-most-once: after a (re)connect every watched task is re-read. While the
connection is down the hub re-reads watched tasks on a timer (server-side polling) and
reconnects with capped exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from celery import Celery

from flower_fileintel import metrics
from flower_fileintel.watchers import BoardWatcher, TaskWatcher

if TYPE_CHECKING:
    from celery_ext.push import AsyncSubscriber, Message
    from celery_ext.status import TaskStatus

__all__ = ["LiveHub"]

logger = logging.getLogger(__name__)

#: The subscriber connection's Redis client name is this plus the Flower process id.
CLIENT_NAME_PREFIX = "fileintel-live-"
#: How many running tasks the hub remembers as "beyond the board" before it forgets them all
#: (ids of tasks whose end it never heard of, a dead worker's, must not pile up).
OFF_BOARD_MAX = 10_000

DescribeMany = Callable[[list[str]], Awaitable[list["TaskStatus"]]]
BoardSnapshot = Callable[[], Awaitable[dict[str, Any]]]


class LiveHub:
    """The per-process fan-out of task updates (see the module docstring)."""

    def __init__(
        self,
        capp: Celery,
        describe_many: DescribeMany,
        board_snapshot: BoardSnapshot,
        *,
        coalesce_s: float = 0.1,
        poll_interval_s: float = 2.0,
        board_refresh_s: float = 5.0,
        ping_interval_s: float = 15.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.capp = capp
        self._describe_many = describe_many
        self._board_snapshot = board_snapshot
        self.coalesce_s = coalesce_s
        self.poll_interval_s = poll_interval_s
        self.board_refresh_s = board_refresh_s
        self.ping_interval_s = ping_interval_s
        self.max_backoff_s = max_backoff_s

        self.task_watchers: dict[str, set[TaskWatcher]] = {}
        self.board_watchers: set[BoardWatcher] = set()
        self.connected = False
        self.connections_opened = 0
        self.messages = 0
        self.last_error: str | None = None

        self._dirty: set[str] = set()
        self._board_updates: dict[str, dict[str, Any]] = {}
        self._board_refresh_wanted = False
        self._known_on_board: set[str] = set()
        #: Running tasks a full board did not show (it shows the newest ACTIVE_READ_LIMIT):
        #: their progress is no reason to take another snapshot. Without this, 1,000 running
        #: tasks reporting progress made the hub re-read the board at every flush.
        self._off_board: set[str] = set()
        #: Tasks not on the board whose progress asked for the next snapshot.
        self._asking: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._client: Any = None
        self._last_read_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start the subscriber and the flusher on the running loop (idempotent)."""
        if self._tasks or self._stopping:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber(), name="fileintel-live-subscriber"),
            loop.create_task(self._flusher(), name="fileintel-live-flusher"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._set_connected(False)

    # -- watchers -------------------------------------------------------------------------
    @contextlib.contextmanager
    def watch_task(self, task_id: str, kind: str = "task") -> Iterator[TaskWatcher]:
        """Register a viewer of ``task_id`` for the ``with`` block. It gets a first document
        as soon as the next flush runs (the task is marked dirty at once)."""
        self.start()
        watcher = TaskWatcher(task_id, kind)
        self.task_watchers.setdefault(task_id, set()).add(watcher)
        metrics.LIVE_SUBSCRIBERS.labels(kind).inc()
        self.mark_dirty(task_id)
        try:
            yield watcher
        finally:
            watchers = self.task_watchers.get(task_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self.task_watchers[task_id]
            metrics.LIVE_SUBSCRIBERS.labels(kind).dec()

    @contextlib.contextmanager
    def watch_board(self) -> Iterator[BoardWatcher]:
        self.start()
        watcher = BoardWatcher()
        self.board_watchers.add(watcher)
        metrics.LIVE_SUBSCRIBERS.labels("board").inc()
        self._board_refresh_wanted = True
        self._wake.set()
        try:
            yield watcher
        finally:
            self.board_watchers.discard(watcher)
            metrics.LIVE_SUBSCRIBERS.labels("board").dec()

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the pub/sub connection (a first viewer starts it)."""
        deadline = time.monotonic() + timeout
        while not self.connected and self._tasks and not self._tasks[0].done():
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        return self.connected

    def mark_dirty(self, task_id: str) -> None:
        self._dirty.add(task_id)
        self._wake.set()

    # -- the pub/sub connection -------------------------------------------------------------
    def _set_connected(self, value: bool) -> None:
        self.connected = value
        metrics.PUBSUB_CONNECTED.set(1 if value else 0)

    async def _subscriber(self) -> None:
        from celery_ext.push import AsyncSubscriber, Backoff, supports_push
        from celery_ext.records import meta_channel_pattern

        if not supports_push(self.capp):
            logger.info(
                "flower-fileintel: the result backend is not Redis; "
                "live pages poll instead of receiving pushed updates"
            )
            return
        backoff = Backoff(0.5, self.max_backoff_s, factor=2.0)
        subscriber = AsyncSubscriber(self.capp, client_name=f"{CLIENT_NAME_PREFIX}{os.getpid()}")
        while not self._stopping:
            try:
                await subscriber.connect()
                await subscriber.psubscribe(meta_channel_pattern(self.capp))
                self.connections_opened += 1
                self._set_connected(True)
                backoff.reset()
                logger.debug("flower-fileintel: subscribed to task updates")
                # At-most-once delivery: re-read everything watched after (re)connecting.
                self._dirty.update(self.task_watchers)
                self._board_refresh_wanted = bool(self.board_watchers)
                self._wake.set()
                await self._read(subscriber)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.REDIS_ERRORS.labels("pubsub").inc()
                delay = backoff.next()
                if self.connected or self.last_error != str(exc):
                    logger.warning(
                        "flower-fileintel: the Redis pub/sub connection for live updates failed "
                        "(%s); pages fall back to polling; reconnecting in %.1f s",
                        exc, delay,
                    )
                self.last_error = str(exc)
            else:
                delay = backoff.next()
            finally:
                self._set_connected(False)
                await subscriber.close()
            if self._stopping:
                return
            await asyncio.sleep(delay)

    async def _read(self, subscriber: AsyncSubscriber) -> None:
        from celery_ext.push import parse_message

        last_seen = time.monotonic()
        ping_sent: float | None = None
        while True:
            raw = await subscriber.get_raw(timeout=1.0)
            now = time.monotonic()
            if raw is not None:
                last_seen = now
                ping_sent = None
                message = parse_message(self.capp, raw)
                if message is not None:
                    self._on_message(message)
                continue
            if ping_sent is not None and now - ping_sent > 5.0:
                raise ConnectionError("no answer to PING within 5 s")
            if ping_sent is None and now - last_seen > self.ping_interval_s:
                await subscriber.ping()
                ping_sent = now

    def _on_message(self, message: Message) -> None:
        self.messages += 1
        metrics.LIVE_MESSAGES.inc()
        task_id = message.task_id
        if task_id in self.task_watchers:
            self.mark_dirty(task_id)
        if self.board_watchers:
            entry = self._board_update(message)
            if entry is None:
                self._board_refresh_wanted = True
            else:
                self._board_updates[task_id] = entry
                if entry["ready"]:
                    self._board_refresh_wanted = True
                    self._off_board.discard(task_id)
                elif task_id not in self._known_on_board and task_id not in self._off_board:
                    self._board_refresh_wanted = True
                    self._asking.add(task_id)
            self._wake.set()

    def _board_update(self, message: Message) -> dict[str, Any] | None:
        """A board update from the message itself, or None if it needs a real read."""
        from celery_ext.push import decode_update

        update = decode_update(self.capp, message)
        if update is None:
            return None
        progress = None
        if update.progress is not None:
            p = update.progress
            if p.issues:
                metrics.PROGRESS_CORRECTIONS.inc(len(p.issues))
            progress = {
                "current": p.current,
                "total": p.total,
                "percent": p.percent,
                "message": p.message,
                "updated_at": p.updated_at,
                "issues": list(p.issues),
            }
        return {
            "task_id": update.task_id,
            "phase": update.phase.value,
            "state": update.state,
            "ready": update.phase.settled,
            "progress": progress,
        }

    # -- flushing -----------------------------------------------------------------------
    async def _flusher(self) -> None:
        last_poll = time.monotonic()
        last_board = 0.0
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.coalesce_s * 5)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(self.coalesce_s)  # let a burst of messages collect
            self._wake.clear()
            now = time.monotonic()
            if not self.connected and now - last_poll >= self.poll_interval_s:
                # Server-side polling while push is down.
                self._dirty.update(self.task_watchers)
                last_poll = now
            if self.board_watchers and now - last_board >= self.board_refresh_s:
                self._board_refresh_wanted = True
            try:
                await self._flush_tasks()
                if self._board_refresh_wanted and self.board_watchers:
                    self._board_refresh_wanted = False
                    last_board = time.monotonic()
                    await self._refresh_board()
                self._flush_board_updates()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("flower-fileintel: live update flush failed")

    async def _flush_tasks(self) -> None:
        ids = [i for i in self._dirty if i in self.task_watchers]
        self._dirty.clear()
        if not ids:
            return
        try:
            statuses = await self._describe_many(ids)
        except Exception as exc:
            self._log_read_error(f"could not read {len(ids)} watched task(s): {exc}")
            return
        self._last_read_error = None
        for status in statuses:
            text = json.dumps(status.to_dict(), allow_nan=False)
            for watcher in list(self.task_watchers.get(status.task_id, ())):
                watcher.offer(text, status.phase.settled)

    def _flush_board_updates(self) -> None:
        if not self._board_updates:
            return
        updates, self._board_updates = self._board_updates, {}
        for watcher in list(self.board_watchers):
            if watcher.has_snapshot:
                watcher.offer_updates(updates)

    def _log_read_error(self, message: str) -> None:
        """Log a failed read once, not every 2 s for the length of an outage."""
        if message != self._last_read_error:
            logger.warning("flower-fileintel: %s (pages keep retrying)", message)
            self._last_read_error = message

    async def _refresh_board(self) -> None:
        from celery_ext.records import ACTIVE_READ_LIMIT

        # Taken before the read: a task asking while it runs asks for the next one.
        asking, self._asking = self._asking, set()
        try:
            snapshot = await self._board_snapshot()
            text = json.dumps(snapshot, allow_nan=False)
        except Exception as exc:
            message = f"could not refresh the board: {exc}"
            self._asking |= asking
            self._log_read_error(message)
            for watcher in list(self.board_watchers):
                watcher.offer_problem(message)
            return
        self._known_on_board = _unfinished_ids(snapshot)
        if len(self._known_on_board) >= ACTIVE_READ_LIMIT:
            # A full board left these out: they started before every task it shows. A task
            # that starts later is not in this set, so its first update still asks. (On a
            # board with room, a task missing is one whose start the worker has not written
            # yet: it keeps asking. On a full one it shows at the next periodic refresh.)
            if len(self._off_board) > OFF_BOARD_MAX:
                self._off_board.clear()
            self._off_board |= asking - self._known_on_board
        for watcher in list(self.board_watchers):
            watcher.offer_snapshot(text)


def _unfinished_ids(snapshot: dict[str, Any]) -> set[str]:
    """The unfinished tasks a board snapshot shows, whichever of its sections holds them."""
    return {
        entry["task_id"]
        for section in snapshot.values() if isinstance(section, list)
        for entry in section if isinstance(entry, dict) and "task_id" in entry and not entry.get("ready")
    }
