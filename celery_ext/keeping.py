"""Keep a result longer: ``keep(app, task_id, seconds)``, and the ``--for`` durations it takes.

Celery gives every stored result the same life (``result_expires``). Now and then one result
matters longer: ``keep`` extends the TTL of Celery's result key and of our record in one Lua
script (atomic), so the record still outlives the result by a day, and writes the new
expiry into the record so every reader (``status``, the board, the task page) tells it.

A keep never shortens a TTL: asking for 1 h on a result that has 2 days left leaves it at
2 days (``already``). What can be kept is decided here, once, from the task's ``Outcome``
(``refusal``); the CLI and Flower only map the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from celery_ext.errors import FileIntelError
from celery_ext.settings import DAY
from celery_ext.status import Outcome

if TYPE_CHECKING:
    from celery import Celery

    from celery_ext.status import TaskStatus

__all__ = [
    "MAX_KEEP_S",
    "InvalidDuration",
    "KeepRefused",
    "Kept",
    "keep",
    "parse_duration",
    "refusal",
    "duration_words",
]

#: The longest a result can be kept from now. Redis keeps results in memory and is no
#: archive: a result needed for longer than a month should be downloaded and stored elsewhere.
MAX_KEEP_S = 30 * DAY

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY}
_DURATION = re.compile(r"(\d{1,9})([smhd])")


class InvalidDuration(FileIntelError, ValueError):
    """A ``--for`` that is not a duration such as ``90s``, ``30m``, ``12h`` or ``7d``, or is
    longer than ``MAX_KEEP_S``."""


def parse_duration(text: str) -> int:
    """``90s``, ``30m``, ``12h``, ``7d`` as seconds; ``InvalidDuration`` saying why otherwise."""
    cleaned = text.strip().lower()
    match = _DURATION.fullmatch(cleaned)
    if match is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidDuration(
            f"{shown!r} is not a duration: give a whole number and a unit, "
            "s (seconds), m (minutes), h (hours) or d (days), e.g. 90s, 30m, 12h or 7d"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise InvalidDuration(f"{text!r} is no time at all: keep a result for 1s or more")
    if seconds > MAX_KEEP_S:
        raise InvalidDuration(
            f"{text!r} is longer than {duration_words(MAX_KEEP_S)}, the longest a result can be "
            "kept: Redis holds results in memory and is no archive. Download the result "
            "(`celery fileintel result ID --output FILE`) to keep it for longer"
        )
    return seconds


def duration_words(seconds: int) -> str:
    """``7 days``, ``12 hours``, ``30 minutes``, ``90 seconds``: the largest whole unit."""
    for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class KeepRefused(FileIntelError):
    """The task's result cannot be kept (unknown task, not finished, or no result stored any
    more). ``status`` is the task as read; ``reason`` the ``Outcome`` that refused it (the
    edges map it), or None when this setup cannot keep results at all."""

    def __init__(self, status: TaskStatus, message: str, reason: Outcome | None) -> None:
        self.status = status
        self.reason = reason
        super().__init__(message)


def refusal(status: TaskStatus) -> str | None:
    """Why this task's result cannot be kept, or None when it can (it is stored; the script
    then checks it is still there). Pure: decided from the status alone."""
    tid = status.task_id
    outcome = status.outcome
    if outcome is Outcome.UNKNOWN:
        return f"task {tid} is unknown: no record and no stored result, so there is nothing to keep"
    if not status.phase.settled:
        return (
            f"task {tid} is {status.phase.value}: nothing is stored to keep until it finishes; "
            "keep it once it has finished"
        )
    if outcome in (Outcome.EXPIRED, Outcome.EVICTED):
        return f"task {tid}'s result is already gone ({outcome.value}): it cannot be kept any more"
    if outcome is Outcome.NO_RESULT:
        return f"task {tid} has no stored result (ignore_result, or a backend that keeps none): nothing to keep"
    return None


@dataclass(frozen=True)
class Kept:
    """A keep that went through.

    ``verdict``: ``kept`` (the TTLs were extended), ``already`` (the result already lived at
    least that long: nothing was shortened) or ``never`` (the result never expires).
    ``expires_at``: when the result expires now (None for ``never``).
    """

    task_id: str
    verdict: Literal["kept", "already", "never"]
    expires_at: datetime | None
    requested_s: int

    def to_dict(self) -> dict[str, object]:
        """What ``keep --json`` prints and the keep API answers (the same code for both)."""
        return {
            "task_id": self.task_id,
            "kept": True,
            "verdict": self.verdict,
            "result_expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "requested_s": self.requested_s,
            "message": self.sentence(),
        }

    def sentence(self) -> str:
        """What happened, in one sentence every edge prints."""
        if self.verdict == "never" or self.expires_at is None:
            return f"task {self.task_id}'s result never expires: there is nothing to extend"
        until = self.expires_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        if self.verdict == "already":
            return (
                f"task {self.task_id}'s result is already kept until {until}, longer than "
                f"{duration_words(self.requested_s)} from now; nothing was shortened"
            )
        return f"task {self.task_id}'s result is kept until {until}"


# KEYS: Celery's result key, our record.  ARGV: the TTL wanted (ms), the record's margin (ms).
# Returns {verdict, the result's TTL now (ms), the server's time (ms)}. The server's clock is
# the one that expires the keys, so the new expiry is computed on it. A record that does not
# exist is not created (a task from an app without install() has none).
KEEP_SCRIPT = """
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {'gone', 0, 0} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if pttl == -1 then return {'never', 0, now_ms} end
local want = tonumber(ARGV[1])
local verdict = 'already'
if pttl < want then
  redis.call('PEXPIRE', KEYS[1], want)
  verdict = 'kept'
