"""The read script: what ``describe`` reads of a task on a Redis backend, in one script call.

For each task it returns, atomically: the stored result's size (STRLEN, O(1)), its TTL, the
payload only if it is under the reader's limit (otherwise just its first bytes, to read the
state), our record packed into one string, and for a running task how long the worker
running it has been silent (its liveness key). One call reads a batch of tasks
(``READ_BATCH_TASKS``, fewer where whole results may come back), all batches in one round
trip. ``lookup.py`` turns the replies into observations.
"""

from __future__ import annotations

import hashlib
import string
from typing import Any

from celery_ext.records import RecordStore
from celery_ext.task_record import Rank

__all__ = ["READ_SCRIPT", "READ_BATCH_TASKS", "READ_BATCH_BYTES", "read_tasks", "unpack_record"]

#: The read script reads a batch of tasks: KEYS are each task's meta key and record key, in
#: turn. For each task it returns seven values: the stored result's size and TTL, its payload
#: or its first bytes, the record, how long its worker has been silent, and the error Redis
#: gave on that task's keys (``WRONGTYPE``), which leaves the batch's other tasks read.
READ_SCRIPT = string.Template("""
local max_bytes = tonumber(ARGV[1])
local beats = {}  -- worker incarnation -> its last beat (false: none): one GET per worker
local now = false
local function read(meta_key, record_key)
  local size = redis.call('STRLEN', meta_key)
  local pttl = redis.call('PTTL', meta_key)
  local payload = false
  local head = false
  if size > 0 then
    if size <= max_bytes then
      payload = redis.call('GET', meta_key)
    else
      head = redis.call('GETRANGE', meta_key, 0, 255)
    end
  end
  local record = redis.call('HGETALL', record_key)
  -- A started task's record names the worker incarnation running it: how long since that
  -- worker's last liveness beat, on this server's clock ('inf': no beat at all)?
  local silent = false
  if ARGV[2] ~= '' then
    local rank, incarnation
    for i = 1, #record, 2 do
      if record[i] == 'rank' then rank = record[i + 1] end
      if record[i] == 'incarnation' then incarnation = record[i + 1] end
    end
    if rank == '$RUNNING' and incarnation then
      local beat = beats[incarnation]
      if beat == nil then
        beat = redis.call('GET', ARGV[2] .. incarnation)
        beats[incarnation] = beat
      end
      if beat then
        if not now then
          local t = redis.call('TIME')
          now = tonumber(t[1]) + tonumber(t[2]) / 1000000
        end
        silent = tostring(now - tonumber(beat))
      else
        silent = 'inf'
      end
    end
  end
  -- The record as one string of "<length>:<bytes>" items: one reply element instead of one
  -- per field and value, which is most of what parsing the reply costs on the client.
  local packed = {}
  for i = 1, #record do
    packed[i] = #record[i] .. ':' .. record[i]
  end
  return {size, pttl, payload, head, table.concat(packed), silent}
end
local out = {}
for k = 1, #KEYS, 2 do
  local ok, found = pcall(read, KEYS[k], KEYS[k + 1])
  local n = #out
  if ok then
    for i = 1, 6 do out[n + i] = found[i] end
    out[n + 7] = false
  else
    for i = 1, 6 do out[n + i] = false end
    out[n + 7] = type(found) == 'table' and found.err or tostring(found)
  end
end
return out
""").substitute(RUNNING=int(Rank.RUNNING))

READ_SCRIPT_SHA = hashlib.sha1(READ_SCRIPT.encode()).hexdigest()

#: Tasks read by one call of the read script. Redis serves no other client while a script
#: runs: at 10 to 35 us per task, 50 hold it for under 2 ms. One call for many tasks saves
#: Redis a call and each worker's beat lookup per task, and the client a command per task to
#: pack and a reply to parse (``benchmarks/reader_scale.py``, "metadata only").
READ_BATCH_TASKS = 50
#: The payloads one call may return at most: a script builds its whole reply in Redis's
#: memory before sending it. So a batch holds one task where results of up to 10 MiB may be
#: loaded (the default), and 50 for readers of metadata (``METADATA_ONLY_BYTES``).
READ_BATCH_BYTES = 4 * 1024 * 1024
_VALUES_PER_TASK = 7


def read_tasks(store: RecordStore, ids: list[str], max_bytes: int) -> list[Any]:
    """One reply per id: the script's six values, or the exception Redis raised for that id
    (``WRONGTYPE`` for a key of the wrong type). Loads the script where Redis lost it."""
    from redis.exceptions import NoScriptError

    client = store.client()
    replies = _run(client, store, ids, max_bytes)
    if any(isinstance(reply, NoScriptError) for reply in replies):
        client.script_load(READ_SCRIPT)  # Redis restarted, or SCRIPT FLUSH: load it again
        replies = _run(client, store, ids, max_bytes)
    return replies


def _batch_size(max_bytes: int) -> int:
    return max(1, min(READ_BATCH_TASKS, READ_BATCH_BYTES // max(max_bytes, 1)))


def _run(client: Any, store: RecordStore, ids: list[str], max_bytes: int) -> list[Any]:
    """The read script over ``ids`` in batches, all in one round trip; one reply per id. (redis-py's
    Script objects would add a SCRIPT EXISTS round trip to every pipeline.) A reply is an
    exception where Redis refused that id's read: ``WRONGTYPE`` for a key of the wrong type,
    or what it said to the whole batch (``NoScriptError``)."""
    from redis.exceptions import ResponseError

    size = _batch_size(max_bytes)
    batches = [ids[start:start + size] for start in range(0, len(ids), size)]
    args = (max_bytes, store.worker_key_prefix)

    def keys(batch: list[str]) -> list[bytes]:
        return [key for task_id in batch for key in (store.meta_key(task_id), store.record_key(task_id))]

    if len(batches) == 1:
        batch_keys = keys(batches[0])
        try:
            replies = [client.evalsha(READ_SCRIPT_SHA, len(batch_keys), *batch_keys, *args)]
        except ResponseError as exc:
            replies = [exc]
    else:
        with client.pipeline(transaction=False) as pipe:
            for batch in batches:
                batch_keys = keys(batch)
                pipe.evalsha(READ_SCRIPT_SHA, len(batch_keys), *batch_keys, *args)
            replies = pipe.execute(raise_on_error=False)
    return [each for batch, reply in zip(batches, replies) for each in _per_task(reply, len(batch))]


def _per_task(reply: Any, tasks: int) -> list[Any]:
    """One call's reply as one reply per task: its six values, or an exception."""
    from redis.exceptions import ResponseError

    if isinstance(reply, Exception):
        return [reply] * tasks
    replies: list[Any] = []
    for start in range(0, tasks * _VALUES_PER_TASK, _VALUES_PER_TASK):
        error = reply[start + 6]
        if error is None:
            replies.append(reply[start:start + 6])
        else:  # what a reader is told: Redis's words, without where in our script it failed
            replies.append(ResponseError(error.decode(errors="replace").split(" script: ", 1)[0]))
    return replies


def unpack_record(packed: bytes) -> list[bytes]:
    """The read script's record (``<length>:<bytes>`` items) as HGETALL's flat list. Raises
    ValueError for anything else, which makes that one task ``not_readable``."""
    items = []
    pos, end = 0, len(packed)
    while pos < end:
        colon = packed.index(b":", pos)
        start = colon + 1
        stop = start + int(packed[pos:colon])
        if stop > end:
            raise ValueError("the read script's record is cut short")
        items.append(packed[start:stop])
        pos = stop
    return items
