"""The task-record store: key layout, the Redis clients, and the indexes.

A task record (what it holds and how it is written: ``task_record.py``) lives
``record_ttl`` (7 days by default), far longer than the result itself, so "succeeded at
10:02, result expired at 11:02" can be told apart from "no such task".

All Redis key names are built here and derived from the result backend's task key prefix,
so ``result_backend_transport_options={"global_keyprefix": ...}`` carries over::

    <prefix>celery-task-meta-<id>     Celery's own result (also its pub/sub channel)
    <prefix>fileintel-record-<id>     our record (hash)
    <prefix>fileintel-active          ids of started, unfinished tasks (sorted set, by start time)
    <prefix>fileintel-finished        ids of the last finished tasks (sorted set, by end time)
    <prefix>fileintel-queued          ids a producer sent (sorted set, by send time); readers
                                      drop the ones that moved on (``stuck.py``)
    <prefix>fileintel-worker-<inc>    a worker incarnation's last liveness beat (Redis time)
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Celery

from celery_ext.errors import BackendUnavailable
from celery_ext.ids import validate_task_id
from celery_ext.settings import (
    effective_record_ttl,
    get_settings,
    result_expires_seconds,
)
from celery_ext.task_record import text_of

if TYPE_CHECKING:
    from celery.backends.redis import RedisBackend
    from redis import Redis

__all__ = [
    "RecordStore",
    "IndexPages",
    "store_for",
    "meta_key",
    "meta_channel_pattern",
    "task_id_from_channel",
    "redis_client",
    "recent_task_ids",
    "backend_errors",
    "unavailable",
    "FINISHED_INDEX_SIZE",
    "FAILED_INDEX_SIZE",
    "ACTIVE_READ_LIMIT",
    "QUEUED_INDEX_SIZE",
]

logger = logging.getLogger(__name__)

_CELERY_META_PREFIX = b"celery-task-meta-"
_RECORD = b"fileintel-record-"
_ACTIVE = b"fileintel-active"
_FINISHED = b"fileintel-finished"
_FAILED = b"fileintel-failed"
_QUEUED = b"fileintel-queued"
_WORKER = b"fileintel-worker-"
#: How many finished ids the "finished" index keeps (the board's "recently finished").
FINISHED_INDEX_SIZE = 1000
#: How many failed or revoked ids the "failed" index keeps: a flood of successes cannot push
#: the last failures out of sight, as it does in "finished".
FAILED_INDEX_SIZE = 1000
#: How many of the newest started, unfinished tasks readers of the "active" index look at
#: (the board, the inventory, short ids): their cost stays bounded however many run.
ACTIVE_READ_LIMIT = 200
#: At most this many ids in the "queued" index: past it the writer's trim drops the newest,
#: so the oldest (the ones the board's "stuck" section shows) stay.
QUEUED_INDEX_SIZE = 100_000


@dataclass(frozen=True)
class IndexPages:
    """What ``RecordStore.index_pages`` read: the newest ids of the active, finished and
    failed indexes, and the oldest queued ids with their send times."""

    active: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    queued: list[tuple[str, float]] = field(default_factory=list)


class RecordStore:
    """Where one app's records live: a Redis backend object (for its client) and key prefix.

    When the result backend is Redis (or Sentinel) the records sit beside the results. When
    it is not, ``fileintel_redis_url`` or a Redis broker URL is used through a Redis backend
    object of our own, so TLS and Sentinel URLs work exactly as in Celery.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings = get_settings(app)
        self.result_backend_is_redis = _is_redis_backend(app.backend)
        self.url = self._records_url()
        self.enabled = self.url is not None
        self.record_ttl = effective_record_ttl(app, self.settings)
        #: ``result_expires`` in seconds (None: never), as the worker's receivers record it.
        self.result_expires_s = result_expires_seconds(app)
        self._local = threading.local()
        backend = app.backend
        if self.result_backend_is_redis:
            task_prefix: bytes = backend.task_keyprefix
        else:
            task_prefix = _prefixed(app, _CELERY_META_PREFIX)
        self.prefix = task_prefix[: -len(_CELERY_META_PREFIX)]
        self.meta_prefix = task_prefix

    @property
    def records_beside_results(self) -> bool:
        """Records live in the result backend's own Redis (no ``fileintel_redis_url``): a
        task's end can ride along with Celery's write of its result."""
        return self.result_backend_is_redis and not self.settings.redis_url

    def _records_url(self) -> str | None:
        if self.settings.redis_url:
            return self.settings.redis_url
        if self.result_backend_is_redis:
            return str(self.app.backend.url or self.app.conf.result_backend)
        broker = self.app.conf.broker_url or ""
        if isinstance(broker, str) and broker.split(":", 1)[0] in ("redis", "rediss", "sentinel"):
            return broker
        return None

    @property
    def display_url(self) -> str:
        from celery_ext.errors import redact_url

        return redact_url(self.url or "")

    # -- keys ---------------------------------------------------------------------------
    def meta_key(self, task_id: str) -> bytes:
        return self.meta_prefix + validate_task_id(task_id).encode()

    def record_key(self, task_id: str) -> bytes:
        return self.prefix + _RECORD + validate_task_id(task_id).encode()

    @property
    def active_key(self) -> bytes:
        return self.prefix + _ACTIVE

    @property
    def finished_key(self) -> bytes:
        return self.prefix + _FINISHED

    @property
    def failed_key(self) -> bytes:
        return self.prefix + _FAILED

    @property
    def queued_key(self) -> bytes:
        return self.prefix + _QUEUED

    @property
    def worker_key_prefix(self) -> bytes:
        return self.prefix + _WORKER

    def worker_key(self, incarnation: str) -> bytes:
        return self.worker_key_prefix + incarnation.encode()

    def keys_for_write(self, task_id: str) -> list[bytes]:
        return [
            self.record_key(task_id), self.meta_key(task_id), self.active_key, self.finished_key, self.failed_key,
            self.queued_key,
        ]

    # -- clients ------------------------------------------------------------------------
    def client(self) -> Redis:
        """The Redis client for reads in this thread: the same server and options as the
        result backend's, but with ``fileintel_read_timeout`` and no retries, so a Redis that
        never answers fails a read in that time instead of hanging it (Celery's own client
        waits ``redis_socket_timeout``, 120 s by default, and retries)."""
        client: Redis = self.own_backend(self.settings.read_timeout).client
        return client

    def own_backend(self, socket_timeout: float | None = None) -> RedisBackend:
        """A Redis backend object of our own for this thread (records on a separate Redis,
        or writes with a short socket timeout)."""
        cache = self._local.__dict__.setdefault("backends", {})
        if socket_timeout not in cache:
            cache[socket_timeout] = self._make_backend(socket_timeout)
        backend: RedisBackend = cache[socket_timeout]
        return backend

    def _make_backend(self, socket_timeout: float | None) -> RedisBackend:
        from celery.app.backends import by_url

        if self.url is None:
            raise RuntimeError("task records are off: no Redis URL for them")
        cls, url = by_url(self.url, self.app.loader)
        backend = cls(app=self.app, url=url)
        if socket_timeout is not None:
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.retry import Retry

            backend.connparams["socket_timeout"] = socket_timeout
            backend.connparams["socket_connect_timeout"] = socket_timeout
            # One reconnect for a connection the server dropped (a restart), never a second
            # wait on a server that does not answer: a timeout is final.
            backend.connparams["retry_on_timeout"] = False
            backend.connparams["retry_on_error"] = [RedisConnectionError]
            backend.connparams["retry"] = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        return backend

    # -- reads of the finished index, for the board's filters and paging ------------------
    def finished_count(self) -> int:
        """How many ids the finished index holds (at most ``FINISHED_INDEX_SIZE`` or so)."""
        if not self.enabled:
            return 0
        try:
            return int(self.client().zcard(self.finished_key))
        except backend_errors() as exc:
            raise unavailable(self, exc) from exc

    def finished_ids(self, start: int, count: int) -> list[str]:
        """``count`` ids of the finished index from position ``start``, newest first (ids
        that are not valid task ids are skipped, as in ``index_pages``)."""
        if not self.enabled or count <= 0:
            return []
        try:
            raw = self.client().zrevrange(self.finished_key, max(0, start), max(0, start) + count - 1)
        except backend_errors() as exc:
            raise unavailable(self, exc) from exc
        return _valid_ids(raw, self.finished_key)

    def states_and_names(self, task_ids: list[str]) -> list[tuple[str | None, str | None]]:
        """Each task's record ``state`` and ``name`` (None where missing), in one pipelined
        round trip: what the board filters the finished index by."""
        if not self.enabled or not task_ids:
            return [(None, None) for _ in task_ids]
        try:
            pipe = self.client().pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hmget(self.record_key(task_id), "state", "name")
            replies = pipe.execute()
        except backend_errors() as exc:
            raise unavailable(self, exc) from exc
        return [
            (text_of(state) if state is not None else None, text_of(name) if name is not None else None)
            for state, name in replies
        ]

    # -- pages of the indexes, for the board and other readers ----------------------------
    def index_pages(
        self,
        *,
        active: int = 0,
        finished: int = 0,
        failed: int = 0,
        queued_before: tuple[float, int] | None = None,
    ) -> IndexPages:
        """The pages of the indexes a reader asks for, in one pipelined round trip: the
        newest ``active``, ``finished`` and ``failed`` ids (0 reads none of that index), and
        with ``queued_before=(cutoff, limit)`` the oldest ``limit`` ids of the queued index sent
        before ``cutoff`` (epoch seconds), with their send times, oldest first.

        Ids that are not valid task ids are skipped; in the queued index they are removed
        as well (one more command, only when there are some), so they cannot keep real ones
        off the page for good."""
        if not self.enabled:
            return IndexPages()
        newest = ((self.active_key, active), (self.finished_key, finished), (self.failed_key, failed))
        cutoff, queued_limit = queued_before if queued_before is not None else (0.0, 0)
        try:
            pipe = self.client().pipeline(transaction=False)
            for key, limit in newest:
                if limit > 0:
                    pipe.zrevrange(key, 0, limit - 1)
            if queued_limit > 0:
                pipe.zrangebyscore(
                    self.queued_key, "-inf", f"({cutoff!r}", start=0, num=queued_limit, withscores=True
                )
            replies = iter(pipe.execute())
        except backend_errors() as exc:
            raise unavailable(self, exc) from exc
        active_ids, finished_ids, failed_ids = (
            _valid_ids(next(replies), key) if limit > 0 else [] for key, limit in newest
        )
        queued = self._queued_page(next(replies)) if queued_limit > 0 else []
        return IndexPages(active_ids, finished_ids, failed_ids, queued)

    def _queued_page(self, raw: list[Any]) -> list[tuple[str, float]]:
        """A page of the queued index as (id, send time), its members that are not valid task
        ids removed from the index."""
        found: list[tuple[str, float]] = []
        foreign = []
        for member, score in raw:
            try:
                found.append((validate_task_id(text_of(member)), float(score)))
            except ValueError:  # written by something else: it must not hold a slot for good
                foreign.append(member)
        if foreign:
            logger.warning("fileintel: dropping %d id(s) from %s: not valid task ids", len(foreign), text_of(self.queued_key))
            try:
                self.client().zrem(self.queued_key, *foreign)
            except backend_errors() as exc:
                raise unavailable(self, exc) from exc
        return found

    def queues_of(self, task_ids: list[str]) -> list[str | None]:
        """Each task's recorded ``queue`` (the routing key it was sent with), in one
        pipelined round trip."""
        if not self.enabled or not task_ids:
            return [None for _ in task_ids]
        try:
            pipe = self.client().pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hget(self.record_key(task_id), "queue")
            replies = pipe.execute()
        except backend_errors() as exc:
            raise unavailable(self, exc) from exc
        return [text_of(q) if q is not None else None for q in replies]

    def forget_queued(self, task_ids: list[str]) -> None:
        """Take ids that left the queue out of the queued index (one command)."""
        if not self.enabled or not task_ids:
            return
        try:
            self.client().zrem(self.queued_key, *task_ids)
        except backend_errors() as exc:
            raise unavailable(self, exc) from exc


