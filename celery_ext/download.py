"""``stream_result``: the full stored result as JSON, written in chunks with bounded memory.

Results under ``fileintel_max_result_bytes`` are loaded, validated and written whole.
Larger ones are never loaded: Celery's JSON serializer writes the meta as
``{"status": ..., "result": <value>, "traceback": ..., ...}``, so the result is the byte
range between ``"result": `` and the top-level ``, "traceback": `` that follows it. We find
that range from the payload's head and tail (GETRANGE) and copy it with GETRANGE in chunks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from celery import Celery

from celery_ext.errors import FileIntelError
from celery_ext.lookup import describe
from celery_ext.records import backend_errors, store_for, unavailable
from celery_ext.status import Outcome, TaskStatus
from celery_ext.verdict import sentence

__all__ = ["ResultUnavailable", "stream_result", "stream_raw", "CHUNK_SIZE"]

CHUNK_SIZE = 1024 * 1024
_TAIL = 64 * 1024
_RESULT_KEY = b'"result": '
_TRACEBACK_KEY = b', "traceback": '


class ResultUnavailable(FileIntelError):
    """There is no stored successful result to stream; ``status`` says why."""

    def __init__(self, status: TaskStatus, message: str) -> None:
        self.status = status
        super().__init__(message)


def stream_result(
    app: Celery, task_id: str, write: Callable[[bytes], object], chunk_size: int = CHUNK_SIZE
) -> int:
    """Write the task's result as JSON to ``write`` in chunks; return the bytes written."""
    status = describe(app, task_id)
    if status.outcome not in (Outcome.OK, Outcome.TOO_LARGE):
        raise ResultUnavailable(status, sentence(status))
    if status.result_info.inline:
        data = json.dumps(status.result, allow_nan=False, ensure_ascii=False).encode()
        for start in range(0, len(data), chunk_size):
            write(data[start : start + chunk_size])
        return len(data)
    store = store_for(app)
    try:
        return _stream_large(app, task_id, write, chunk_size, status)
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc


def _stream_large(
    app: Celery, task_id: str, write: Callable[[bytes], object], chunk_size: int, status: TaskStatus
) -> int:
    store = store_for(app)
    client: Any = store.client()  # bytes replies: Celery's client does not decode
    key = store.meta_key(task_id)
    size = int(client.strlen(key))
    head = bytes(client.getrange(key, 0, 255))
    tail_start = max(0, size - _TAIL)
    tail = bytes(client.getrange(key, tail_start, size - 1))
    start = head.find(_RESULT_KEY)
    end = _top_level_traceback(tail)
    if not head.startswith(b"{") or start < 0 or end is None:
        raise ResultUnavailable(
            status,
            f"the result of task {task_id} is {size} bytes and is not stored as plain JSON "
            "(another result_serializer, or result_compression): it cannot be streamed; "
            "raise fileintel_max_result_bytes to load it whole",
        )
    first, last = start + len(_RESULT_KEY), tail_start + end  # [first, last)
    return _copy_range(client, key, first, last, write, chunk_size, status)


def stream_raw(
    app: Celery, task_id: str, write: Callable[[bytes], object], chunk_size: int = CHUNK_SIZE
) -> int:
    """Write what Celery stored for the task, byte for byte, whatever its serializer: the way
    to get a result this reader does not decode (pickle). Nothing is decoded here."""
    status = describe(app, task_id)
    store = store_for(app)
    if not status.result_available:
        raise ResultUnavailable(status, sentence(status))
    if not store.result_backend_is_redis:
        raise ResultUnavailable(status, f"task {task_id}: raw downloads need a Redis result backend")
    try:
        client: Any = store.client()
        key = store.meta_key(task_id)
        return _copy_range(client, key, 0, int(client.strlen(key)), write, chunk_size, status)
    except backend_errors() as exc:
        raise unavailable(store, exc) from exc


def _copy_range(
    client: Any, key: bytes, first: int, last: int, write: Callable[[bytes], object], chunk_size: int, status: TaskStatus
) -> int:
    """Copy bytes [first, last) of ``key`` to ``write`` with GETRANGE, a chunk at a time."""
    written = 0
    position = first
    while position < last:
        stop = min(position + chunk_size, last)
        chunk = bytes(client.getrange(key, position, stop - 1))
        if not chunk:
            raise ResultUnavailable(status, f"the result of task {status.task_id} disappeared while it was being read")
        write(chunk)
        written += len(chunk)
        position += len(chunk)
    return written


def _top_level_traceback(tail: bytes) -> int | None:
    """Offset in ``tail`` of the ``, "traceback": `` that closes the top-level result.

    The same bytes could appear inside the result (a nested dict key) or in later fields
    (kwargs); the top-level one is the one after which the rest of the payload parses as a
    JSON object on its own.
    """
    position = len(tail)
    while True:
        position = tail.rfind(_TRACEBACK_KEY, 0, position)
        if position < 0:
            return None
        try:
            rest = json.loads(b"{" + tail[position + 2 :])
        except ValueError:
            continue
        if isinstance(rest, dict) and "traceback" in rest and "status" not in rest:
            return position
