"""Downloads of a stored result (as JSON, or raw bytes), streamed with bounded memory, for
the API and the pages."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError

from celery_ext.errors import BackendUnavailable, InvalidTaskId
from celery_ext.status import Outcome
from flower_fileintel import metrics
from flower_fileintel.handlers.base import ApiError, ApiHandler, JsonHandler
from flower_fileintel.state import PluginState

logger = logging.getLogger(__name__)

_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")



class DownloadApiHandler(ApiHandler):
    """``GET /api/fileintel/task/<id>/result/download``: the full result as a JSON file,
    streamed with bounded memory whatever its size."""

    route = "api_download"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await stream_download(self, self.valid_id(task_id))


class RawDownloadApiHandler(ApiHandler):
    """``GET /api/fileintel/task/<id>/result/raw``: what Celery stored, byte for byte, as
    ``application/octet-stream`` (for results this viewer does not decode, e.g. pickle)."""

    route = "api_raw"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await stream_download(self, self.valid_id(task_id), raw=True)


class PageDownloadHandler(JsonHandler):
    """``/fileintel/task/<id>/download``: the page's download link (page auth)."""

    route = "page_download"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await stream_download(self, self.valid_id(task_id))


class PageRawDownloadHandler(JsonHandler):
    """``/fileintel/task/<id>/raw``: the page's raw download link (page auth)."""

    route = "page_raw"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await stream_download(self, self.valid_id(task_id), raw=True)


async def stream_download(handler: Any, task_id: str, *, raw: bool = False) -> None:
    """Run ``stream_result`` (or ``stream_raw``) in the download pool; each chunk is written
    and flushed on the IOLoop before the next is read, so at most one chunk per transfer is
    in memory."""
    from celery_ext.download import ResultUnavailable, stream_raw, stream_result

    stream = stream_raw if raw else stream_result
    content_type, suffix = ("application/octet-stream", "bin") if raw else ("application/json; charset=UTF-8", "json")

    plugin: PluginState = handler.plugin
    loop = asyncio.get_running_loop()
    started = False
    sent = 0

    async def write_chunk(chunk: bytes) -> None:
        nonlocal started, sent
        if not started:
            started = True
            safe = _FILENAME_UNSAFE.sub("_", task_id)[:100] or "result"
            handler.set_header("Content-Type", content_type)
            handler.set_header("Content-Disposition", f'attachment; filename="{safe}.{suffix}"')
            handler.set_header("Cache-Control", "no-store")
        handler.write(chunk)
        await handler.flush()
        sent += len(chunk)

    def write_from_thread(chunk: bytes) -> None:
        future = asyncio.run_coroutine_threadsafe(write_chunk(chunk), loop)
        while True:
            try:
                future.result(timeout=1.0)
                return
            except concurrent.futures.TimeoutError:
                if not loop.is_running():  # Flower is shutting down: do not hang its exit
                    future.cancel()
                    raise StreamClosedError() from None

    try:
        total = await loop.run_in_executor(
            plugin.download_executor, stream, plugin.capp, task_id, write_from_thread
        )
    except ResultUnavailable as exc:
        status = exc.status
        metrics.OUTCOMES.labels(handler.route, status.outcome.value).inc()
        if status.outcome is Outcome.NOT_READY:
            raise ApiError(
                409, "not_ready",
                f"task {task_id} is {status.phase.value}: its result is not ready yet",
                task=status.to_dict(),
            ) from exc
        error = handler.status_error(status)
        raise error or ApiError(404, "no_result", str(exc), task=status.to_dict()) from exc
    except InvalidTaskId as exc:
        raise ApiError(400, "invalid_task_id", f"malformed task id: {exc}") from exc
    except BackendUnavailable as exc:
        metrics.REDIS_ERRORS.labels("download").inc()
        if started:
            abort_transfer(handler, task_id, exc)
            return
        raise ApiError(503, "backend_unavailable", f"cannot read task {task_id}: {exc}") from exc
    except StreamClosedError:
        logger.info("flower-fileintel: download of task %s stopped: the client went away", task_id)
        return
    except Exception as exc:
        if started:
            abort_transfer(handler, task_id, exc)
            return
        raise
    finally:
        metrics.RESULT_BYTES.labels(handler.route).inc(sent)
    if not started:  # an empty result cannot be, but never answer with nothing
        handler.set_header("Content-Type", "application/json; charset=UTF-8")
    metrics.OUTCOMES.labels(handler.route, "ok").inc()
    logger.debug("flower-fileintel: sent %d bytes of task %s's result", total, task_id)
    handler.finish()
    plugin.mark_fetched(task_id)


def abort_transfer(handler: Any, task_id: str, exc: BaseException) -> None:
    """Headers are gone: cut the connection so the client sees a broken transfer, never a
    short file that looks complete."""
    logger.warning("flower-fileintel: download of task %s failed mid-transfer: %s", task_id, exc)
    if handler.request.connection is not None and handler.request.connection.stream is not None:
        handler.request.connection.stream.close()
