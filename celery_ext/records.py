"""The task-record store: key layout, the Redis client, and writes that never downgrade.

A *task record* is a small Redis hash per task, written by the worker (and by producers that
called ``install``) at each transition: sent, received, started, retry, and the terminal
success / failure / revoked. It lives ``record_ttl`` (7 days by default), far longer than the
result itself, so "succeeded at 10:02, result expired at 11:02" can be told apart from
"no such task".

All Redis key names are built here and derived from the result backend's task key prefix,
so ``result_backend_transport_options={"global_keyprefix": ...}`` carries over::

    <prefix>celery-task-meta-<id>     Celery's own result (also its pub/sub channel)
    <prefix>fileintel-record-<id>     our record (hash)
    <prefix>fileintel-active          ids of started, unfinished tasks (sorted set, by start time)
    <prefix>fileintel-finished        ids of the last finished tasks (sorted set, by end time)
    <prefix>fileintel-worker-<inc>    a worker incarnation's last liveness beat (Redis time)
"""

from __future__ import annotations

import enum
import logging
import math
import string
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from celery import Celery, states

from celery_ext.errors import BackendUnavailable
from celery_ext.ids import validate_task_id
from celery_ext.settings import effective_record_ttl, get_settings

if TYPE_CHECKING:
    from celery.backends.redis import RedisBackend
    from redis import Redis

__all__ = [
    "Rank",
    "TaskRecord",
    "RecordStore",
    "store_for",
    "meta_key",
    "meta_channel_pattern",
    "task_id_from_channel",
    "redis_client",
    "recent_task_ids",
    "apply_write",
    "record_fields",
    "backend_errors",
    "unavailable",
    "WRITE_SCRIPT",
    "SENT",
]

logger = logging.getLogger(__name__)

#: Our name for "a producer sent it"; Celery has no such state.
SENT = "SENT"
_CELERY_META_PREFIX = b"celery-task-meta-"
_RECORD = b"fileintel-record-"
_ACTIVE = b"fileintel-active"
_FINISHED = b"fileintel-finished"
_WORKER = b"fileintel-worker-"
#: How many finished ids the "finished" index keeps (the board's "recently finished").
FINISHED_INDEX_SIZE = 1000


class Rank(enum.IntEnum):
    """Order of transitions. A record's state only moves up, and never leaves TERMINAL."""

    SENT = 0
    RECEIVED = 1
    RUNNING = 2  # STARTED and RETRY: a retried task runs again, so they share a rank
    TERMINAL = 3

    @classmethod
    def of(cls, state: str) -> Rank:
        if state in (states.SUCCESS, states.FAILURE, states.REVOKED, states.IGNORED, states.REJECTED):
            return cls.TERMINAL
        if state in (states.STARTED, states.RETRY):
            return cls.RUNNING
        if state == states.RECEIVED:
            return cls.RECEIVED
        return cls.SENT


# KEYS: record, meta, active index, finished index
# ARGV: ttl, state ('' for none), rank, now (epoch seconds), task id, measure ('1': read the
#       stored result's size and TTL), finished-index size ('0': do not trim the indexes, the
#       writer asks once per batch), the fields as one JSON object of strings (one argument
#       is much cheaper for redis-py to pack than a pair per field), the live fields (JSON).
# A write that does not move the state up (a late or duplicate signal) only fills fields that
# are still missing, so a terminal record is never downgraded. Live fields (the last
# progress) overwrite while the record is not terminal. One script = one atomic step;
# the common terminal write runs 7 commands (HGET, STRLEN, PTTL, TIME, HSET, ZADD, EXPIRE).
WRITE_SCRIPT = string.Template("""
local cur = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local rank = tonumber(ARGV[3])
local upgrade = ARGV[2] ~= '' and cur < $TERMINAL and rank >= cur
local now = tonumber(ARGV[4])
local trim = tonumber(ARGV[7])
local given = cjson.decode(ARGV[8])
if upgrade then
  local fields = {'state', ARGV[2], 'rank', rank}
  for k, v in pairs(given) do
    table.insert(fields, k)
    table.insert(fields, v)
  end
  if rank == $TERMINAL and ARGV[6] == '1' then
    local pttl = redis.call('PTTL', KEYS[2])
    table.insert(fields, 'result_bytes')
    table.insert(fields, redis.call('STRLEN', KEYS[2]))
    if pttl > 0 then
      local t = redis.call('TIME')  -- the server's clock: the one that expires the key
      table.insert(fields, 'result_expires_ts')
      table.insert(fields, tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000 + pttl / 1000))
    elseif pttl == -1 then
      table.insert(fields, 'result_expires_ts')
      table.insert(fields, 'never')
    end
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  if rank == $TERMINAL then
    if cur == $RUNNING then redis.call('ZREM', KEYS[3], ARGV[5]) end
    redis.call('ZADD', KEYS[4], now, ARGV[5])
  elseif rank == $RUNNING then
    redis.call('ZADD', KEYS[3], now, ARGV[5])
  end
else
  for k, v in pairs(given) do
    redis.call('HSETNX', KEYS[1], k, v)
  end
end
if cur < $TERMINAL then
  for k, v in pairs(cjson.decode(ARGV[9])) do
    redis.call('HSET', KEYS[1], k, v)
  end
end
if trim > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[1]))
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -trim - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return upgrade and 1 or 0
""").substitute(TERMINAL=int(Rank.TERMINAL), RUNNING=int(Rank.RUNNING))


