"""Celery's write of a successful result and the task's record end, in one Lua script.

Celery stores a result after reading the one stored before (a ``GET``: a task that already
succeeded, run again after a lost acknowledgement, keeps its first result), then as a
transaction of four commands (``MULTI``, ``SETEX``, ``PUBLISH``, ``EXEC``). Adding the
record's end to that transaction cost two more commands, and with redis-py each command in a
transaction costs the task's thread about 25 microseconds (packing, its ``QUEUED`` reply, its
part of ``EXEC``'s): in a threads pool, that was most of what the bootstep cost
(``benchmarks/bootstep_overhead.py``). This script does the same writes in one command: the
result (``SET`` with Celery's TTL, then ``PUBLISH`` to its key, as Celery does) and the record's end
(``HSET``, ``EXPIRE``, the "finished" index, out of "active"), atomically, as the transaction
did: whoever hears the ``PUBLISH`` finds the record's end (``benchmarks/bootstep_breakdown.py``).

The script also makes Celery's check of the stored result, where it can read it (JSON,
uncompressed: ``measure.py`` decides): a stored success is kept and nothing is written (it
returns 2), as Celery would; the read is no round trip of its own then. The result's commands
run next and fail the script as they would fail Celery's transaction (nothing is written
before them); the record's run under ``pcall`` and never do: the script returns 1 if they all
went through, 0 if only the result was written.

Where the script cannot run (Redis refuses scripts to this user, or an error of its own), the
caller falls back to Celery's own write, and the record is written the usual way; the script
is not tried again for ``REFUSED_RETRY_S``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from celery_ext.measure import RideOutcome

__all__ = ["END_SCRIPT", "END_SCRIPT_SHA", "MAX_RESULT_BYTES", "REFUSED_RETRY_S", "run_end_script"]

logger = logging.getLogger(__name__)

# KEYS: result key, record key, "finished" index, "active" index.
# ARGV: result value, its TTL in seconds ("0": none), the record's end fields (a JSON object of
# strings), the record's TTL, the task id, the end's time (its "finished" score), "1" to take
# the id out of "active" (its "started" write may have been made), "1" to keep a stored success.
END_SCRIPT = """
if ARGV[8] == '1' then
  local stored = redis.call('GET', KEYS[1])
  if stored then
    local ok, meta = pcall(cjson.decode, stored)
    if ok and type(meta) == 'table' and meta.status == 'SUCCESS' then
      return 2
    end
  end
end
local fields = cjson.decode(ARGV[3])
if ARGV[2] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
local flat = {}
for k, v in pairs(fields) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
local replies = {redis.pcall('HSET', KEYS[2], unpack(flat))}
if type(replies[1]) == 'table' and replies[1].err then
  return 0
end
replies[2] = redis.pcall('EXPIRE', KEYS[2], ARGV[4])
replies[3] = redis.pcall('ZADD', KEYS[3], ARGV[6], ARGV[5])
if ARGV[7] == '1' then
  replies[4] = redis.pcall('ZREM', KEYS[4], ARGV[5])
end
for _, reply in pairs(replies) do
  if type(reply) == 'table' and reply.err then
    return 0
  end
end
return 1
"""
END_SCRIPT_SHA = hashlib.sha1(END_SCRIPT.encode()).hexdigest()

#: A bigger result is stored by Celery's own write: a script's arguments are copied into its
#: Lua strings, which Redis frees only at its next Lua garbage collection.
MAX_RESULT_BYTES = 64 * 1024
#: After Redis refused the script (no permission, scripts disabled), results go Celery's own
#: way for this long, in every thread of the process, before the script is tried again.
REFUSED_RETRY_S = 60.0

_refused_until = 0.0


def run_end_script(client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]) -> RideOutcome | None:
    """Run the script: what it wrote (``RideOutcome``); None if it could not run (nothing was
    written: write the result Celery's own way). Raises what Celery's write would (a lost
    connection: Celery retries)."""
    global _refused_until
    if time.monotonic() < _refused_until:
        return None
    try:
        try:
            return RideOutcome(int(client.evalsha(END_SCRIPT_SHA, len(keys), *keys, *args)))
        except NoScriptError:  # first use on this server, or it restarted: load it, once
            client.script_load(END_SCRIPT)
            return RideOutcome(int(client.evalsha(END_SCRIPT_SHA, len(keys), *keys, *args)))
    except ResponseError as exc:
        # Refused (NOPERM, scripts disabled) or failed before writing anything (the result's
        # SET runs first): Celery's own write says whether the error was the script's.
        _refused_until = time.monotonic() + REFUSED_RETRY_S
        logger.warning(
            "fileintel: could not store a result with its record end in one script (%s); "
            "Celery stores results its own way for %.0f s and records are written after them", exc, REFUSED_RETRY_S,
        )
        return None
