"""What a task record holds and how it changes: its fields, the ranks of its states, and
the one write script that never moves a record backwards.

A *task record* is a small Redis hash per task, written by the worker (and by producers that
called ``install``) at each transition: sent, received, started, retry, and the terminal
success / failure / revoked. ``records.py`` owns where records live (keys, clients,
indexes); this module owns what is in them. Numbers read back are range-checked: a field
that is not a finite, non-negative, plausible number reads as missing.
"""

from __future__ import annotations

import enum
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypedDict

from celery import states

__all__ = ["SENT", "Rank", "WRITE_SCRIPT", "FAILED_STATES", "TaskRecord", "RecordFields", "record_fields", "stored_text", "apply_write", "moves_up"]

#: Our name for "a producer sent it"; Celery has no such state.
SENT = "SENT"


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


# KEYS: record, meta, active index, finished index, failed index, queued index
# ARGV: ttl, state ('' for none), rank, now (epoch seconds), task id, measure ('1': read the
#       stored result's size and TTL), the fields as one JSON object of strings (one argument
#       is much cheaper for redis-py to pack than a pair per field), the live fields (JSON).
# A write that does not move the state up (a late or duplicate signal) only fills fields that
# are still missing, so a terminal record is never downgraded. Live fields (the last
# progress) overwrite while the record is not terminal. One script = one atomic step.
# The writer trims the indexes itself, once every five seconds. The common terminal write does not come
# here: the process that ran the task writes it directly, with its result (running.py,
# ``RecordEnd``) or as plain commands (writer.py, ``_direct_commands``).
WRITE_SCRIPT = string.Template("""
local cur = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
local rank = tonumber(ARGV[3])
local upgrade = ARGV[2] ~= '' and cur < $TERMINAL and rank >= cur
local now = tonumber(ARGV[4])
local given = cjson.decode(ARGV[7])
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
    if ARGV[2] == '$FAILURE' or ARGV[2] == '$REVOKED' or ARGV[2] == '$REJECTED' then redis.call('ZADD', KEYS[5], now, ARGV[5]) end
  elseif rank == $RUNNING then
    redis.call('ZADD', KEYS[3], now, ARGV[5])
  elseif rank == $SENT then
    redis.call('ZADD', KEYS[6], now, ARGV[5])  -- a producer's send; readers drop it once it moves on
  end
else
  for k, v in pairs(given) do
    redis.call('HSETNX', KEYS[1], k, v)
  end
end
if cur < $TERMINAL then
  for k, v in pairs(cjson.decode(ARGV[8])) do
    redis.call('HSET', KEYS[1], k, v)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return upgrade and 1 or 0
""").substitute(
    TERMINAL=int(Rank.TERMINAL), RUNNING=int(Rank.RUNNING), SENT=int(Rank.SENT), FAILURE=states.FAILURE, REVOKED=states.REVOKED,
    REJECTED=states.REJECTED,
)

#: Terminal states the "failed" index keeps (the phases FAILED and REVOKED).
FAILED_STATES = frozenset({states.FAILURE, states.REVOKED, states.REJECTED})


class RecordFields(TypedDict, total=False):
    """The fields a record write may carry, by their stored names: the one list receivers
    write against (mypy checks every key) and ``TaskRecord.from_fields`` reads. Values are
    stored as text; ``state`` and ``rank`` are the write script's own."""

    queued_at: float
    name: str | None
    queue: str | None
    received_at: float
    started_at: float
    completed_at: float
    worker: str | None
    retries: int | None
    incarnation: str | None
    runtime_s: float | None
    ignore_result: bool | None
    placeholders: str | None
    result_expires_s: int | None
    result_bytes: int
    result_expires_ts: str  # epoch seconds, or "never"
    error_type: str
    error_module: str
    error_message: str
    error_traceback: str | None
    progress: str  # the last report_progress() (JSON); written as a live field
    fetched_at: float  # the last read of the result through the CLI or the API (fetched.py)


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
    fetched_at: datetime | None = None  # last read through the CLI or the API (readers write it)

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
            fetched_at=_time(data.get("fetched_at")),
        )


def record_fields(raw: Mapping[Any, Any] | list[Any] | None) -> dict[str, str]:
    """A record's fields as text, from HGETALL output (a dict, or a Lua script's flat list).
    Bytes that are not UTF-8 are replaced, never raised on."""
    if not raw:
        return {}
    pairs = zip(raw[0::2], raw[1::2]) if isinstance(raw, list) else raw.items()
    return {text_of(k): text_of(v) for k, v in pairs}


def stored_text(fields: RecordFields) -> dict[str, str]:
    """Fields as a write stores them: text, and none that is unknown (None)."""
    return {k: v if type(v) is str else _field_text(v) for k, v in fields.items() if v is not None}


def _field_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def text_of(value: Any) -> str:
    """A Redis reply as text; bytes that are not UTF-8 are replaced, never raised on."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def apply_write(
    fields: dict[str, str], state: str | None, new: dict[str, str], live: dict[str, str] | None = None
) -> dict[str, str]:
    """A record's fields after one write, by the write script's rule: a write that moves the
    state up (and not out of a terminal state) sets its fields, any other only fills the
    missing ones; ``live`` fields overwrite while the record is not terminal. (The writer
    folds batches with it; readers overlay pending writes with it.)"""
    current = fields.get("state")
    if state and moves_up(current, state):
        result = {**fields, **new, "state": state}
    else:
        result = {**new, **fields}
    if live and (not current or Rank.of(current) < Rank.TERMINAL):
        result.update(live)
    return result


def moves_up(current: str | None, new: str | None) -> bool:
    """Whether a write of state ``new`` sets the state of a record in state ``current``: it
    moves up (or stays level: a retried task runs again) and never out of a terminal state."""
    if not new:
        return False
    return not current or (Rank.of(current) < Rank.TERMINAL and Rank.of(new) >= Rank.of(current))


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
