"""Pushed task updates: the one place that knows how to listen to Celery's result channels.

Celery PUBLISHes every state change of a task (PROGRESS included) on the channel named like
the task's result key. Two readers listen: ``wait()`` (blocking, a channel per waited id)
and Flower's live hub (on the IOLoop, one pattern for every task). Both get their
connection, their decoding and their reconnect backoff from here, so a backend either
pushes for both or for neither (Sentinel included), and both apply the same settings.

- ``supports_push(app)``: a Redis result backend, plain or Sentinel.
- ``Subscriber`` (blocking: ``wait()`` subscribes to its tasks' channels) and
  ``AsyncSubscriber`` (awaitable: Flower's hub subscribes to the pattern of every channel):
  one pub/sub connection each; ``parse_message`` turns what they read into a ``Message``.
- ``decode_update(app, message)``: a small message turned into an ``Update`` (state, phase,
  normalised progress) without a Redis read, or None when a real read must say more.
- ``Backoff``: the delays between reconnects (and between polls where nothing pushes).
"""

from __future__ import annotations

import inspect
import logging
import os
import queue
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery_ext._compat import aclose

if TYPE_CHECKING:
    from celery import Celery

    from celery_ext.status import Phase, Progress

__all__ = [
    "supports_push",
    "Message",
    "parse_message",
    "Subscriber",
    "AsyncSubscriber",
    "Update",
    "decode_update",
    "Backoff",
    "SMALL_MESSAGE",
    "CONNECT_TIMEOUT",
]

logger = logging.getLogger(__name__)

#: Messages larger than this are not decoded (Celery publishes a 200 MB result whole): the
#: task is re-read through ``describe`` instead, which never loads a payload that large.
SMALL_MESSAGE = 64 * 1024
#: Longest wait (seconds) for Redis to open a pub/sub connection.
CONNECT_TIMEOUT = 5.0


def supports_push(app: Celery) -> bool:
    """Whether the result backend publishes state changes we can subscribe to (Redis, and
    Redis behind Sentinel)."""
    from celery.backends.redis import RedisBackend

    return isinstance(app.backend, RedisBackend)


@dataclass(frozen=True)
class Message:
    """One published state change: the task it belongs to and the payload as stored."""

    task_id: str
    data: bytes


def parse_message(app: Celery, raw: dict[str, Any] | None) -> Message | None:
    """A raw pub/sub message as a ``Message``; None for confirmations, pongs and channels
    that are not task results."""
    from celery_ext.records import task_id_from_channel

    if raw is None or raw.get("type") not in ("message", "pmessage"):
        return None
    try:
        task_id = task_id_from_channel(app, raw["channel"])
    except ValueError:
        return None
    data = raw["data"]
    return Message(task_id, data.encode() if isinstance(data, str) else data)


# --- the blocking subscriber (wait) ----------------------------------------------------------