def _is_redis_backend(backend: Any) -> bool:
    from celery.backends.redis import RedisBackend

    return isinstance(backend, RedisBackend)


def _prefixed(app: Celery, prefix: bytes) -> bytes:
    """Apply ``global_keyprefix`` the way Celery's key-value backends do."""
    options = app.conf.get("result_backend_transport_options") or {}
    global_prefix = str(options.get("global_keyprefix") or "")
    if not global_prefix:
        return prefix
    if global_prefix[-1] not in ":_-.":
        global_prefix += "_"
    return global_prefix.encode() + prefix


_stores: weakref.WeakKeyDictionary[Celery, RecordStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def store_for(app: Celery) -> RecordStore:
    """The (cached) RecordStore of ``app``."""
    store = _stores.get(app)
    if store is not None:
        return store
    with _stores_lock:
        store = _stores.get(app)
        if store is None:
            store = _stores[app] = RecordStore(app)
        return store


def forget_store(app: Celery) -> None:
    """Drop the cached store (after changing settings in tests or at run time)."""
    with _stores_lock:
        _stores.pop(app, None)


# -- the small public helpers the CLI and Flower use --------------------------------------


def meta_key(app: Celery, task_id: str) -> bytes:
    """Celery's result key for ``task_id``; also the channel its state changes are published on."""
    return store_for(app).meta_key(task_id)


def meta_channel_pattern(app: Celery) -> bytes:
    """A PSUBSCRIBE pattern matching every task's result channel."""
    return store_for(app).meta_prefix + b"*"


def task_id_from_channel(app: Celery, channel: bytes | str) -> str:
    """The task id a result channel (or key) belongs to."""
    raw = channel.encode() if isinstance(channel, str) else channel
    prefix = store_for(app).meta_prefix
    if not raw.startswith(prefix):
        raise ValueError(f"{raw!r} is not a task result channel")
    return raw[len(prefix):].decode()


def redis_client(app: Celery) -> Redis:
    """The redis-py client that reads results and records in this thread."""
    return store_for(app).client()


def recent_task_ids(app: Celery, kind: str, limit: int = 100) -> list[str]:
    """Ids from the bootstep's indexes, newest first: ``active`` (started, not finished),
    ``finished`` (the last 1,000 finished) or ``failed`` (the last 1,000 failed or revoked).
    A reader of several indexes reads them in one round trip: ``RecordStore.index_pages``."""
    store = store_for(app)
    if kind == "active":
        return store.index_pages(active=limit).active
    if kind == "finished":
        return store.index_pages(finished=limit).finished
    if kind == "failed":
        return store.index_pages(failed=limit).failed
    raise ValueError(f"no index {kind!r}: active, finished or failed")


def _valid_ids(raw: list[Any], key: bytes) -> list[str]:
    """The members of an index page that are valid task ids, in order."""
    valid = []
    for item in raw:
        text = text_of(item)
        try:
            valid.append(validate_task_id(text))
        except ValueError:  # written by something else: no task of ours, and no reader's problem
            logger.warning("fileintel: skipping %r in %s: not a valid task id", text[:80], text_of(key))
    return valid


def backend_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "Redis / the backend did not answer"."""
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def unavailable(store: RecordStore, exc: BaseException) -> BackendUnavailable:
    """The error readers raise when ``exc`` (one of ``backend_errors()``) hit ``store``."""
    text = str(exc) or type(exc).__name__
    reason = text.splitlines()[0][:200].rstrip(".")
    return BackendUnavailable(store.url or str(store.app.conf.result_backend or ""), reason)
