"""Live updates: ONE Redis pub/sub connection per Flower process, fanned out to every browser.

Celery publishes every state change of a task (PROGRESS included) on the channel named like
its result key. The hub PSUBSCRIBEs once to the pattern of all of them
(``celery_ext.records.meta_channel_pattern``) with ``redis.asyncio`` on Flower's IOLoop, and:

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
import inspect
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Celery

from celery_ext._compat import aclose
from flower_fileintel import metrics

if TYPE_CHECKING:
    from celery_ext.status import TaskStatus

__all__ = ["LiveHub", "TaskWatcher", "BoardWatcher", "async_redis_for_backend", "board_entry"]

logger = logging.getLogger(__name__)

#: Messages larger than this are not decoded on the IOLoop (a 200 MB result is published
#: whole by Celery): the task is just marked dirty and re-read through describe().
SMALL_MESSAGE = 64 * 1024
#: The subscriber connection's Redis client name is this plus the Flower process id.
CLIENT_NAME_PREFIX = "fileintel-live-"

DescribeMany = Callable[[list[str]], Awaitable[list["TaskStatus"]]]
BoardSnapshot = Callable[[], Awaitable[dict[str, Any]]]


def board_entry(status: TaskStatus) -> dict[str, Any]:
    """A task as the board shows it: the status document without the (possibly big) result."""
    doc = status.to_dict()
    doc.pop("result", None)
    if doc.get("error"):
        doc["error"] = {**doc["error"], "traceback": None}
    return doc


@dataclass(eq=False)
class TaskWatcher:
    """One viewer (or ``?wait=`` waiter) of one task: the latest document and a wake-up event."""

    task_id: str
    kind: str = "task"
    latest: str | None = None  # JSON text of the latest status document
    ready: bool = False  # the latest document is final
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, text: str, ready: bool) -> None:
        self.latest = text
        self.ready = ready
        self.event.set()

    def take(self) -> str | None:
        text, self.latest = self.latest, None
        self.event.clear()
        return text


@dataclass(eq=False)
class BoardWatcher:
    """One board viewer: the latest snapshot and the progress updates merged since."""

    snapshot: str | None = None
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    has_snapshot: bool = False  # updates are only useful once the viewer has the rows

    def offer_snapshot(self, text: str) -> None:
        self.has_snapshot = True
        self.snapshot = text
        self.updates.clear()  # the snapshot is newer than any pending update
        self.event.set()

    def offer_updates(self, updates: dict[str, dict[str, Any]]) -> None:
        self.updates.update(updates)
        self.event.set()

    def take(self) -> tuple[str | None, dict[str, dict[str, Any]]]:
        snapshot, updates = self.snapshot, self.updates
        self.snapshot, self.updates = None, {}
        self.event.clear()
        return snapshot, updates


def async_redis_for_backend(capp: Celery) -> Any | None:
    """A ``redis.asyncio`` client for the result backend's Redis, or None if it is not Redis.

    Built from the backend's own connection parameters, so URL, password, TLS and unix sockets
    match what Celery uses. Sentinel and non-Redis backends get None: pages then poll.
    """
    from celery.backends.redis import RedisBackend, SentinelBackend

    backend = capp.backend
    if not isinstance(backend, RedisBackend) or isinstance(backend, SentinelBackend):
        return None
    import redis
    import redis.asyncio as aioredis

    params = dict(backend.connparams)
    conn_class = params.pop("connection_class", None)
    if conn_class is not None and issubclass(conn_class, redis.SSLConnection):
        params["ssl"] = True
    elif conn_class is not None and issubclass(conn_class, redis.UnixDomainSocketConnection):
        params["unix_socket_path"] = params.pop("path", None)
    params.pop("max_connections", None)
    params.pop("retry_on_timeout", None)  # deprecated in redis-py 6; we reconnect ourselves
    # The subscriber idles for long stretches: no read timeout (liveness is checked by PING).
    params["socket_timeout"] = None
    params["socket_connect_timeout"] = params.get("socket_connect_timeout") or 5.0
    # Named, so `CLIENT LIST` shows which connection is the plugin's (one per Flower process).
    params["client_name"] = f"{CLIENT_NAME_PREFIX}{os.getpid()}"
    accepted = set(inspect.signature(aioredis.Redis.__init__).parameters)
    params = {k: v for k, v in params.items() if k in accepted}
    with contextlib.suppress(ImportError):
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        params["retry"] = Retry(NoBackoff(), 0)  # the hub does its own reconnecting
    return aioredis.Redis(**params)


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
        from celery_ext.records import meta_channel_pattern

        backoff = 0.5
        while not self._stopping:
            client = async_redis_for_backend(self.capp)
            if client is None:
                logger.info(
                    "flower-fileintel: the result backend is not a plain Redis server; "
                    "live pages poll instead of receiving pushed updates"
                )
                return
            self._client = client
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(meta_channel_pattern(self.capp))
                self.connections_opened += 1
                self._set_connected(True)
                backoff = 0.5
                logger.debug("flower-fileintel: subscribed to task updates")
                # At-most-once delivery: re-read everything watched after (re)connecting.
                self._dirty.update(self.task_watchers)
                self._board_refresh_wanted = bool(self.board_watchers)
                self._wake.set()
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.REDIS_ERRORS.labels("pubsub").inc()
                if self.connected or self.last_error != str(exc):
                    logger.warning(
                        "flower-fileintel: the Redis pub/sub connection for live updates failed "
                        "(%s); pages fall back to polling; reconnecting in %.1f s",
                        exc, backoff,
                    )
                self.last_error = str(exc)
            finally:
                self._set_connected(False)
                with contextlib.suppress(Exception):
                    await aclose(pubsub)
                with contextlib.suppress(Exception):
                    await aclose(client)
            if self._stopping:
                return
            await asyncio.sleep(backoff * (0.8 + 0.4 * random.random()))
            backoff = min(self.max_backoff_s, backoff * 2)

    async def _read(self, pubsub: Any) -> None:
        last_seen = time.monotonic()
        ping_sent: float | None = None
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            now = time.monotonic()
            if message is not None:
                last_seen = now
                ping_sent = None
                if message.get("type") == "pmessage":
                    self._on_message(message["channel"], message["data"])
                continue
            if ping_sent is not None and now - ping_sent > 5.0:
                raise ConnectionError("no answer to PING within 5 s")
            if ping_sent is None and now - last_seen > self.ping_interval_s:
                await pubsub.ping()
                ping_sent = now

    def _on_message(self, channel: bytes, data: Any) -> None:
        from celery_ext.records import task_id_from_channel

        self.messages += 1
        metrics.LIVE_MESSAGES.inc()
        try:
            task_id = task_id_from_channel(self.capp, channel)
        except ValueError:
            return
        if task_id in self.task_watchers:
            self.mark_dirty(task_id)
        if self.board_watchers:
            entry = self._board_update(task_id, data)
            if entry is None:
                self._board_refresh_wanted = True
            else:
                self._board_updates[task_id] = entry
                if entry["ready"] or task_id not in self._known_on_board:
                    self._board_refresh_wanted = True
            self._wake.set()

    def _board_update(self, task_id: str, data: Any) -> dict[str, Any] | None:
        """A board update from the message itself, or None if it needs a real read."""
        from celery_ext.decoding import decode_stored
        from celery_ext.progress import PROGRESS_STATE, normalize_progress
        from celery_ext.records import store_for
        from celery_ext.status import classify

        if not isinstance(data, (bytes, str)) or len(data) > SMALL_MESSAGE:
            return None
        try:
            meta = decode_stored(self.capp, data, allow_pickle=store_for(self.capp).settings.decode_pickle)
            state = meta["status"]
        except Exception:  # refused (pickle), undecodable or not a meta: a real read says why
            return None
        phase = classify(state)
        progress = None
        if state == PROGRESS_STATE:
            p = normalize_progress(meta.get("result"))
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
            "task_id": task_id,
            "phase": phase.value,
            "state": state,
            "ready": phase.settled,
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
        try:
            snapshot = await self._board_snapshot()
        except Exception as exc:
            self._log_read_error(f"could not refresh the board: {exc}")
            return
        self._known_on_board = {t["task_id"] for t in snapshot.get("running", [])}
        text = json.dumps(snapshot, allow_nan=False)
        for watcher in list(self.board_watchers):
            watcher.offer_snapshot(text)