class Subscriber:
    """A blocking pub/sub connection to the result backend's Redis.

    It fails fast (no retries, a short connect timeout): its caller retries against its own
    deadline. Closing the socket drops every subscription at once.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._client: Any = None
        self._owns_client = False
        self._pubsub: Any = None

    def connect(self, timeout: float | None) -> None:
        """Open the connection (at most ``timeout`` or ``CONNECT_TIMEOUT`` seconds)."""
        self.close()
        self._client, self._owns_client = _sync_client(self.app, timeout)
        self._pubsub = self._client.pubsub()

    def subscribe(self, channels: Iterable[bytes]) -> None:
        self._pubsub.subscribe(*channels)

    def get_raw(self, timeout: float) -> dict[str, Any] | None:
        """The next pub/sub message of any kind (subscribe confirmations too), or None."""
        message: dict[str, Any] | None = self._pubsub.get_message(timeout=timeout)
        return message

    def close(self, *, in_background: bool = False) -> None:
        """Release the connection; safe to call twice. ``in_background``: a daemon thread
        closes it, off the caller's path (``wait()`` returns its result without the
        ~50 microseconds closing a socket costs; ``AsyncResult.get()`` keeps its connection)."""
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        owned = client if self._owns_client else None
        if pubsub is None and owned is None:
            return
        if in_background:
            _close_in_background(pubsub, owned)
        else:
            _release(pubsub, owned)


def _release(pubsub: Any, client: Any) -> None:
    """Close a pub/sub connection and the client it came from, if ours (either may be None)."""
    if pubsub is not None:
        try:
            pubsub.close()
        except Exception:  # already broken: nothing left to release
            logger.debug("closing the pub/sub connection failed", exc_info=True)
    if client is not None:
        try:
            client.connection_pool.disconnect()
        except Exception:
            logger.debug("closing the pub/sub connection pool failed", exc_info=True)


_to_close: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
_closer_lock = threading.Lock()
#: The process whose closer thread runs (a forked child starts its own).
_closer_pid: int | None = None


def _close_in_background(pubsub: Any, client: Any) -> None:
    global _closer_pid
    if _closer_pid != os.getpid():
        with _closer_lock:
            if _closer_pid != os.getpid():
                threading.Thread(target=_close_forever, name="fileintel-closer", daemon=True).start()
                _closer_pid = os.getpid()
    _to_close.put((pubsub, client))


def _close_forever() -> None:
    while True:
        _release(*_to_close.get())


def _sync_client(app: Celery, timeout: float | None) -> tuple[Any, bool]:
    """A redis client for pub/sub on the result backend's server, and whether we own it.

    The backend's own client retries failed commands for seconds (redis-py's default policy);
    our callers retry against their own deadlines, so ours fails fast. Pools we cannot copy
    (Sentinel's, which resolve the master on connect) are used as they are.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from celery_ext.records import store_for

    client = app.backend.client
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return client, False
    kwargs = dict(pool.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    kwargs["retry_on_error"] = []
    kwargs.pop("retry_on_timeout", None)
    connect = kwargs.get("socket_connect_timeout") or CONNECT_TIMEOUT
    if timeout is not None:
        connect = min(connect, max(timeout, 0.05))
    kwargs["socket_connect_timeout"] = min(connect, CONNECT_TIMEOUT)
    # A reply (the handshake, a SUBSCRIBE confirmation) that does not come within the read
    # timeout fails the connection; waiting for messages is bounded by get_message's own
    # timeout, not by this.
    kwargs["socket_timeout"] = store_for(app).settings.read_timeout
    kwargs["health_check_interval"] = 0  # no PINGs: callers re-read to cover a dead link
    kwargs["socket_keepalive"] = True
    own_pool = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=2, **kwargs)
    return redis.Redis(connection_pool=own_pool), True


# --- the asyncio subscriber (Flower's live hub) ---------------------------------------------


class AsyncSubscriber:
    """The awaitable twin of ``Subscriber``, for an asyncio loop (Flower's IOLoop).

    ``client_name`` names the connection so ``CLIENT LIST`` shows whose it is. The connection
    has no read timeout: it idles for long stretches, and its owner checks liveness by PING.
    """

    def __init__(self, app: Celery, client_name: str | None = None) -> None:
        self.app = app
        self.client_name = client_name or f"fileintel-{os.getpid()}"
        self._client: Any = None
        self._pubsub: Any = None

    async def connect(self, timeout: float | None = None) -> None:
        await self.close()
        self._client = _async_client(self.app, self.client_name, timeout)
        self._pubsub = self._client.pubsub()

    async def psubscribe(self, pattern: bytes) -> None:
        await self._bounded(self._pubsub.psubscribe(pattern))

    async def _bounded(self, command: Any) -> None:
        """The connection has no read timeout (it idles): bound the commands that wait for a
        reply, so a Redis that accepts connections and never answers fails them instead."""
        import asyncio

        from celery_ext.records import store_for

        await asyncio.wait_for(command, store_for(self.app).settings.read_timeout)

    async def get_raw(self, timeout: float) -> dict[str, Any] | None:
        message: dict[str, Any] | None = await self._pubsub.get_message(
            ignore_subscribe_messages=False, timeout=timeout
        )
        return message

    async def ping(self) -> None:
        """Ask for a PONG (it arrives through ``get_raw``)."""
        await self._pubsub.ping()

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        for resource in (pubsub, client):
            if resource is not None:
                try:
                    await aclose(resource)
                except Exception:
                    logger.debug("closing the async pub/sub connection failed", exc_info=True)


def _async_client(app: Celery, client_name: str, timeout: float | None) -> Any:
    """A ``redis.asyncio`` client for the result backend's Redis, built from the backend's own
    connection parameters (URL, password, TLS, unix socket, Sentinel match what Celery uses)."""
    import redis
    import redis.asyncio as aioredis
    from celery.backends.redis import SentinelBackend

    backend = app.backend
    params = dict(backend.connparams)
    conn_class = params.pop("connection_class", None)
    params.pop("max_connections", None)
    params.pop("retry_on_timeout", None)  # deprecated in redis-py 6; owners reconnect themselves
    params["socket_timeout"] = None
    connect = params.get("socket_connect_timeout") or CONNECT_TIMEOUT
    params["socket_connect_timeout"] = connect if timeout is None else min(connect, max(timeout, 0.05))
    params["client_name"] = client_name
    try:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        params["retry"] = Retry(NoBackoff(), 0)
    except ImportError:  # redis-py 4.6 has no async Retry: its default does not retry either
        pass

    if conn_class is not None and issubclass(conn_class, redis.SSLConnection):
        params["ssl"] = True

    if isinstance(backend, SentinelBackend):
        from redis.asyncio import sentinel as async_sentinel

        # Any: redis-py leaves Sentinel.__init__ unannotated (and 4.6 ships no hints at all).
        Sentinel: Any = async_sentinel.Sentinel
        hosts = [(h["host"], h["port"]) for h in params.pop("hosts")]
        options = backend._transport_options  # where Celery itself reads master_name from
        sentinel = Sentinel(
            hosts,
            min_other_sentinels=options.get("min_other_sentinels", 0),
            sentinel_kwargs=options.get("sentinel_kwargs", {}),
        )
        accepted = set(inspect.signature(aioredis.Connection.__init__).parameters) | {"ssl"}
        return sentinel.master_for(options.get("master_name"), **{k: v for k, v in params.items() if k in accepted})

    if conn_class is not None and issubclass(conn_class, redis.UnixDomainSocketConnection):
        params["unix_socket_path"] = params.pop("path", None)
    accepted = set(inspect.signature(aioredis.Redis.__init__).parameters)
    return aioredis.Redis(**{k: v for k, v in params.items() if k in accepted})


# --- decoding a message without a read ---------------------------------------------------


@dataclass(frozen=True)
class Update:
    """What one small published message says about its task."""

    task_id: str
    state: str
    phase: Phase
    #: Normalised progress (with ``fileintel_progress_message_max`` applied) for PROGRESS.
    progress: Progress | None


def decode_update(app: Celery, message: Message) -> Update | None:
    """The state change a message carries, or None when only a real read can tell: the
    message is large, undecodable, not a result meta, or stored as pickle and this reader
    does not decode pickle (``fileintel_decode_pickle``)."""
    from celery_ext.decoding import decode_stored
    from celery_ext.progress import PROGRESS_STATE, normalize_progress
    from celery_ext.records import store_for
    from celery_ext.status import classify

    if len(message.data) > SMALL_MESSAGE:
        return None
    settings = store_for(app).settings
    try:
        meta = decode_stored(app, message.data, allow_pickle=settings.decode_pickle)
        state = meta["status"]
    except Exception:  # refused (pickle), undecodable or not a meta: a real read says why
        return None
    if not isinstance(state, str):
        return None
    progress = None
    if state == PROGRESS_STATE:
        progress = normalize_progress(meta.get("result"), settings.progress_message_max)
    return Update(message.task_id, state, classify(state), progress)


class Backoff:
    """``initial`` seconds, then x``factor`` per step up to ``cap``, each with +-20 % jitter so
    many reconnecting readers spread out."""

    def __init__(self, initial: float, cap: float, factor: float = 1.6) -> None:
        self.initial, self.cap, self.factor = initial, cap, factor
        self._current = initial

    def next(self) -> float:
        delay = self._current * random.uniform(0.8, 1.2)
        self._current = min(self.cap, self._current * self.factor)
        return min(delay, self.cap)

    def reset(self) -> None:
        self._current = self.initial