@dataclass(frozen=True)
class TaskRecord:
    """A record as read back (all fields optional: writes arrive in any order)."""

    state: str | None = None
    name: str | None = None
    worker: str | None = None
    queue: str | None = None
    queued_at: datetime | None = None
    received_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    runtime_s: float | None = None
    retries: int | None = None
    result_bytes: int | None = None
    #: When the stored result expires/expired; None: unknown. ``never`` is kept apart.
    result_expires_at: datetime | None = None
    result_never_expires: bool = False
    result_expires_s: int | None = None  # the result_expires setting at completion
    error_type: str | None = None
    error_module: str | None = None
    error_message: str | None = None
    ignore_result: bool = False
    placeholders: str | None = None  # JSON list written by FileIntelTask
    error_traceback: str | None = None  # head and tail, at most fileintel_traceback_max
    progress: str | None = None  # the last report_progress() (JSON), kept past a revoke
    incarnation: str | None = None  # the worker incarnation that started it (liveness key)

    @property
    def terminal(self) -> bool:
        return self.state is not None and Rank.of(self.state) is Rank.TERMINAL

    @classmethod
    def from_redis(cls, raw: Mapping[Any, Any] | list[Any] | None) -> TaskRecord | None:
        """Parse HGETALL output (a dict, or the flat list a Lua script returns)."""
        return cls.from_fields(record_fields(raw))

    @classmethod
    def from_fields(cls, data: dict[str, str]) -> TaskRecord | None:
        """Parse the record's fields as text."""
        if not data:
            return None
        expires = data.get("result_expires_ts")
        return cls(
            state=data.get("state"),
            name=data.get("name"),
            worker=data.get("worker"),
            queue=data.get("queue"),
            queued_at=_time(data.get("queued_at")),
            received_at=_time(data.get("received_at")),
            started_at=_time(data.get("started_at")),
            completed_at=_time(data.get("completed_at")),
            runtime_s=_float(data.get("runtime_s")),
            retries=_int(data.get("retries")),
            result_bytes=_int(data.get("result_bytes")),
            result_expires_at=_time(expires) if expires and expires != "never" else None,
            result_never_expires=expires == "never",
            result_expires_s=_int(data.get("result_expires_s")),
            error_type=data.get("error_type"),
            error_module=data.get("error_module"),
            error_message=data.get("error_message"),
            ignore_result=data.get("ignore_result") == "1",
            placeholders=data.get("placeholders"),
            error_traceback=data.get("error_traceback"),
            progress=data.get("progress"),
            incarnation=data.get("incarnation"),
        )


def record_fields(raw: Mapping[Any, Any] | list[Any] | None) -> dict[str, str]:
    """A record's fields as text, from HGETALL output (a dict, or a Lua script's flat list).
    Bytes that are not UTF-8 are replaced, never raised on."""
    if not raw:
        return {}
    pairs = zip(raw[0::2], raw[1::2]) if isinstance(raw, list) else raw.items()
    return {_text(k): _text(v) for k, v in pairs}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def apply_write(
    fields: dict[str, str], state: str | None, new: dict[str, str], live: dict[str, str] | None = None
) -> dict[str, str]:
    """A record's fields after one write, by the write script's rule: a write that moves the
    state up (and not out of a terminal state) sets its fields, any other only fills the
    missing ones; ``live`` fields overwrite while the record is not terminal. (The writer
    folds batches with it; readers overlay pending writes with it.)"""
    current = fields.get("state")
    current_rank = Rank.of(current) if current else -1
    if state and current_rank < Rank.TERMINAL and Rank.of(state) >= current_rank:
        result = {**fields, **new, "state": state}
    else:
        result = {**new, **fields}
    if live and current_rank < Rank.TERMINAL:
        result.update(live)
    return result


def _time(value: str | None) -> datetime | None:
    """Records store times as epoch seconds (what the Lua script can compute with)."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


#: Numbers in a record beyond this are corrupt (no runtime, size or retry count is near it).
_NUMBER_LIMIT = 1e15


def _float(value: str | None) -> float | None:
    """A number field (every one is a count, a size or a duration); None when missing, not a
    number, NaN, infinite, negative or absurdly large."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    if number is None or not math.isfinite(number) or not 0 <= number <= _NUMBER_LIMIT:
        return None
    return number


def _int(value: str | None) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


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
        self._local = threading.local()
        backend = app.backend
        if self.result_backend_is_redis:
            task_prefix: bytes = backend.task_keyprefix
        else:
            task_prefix = _prefixed(app, _CELERY_META_PREFIX)
        self.prefix = task_prefix[: -len(_CELERY_META_PREFIX)]
        self.meta_prefix = task_prefix

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
    def worker_key_prefix(self) -> bytes:
        return self.prefix + _WORKER

    def worker_key(self, incarnation: str) -> bytes:
        return self.worker_key_prefix + incarnation.encode()

    def keys_for_write(self, task_id: str) -> list[bytes]:
        return [self.record_key(task_id), self.meta_key(task_id), self.active_key, self.finished_key]

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
    """Ids from the bootstep's indexes, newest first: ``active`` (started, not finished)
    or ``finished`` (the last 1,000 finished)."""
    store = store_for(app)
    if not store.enabled:
        return []
    key = {"active": store.active_key, "finished": store.finished_key}[kind]
    try:
        ids = store.client().zrevrange(key, 0, max(0, limit - 1))
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc
    valid = []
    for raw in ids:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            valid.append(validate_task_id(text))
        except ValueError:  # written by something else: no task of ours, and no reader's problem
            logger.warning("fileintel: skipping %r in %s: not a valid task id", text[:80], _text(key))
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