else
  want = pttl
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local need = want + tonumber(ARGV[2])
  local rttl = redis.call('PTTL', KEYS[2])
  if rttl >= 0 and rttl < need then redis.call('PEXPIRE', KEYS[2], need) end
  redis.call('HSET', KEYS[2], 'result_expires_ts', string.format('%.3f', (now_ms + want) / 1000))
end
return {verdict, want, now_ms}
"""


def keep(app: Celery, task_id: str, seconds: int) -> Kept:
    """Keep ``task_id``'s stored result (and its record) for ``seconds`` from now.

    A short id from the board resolves as ``status`` resolves it. Raises ``InvalidTaskId``
    or ``AmbiguousTaskId`` (ValueErrors), ``InvalidDuration`` for ``seconds`` out of range,
    ``KeepRefused`` when there is no result to keep, ``BackendUnavailable`` when Redis does
    not answer.
    """
    from celery_ext.prefix import describe_id_or_prefix
    from celery_ext.records import backend_errors, store_for, unavailable
    from celery_ext.task_record import text_of

    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= MAX_KEEP_S:
        raise InvalidDuration(f"keep a result for 1 to {MAX_KEEP_S} seconds, not {seconds!r}")
    status = describe_id_or_prefix(app, task_id)
    why = refusal(status)
    if why is not None:
        raise KeepRefused(status, why, status.outcome)
    store = store_for(app)
    if not store.result_backend_is_redis or store.settings.redis_url:
        raise KeepRefused(
            status,
            "keeping a result needs a Redis result backend that also holds the task records "
            "(no fileintel_redis_url): here the result and its record live apart",
            None,
        )
    full_id = status.task_id
    try:
        client = store.client()
        verdict, ttl_ms, now_ms = client.eval(
            KEEP_SCRIPT, 2, store.meta_key(full_id), store.record_key(full_id), seconds * 1000, DAY * 1000
        )
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc
    word = text_of(verdict)
    if word == "gone":  # expired (or deleted) since it was read
        raise KeepRefused(status, f"task {full_id}'s result has just expired: it cannot be kept any more", Outcome.EXPIRED)
    if word == "never":
        return Kept(full_id, "never", None, seconds)
    expires = datetime.fromtimestamp(int(now_ms) / 1000, timezone.utc) + timedelta(milliseconds=int(ttl_ms))
    return Kept(full_id, "kept" if word == "kept" else "already", expires, seconds)
