"""The plugin's Tornado handlers: pages, their live streams, and the JSON API.

Every page subclasses Flower's ``BaseHandler`` and every API handler ``BaseApiHandler``,
and every method carries ``@tornado.web.authenticated``: Flower's own authentication
(basic auth -> 401, OAuth -> redirect to the login page) applies unchanged. Pages use
page-namespace JSON/SSE endpoints (like Flower's ``/tasks/datatable``), so they work on an
instance without ``FLOWER_UNAUTHENTICATED_API`` too.

Handlers stay thin: ``celery_ext.describe`` does the reading (in the plugin's own thread
pool, never on the IOLoop), ``celery_ext.stream_result`` the downloading; handlers turn
``TaskStatus`` into HTTP statuses and pages.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import os
import re
import time
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

import tornado.web
from flower.api import BaseApiHandler
from flower.views import BaseHandler
from tornado import web
from tornado.iostream import StreamClosedError

from celery_ext.errors import BackendUnavailable, InvalidTaskId
from celery_ext.ids import validate_task_id
from celery_ext.status import Outcome, TaskStatus
from celery_ext.verdict import sentence

from flower_fileintel import metrics
from flower_fileintel.state import STATIC_DIR, PluginState, get_state

__all__ = [
    "BoardPageHandler",
    "BoardPollHandler",
    "BoardEventsHandler",
    "TaskPageHandler",
    "TaskPollHandler",
    "TaskEventsHandler",
    "PageDownloadHandler",
    "StaticHandler",
    "StatusApiHandler",
    "ResultApiHandler",
    "DownloadApiHandler",
    "MAX_WAIT_S",
]

logger = logging.getLogger(__name__)

#: ``?wait=`` is capped at this many seconds.
MAX_WAIT_S = 30.0
#: Results larger than this are not pretty-printed into the detail page (download them).
PAGE_RESULT_MAX_BYTES = 1024 * 1024
#: SSE keep-alive comment interval.
KEEPALIVE_S = 15.0
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ApiError(tornado.web.HTTPError):
    """An HTTP error whose JSON body carries ``code``, ``message`` and extra fields."""

    def __init__(self, status_code: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(status_code, reason=None)
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"status": self.status_code, "code": self.code, "message": self.message, **self.extra}


# --------------------------------------------------------------------------------------------
# shared helpers


class _PluginMixin:
    """Lookups, id validation and error mapping shared by pages and the API."""

    route = "unknown"  # metrics label (fixed per handler class)
    application: Any
    request: Any

    @property
    def plugin(self) -> PluginState:
        return get_state(self.application)

    def url_prefix_path(self, path: str) -> str:
        prefix = (getattr(self.application.options, "url_prefix", None) or "").strip("/")
        return f"/{prefix}{path}" if prefix else path

    def valid_id(self, task_id: str) -> str:
        try:
            return validate_task_id(task_id)
        except InvalidTaskId as exc:
            raise ApiError(400, "invalid_task_id", f"malformed task id: {exc}") from exc

    async def lookup(self, task_id: str) -> TaskStatus:
        """``describe`` off the IOLoop, with metrics; 400 / 503 as ApiError."""
        started = time.perf_counter()
        try:
            status: TaskStatus = await self.plugin.describe(task_id)
        except InvalidTaskId as exc:
            raise ApiError(400, "invalid_task_id", f"malformed task id: {exc}") from exc
        except BackendUnavailable as exc:
            metrics.REDIS_ERRORS.labels("lookup").inc()
            raise ApiError(
                503, "backend_unavailable",
                f"cannot read task {task_id}: {exc}",
            ) from exc
        finally:
            metrics.LOOKUP_SECONDS.labels(self.route).observe(time.perf_counter() - started)
        metrics.LOOKUPS.labels(self.route, status.phase.value).inc()
        return status

    def query_float(self, name: str, low: float, high: float | None = None) -> float | None:
        """A numeric query argument, or None. Bad values are 400 (``get_query_argument``:
        Flower's ``get_argument`` HTML-escapes values)."""
        raw = self.get_query_argument(name, None)  # type: ignore[attr-defined]
        if raw is None or raw == "":
            return None
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low:
            raise ApiError(400, "invalid_argument", f"?{name}= must be a number >= {low:g}, not {raw!r}")
        return min(value, high) if high is not None else value

    def download_url(self, task_id: str, page: bool = False, raw: bool = False) -> str:
        from urllib.parse import quote

        quoted = quote(task_id, safe="")
        if page:
            path = f"/fileintel/task/{quoted}/{'raw' if raw else 'download'}"
        else:
            path = f"/api/fileintel/task/{quoted}/result/{'raw' if raw else 'download'}"
        return self.url_prefix_path(path)


#: The result API's answer to each outcome: HTTP status and error code (docs/flower.md).
RESULT_API: Mapping[Outcome, tuple[int, str]] = {
    Outcome.OK: (200, "ok"),
    Outcome.NOT_READY: (202, "not_ready"),
    Outcome.UNKNOWN: (404, "unknown_task"),
    Outcome.FAILED: (409, "task_failed"),
    Outcome.REVOKED: (409, "task_revoked"),
    Outcome.LOST: (409, "task_lost"),
    Outcome.EXPIRED: (410, "result_expired"),
    Outcome.EVICTED: (410, "result_evicted"),
    Outcome.NO_RESULT: (404, "no_result"),
    Outcome.NOT_READABLE: (422, "result_not_readable"),
    Outcome.TOO_LARGE: (413, "result_too_large"),
}


#: The task page's banner for each outcome: Bootstrap alert style and title; None: no banner
#: (the result or the live progress is the news).
PAGE_BANNER: Mapping[Outcome, tuple[str, str] | None] = {
    Outcome.OK: None,
    Outcome.NOT_READY: None,
    Outcome.UNKNOWN: ("secondary", "Unknown task"),
    Outcome.FAILED: ("danger", "Task failed"),
    Outcome.REVOKED: ("secondary", "Task revoked"),
    Outcome.LOST: ("danger", "Task lost with its worker"),
    Outcome.EXPIRED: ("secondary", "Result expired"),
    Outcome.EVICTED: ("warning", "Result gone before its expiry"),
    Outcome.NO_RESULT: ("secondary", "No result stored"),
    Outcome.NOT_READABLE: ("warning", "Result not readable here"),
    Outcome.TOO_LARGE: None,
}


def _json_error_body(handler: Any, status_code: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    exc_info = kwargs.get("exc_info")
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, ApiError):
        return exc.body()
    if isinstance(exc, tornado.web.HTTPError):
        message = exc.log_message or handler._reason
        if exc.args and len(exc.args) > 1 and exc.log_message:
            message = exc.log_message % exc.args[1:]
        return {"status": status_code, "code": "http_error", "message": message}
    if status_code >= 500:
        return {
            "status": status_code,
            "code": "internal_error",
            "message": "the plugin failed to answer; see Flower's log for the traceback",
        }
    return {"status": status_code, "code": "http_error", "message": handler._reason}


class _JsonMixin(_PluginMixin):
    """JSON bodies for every error, including Flower's 401 (with its WWW-Authenticate)."""

    def write_json(self, status_code: int, body: Any) -> None:
        self.set_status(status_code)  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json; charset=UTF-8")  # type: ignore[attr-defined]
        self.set_header("Cache-Control", "no-store")  # type: ignore[attr-defined]
        self.finish(json.dumps(body, allow_nan=False))  # type: ignore[attr-defined]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401 and self.application.options.basic_auth:
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')  # type: ignore[attr-defined]
        self.clear_header("Content-Disposition")  # type: ignore[attr-defined]
        self.write_json(status_code, _json_error_body(self, status_code, kwargs))

    def status_error(self, status: TaskStatus) -> ApiError | None:
        """The error a result request for this task gets, or None (200, or 202 not ready)."""
        outcome = status.outcome
        http_status, code = RESULT_API[outcome]
        if http_status < 400:
            return None
        doc = status.to_dict()
        extra: dict[str, Any] = {"task": doc}
        if outcome in (Outcome.FAILED, Outcome.REVOKED, Outcome.LOST):
            extra["error"] = doc["error"]
        if outcome is Outcome.TOO_LARGE:
            extra.update(
                bytes=status.result_info.bytes,
                max_result_bytes=self.plugin.settings.max_result_bytes,
                download_url=self.download_url(status.task_id),
            )
        if outcome is Outcome.NOT_READABLE and status.result_available:
            extra.update(bytes=status.result_info.bytes, raw_url=self.download_url(status.task_id, raw=True))
        return ApiError(http_status, code, sentence(status), **extra)


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------
# JSON API


class StatusApiHandler(_JsonMixin, BaseApiHandler):
    """``GET /api/fileintel/task/<id>``: the ``fileintel.task-status/1`` document."""

    route = "api_status"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        status = await self.lookup(self.valid_id(task_id))
        metrics.OUTCOMES.labels(self.route, status.outcome.value).inc()
        self.write_json(200, status.to_dict())


class ResultApiHandler(_JsonMixin, BaseApiHandler):
    """``GET /api/fileintel/task/<id>/result[?wait=S]``: the bare validated return value.

    The status and error code come from ``RESULT_API`` (one row per outcome). ``?wait=S`` (capped at 30)
    waits by push: the request parks on the live hub, not on a thread.
    """

    route = "api_result"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        task_id = self.valid_id(task_id)
        wait = self.query_float("wait", 0.0, MAX_WAIT_S) or 0.0
        status = await self.lookup(task_id)
        if wait > 0 and not status.phase.settled:
            status = await self._wait(task_id, status, wait)
        metrics.OUTCOMES.labels(self.route, status.outcome.value).inc()
        if status.outcome is Outcome.NOT_READY:
            self.set_header("Retry-After", "1")
            self.write_json(202, status.to_dict())
            return
        error = self.status_error(status)
        if error is not None:
            raise error
        body = json.dumps(status.result, allow_nan=False).encode()
        metrics.RESULT_BYTES.labels(self.route).inc(len(body))
        self.set_header("X-FileIntel-Result-Bytes", str(status.result_info.bytes or 0))
        self.set_header("X-FileIntel-Placeholders", str(len(status.result_info.placeholders)))
        self.set_status(200)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    async def _wait(self, task_id: str, status: TaskStatus, seconds: float) -> TaskStatus:
        """Wait for a final state until a monotonic deadline. Subscribe first, then re-read,
        so nothing published in between is lost; the hub wakes us on each change."""
        deadline = time.monotonic() + seconds
        hub = self.plugin.hub
        with hub.watch_task(task_id, kind="wait") as watcher:
            status = await self.lookup(task_id)
            while not status.phase.settled:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(watcher.event.wait(), timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    if hub.connected:
                        continue
                    # No push: poll, gently, without holding a thread between polls.
                watcher.take()
                if watcher.ready or not hub.connected:
                    status = await self.lookup(task_id)
            if not status.phase.settled:
                # Timed out: answer with what is true now. Pushes only carry the backend's
                # state changes, not the records (an unknown id may be queued by now).
                status = await self.lookup(task_id)
        return status


class DownloadApiHandler(_JsonMixin, BaseApiHandler):
    """``GET /api/fileintel/task/<id>/result/download``: the full result as a JSON file,
    streamed with bounded memory whatever its size."""

    route = "api_download"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await _stream_download(self, self.valid_id(task_id))


class RawDownloadApiHandler(_JsonMixin, BaseApiHandler):
    """``GET /api/fileintel/task/<id>/result/raw``: what Celery stored, byte for byte, as
    ``application/octet-stream`` (for results this viewer does not decode, e.g. pickle)."""

    route = "api_raw"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await _stream_download(self, self.valid_id(task_id), raw=True)


async def _stream_download(handler: Any, task_id: str, *, raw: bool = False) -> None:
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
            _abort(handler, task_id, exc)
            return
        raise ApiError(503, "backend_unavailable", f"cannot read task {task_id}: {exc}") from exc
    except StreamClosedError:
        logger.info("flower-fileintel: download of task %s stopped: the client went away", task_id)
        return
    except Exception as exc:
        if started:
            _abort(handler, task_id, exc)
            return
        raise
    finally:
        metrics.RESULT_BYTES.labels(handler.route).inc(sent)
    if not started:  # an empty result cannot be, but never answer with nothing
        handler.set_header("Content-Type", "application/json; charset=UTF-8")
    metrics.OUTCOMES.labels(handler.route, "ok").inc()
    logger.debug("flower-fileintel: sent %d bytes of task %s's result", total, task_id)
    handler.finish()


def _abort(handler: Any, task_id: str, exc: BaseException) -> None:
    """Headers are gone: cut the connection so the client sees a broken transfer, never a
    short file that looks complete."""
    logger.warning("flower-fileintel: download of task %s failed mid-transfer: %s", task_id, exc)
    if handler.request.connection is not None and handler.request.connection.stream is not None:
        handler.request.connection.stream.close()


# --------------------------------------------------------------------------------------------
# pages


class _PageMixin(_PluginMixin):
    """Error pages in Flower's look (its 404.html takes a message) for 400/404/503."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, ApiError):
            if not hasattr(self, "_current_user"):
                self.current_user = None
            self.set_status(status_code)  # type: ignore[attr-defined]
            self.render("404.html", message=exc.message)  # type: ignore[attr-defined]
            return
        super().write_error(status_code, **kwargs)  # type: ignore[misc]

    def render_page(self, template_name: str, **kwargs: Any) -> None:
        self.render(  # type: ignore[attr-defined]
            template_name,
            fi_static=lambda name: self.url_prefix_path(f"/fileintel/static/{name}")
            + f"?v={_static_version(name)}",
            fi_url=self.url_prefix_path,
            fmt_time=_fmt_time,
            **kwargs,
        )


class _JsonPageMixin(_JsonMixin):
    """Page-namespace JSON (polling fallback): Flower's page auth, JSON errors."""


def _result_segments(status: TaskStatus) -> list[tuple[str, bool]]:
    """The pretty-printed result split into (text, is_placeholder) runs, for marking."""
    from celery_ext.results import placeholder_text

    text = json.dumps(status.result, indent=2, ensure_ascii=False, allow_nan=False)
    markers = {
        json.dumps(placeholder_text(p.type, p.path), ensure_ascii=False)
        for p in status.result_info.placeholders
    }
    if not markers:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
    segments: list[tuple[str, bool]] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            segments.append((text[pos:match.start()], False))
        segments.append((match.group(0), True))
        pos = match.end()
    if pos < len(text):
        segments.append((text[pos:], False))
    return segments


class TaskPageHandler(_PageMixin, BaseHandler):
    """``/fileintel/task/<id>``: everything about one task, live while it runs."""

    route = "page_task"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        task_id = self.valid_id(task_id)
        status = await self.lookup(task_id)
        metrics.OUTCOMES.labels(self.route, status.outcome.value).inc()
        show_result = (
            status.result_info.inline
            and (status.result_info.bytes or 0) <= PAGE_RESULT_MAX_BYTES
        )
        from celery_ext.settings import result_expires_seconds

        self.render_page(
            "fileintel_task.html",
            status=status,
            doc=status.to_dict(),
            segments=_result_segments(status) if show_result else [],
            show_result=show_result,
            page_result_max=PAGE_RESULT_MAX_BYTES,
            expiry_warning=self.plugin.settings.expiry_warning,
            result_expires_setting=result_expires_seconds(self.plugin.capp),
            verdict=PAGE_BANNER[status.outcome],
            verdict_sentence=sentence(status),
            download_url=self.download_url(task_id, page=True),
            raw_url=self.download_url(task_id, page=True, raw=True),
            flower_task_url=self.url_prefix_path(f"/task/{task_id}"),
            active_tab="fileintel",
        )


class BoardPageHandler(_PageMixin, BaseHandler):
    """``/fileintel``: running tasks with live progress, recently finished, expiring soon."""

    route = "page_board"

    @web.authenticated
    async def get(self) -> None:
        self.render_page(
            "fileintel_board.html",
            expiry_warning=self.plugin.settings.expiry_warning,
            active_tab="fileintel",
        )


class TaskPollHandler(_JsonPageMixin, BaseHandler):
    """``/fileintel/task/<id>/status.json``: the status document, for the page's polling."""

    route = "page_task_json"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        status = await self.lookup(self.valid_id(task_id))
        self.write_json(200, status.to_dict())


class BoardPollHandler(_JsonPageMixin, BaseHandler):
    """``/fileintel/board.json``: the board snapshot, for the board's polling."""

    route = "page_board_json"

    @web.authenticated
    async def get(self) -> None:
        try:
            snapshot = await self.plugin.board_snapshot()
        except BackendUnavailable as exc:
            metrics.REDIS_ERRORS.labels("board").inc()
            raise ApiError(503, "backend_unavailable", f"cannot read the board: {exc}") from exc
        self.write_json(200, snapshot)


class PageDownloadHandler(_JsonPageMixin, BaseHandler):
    """``/fileintel/task/<id>/download``: the page's download link (page auth)."""

    route = "page_download"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await _stream_download(self, self.valid_id(task_id))


class PageRawDownloadHandler(_JsonPageMixin, BaseHandler):
    """``/fileintel/task/<id>/raw``: the page's raw download link (page auth)."""

    route = "page_raw"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        await _stream_download(self, self.valid_id(task_id), raw=True)


class _EventStreamMixin(_JsonPageMixin):
    """Server-Sent Events plumbing: headers, events, keep-alives, disconnect detection."""

    _closed: asyncio.Event | None = None

    def start_stream(self) -> None:
        self._closed = asyncio.Event()
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")  # type: ignore[attr-defined]
        self.set_header("Cache-Control", "no-store")  # type: ignore[attr-defined]
        self.set_header("X-Accel-Buffering", "no")  # type: ignore[attr-defined]
        self.write("retry: 3000\n\n")  # type: ignore[attr-defined]

    def on_connection_close(self) -> None:
        if self._closed is not None:
            self._closed.set()

    async def send(self, event: str, data: str) -> None:
        self.write(f"event: {event}\ndata: {data}\n\n")  # type: ignore[attr-defined]
        await self.flush()  # type: ignore[attr-defined]

    async def next_wakeup(self, event: asyncio.Event) -> bool:
        """Wait for ``event``; send a keep-alive every 15 s. False once the client is gone."""
        assert self._closed is not None
        while not event.is_set():
            if self._closed.is_set():
                return False
            closed = asyncio.ensure_future(self._closed.wait())
            woke = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({closed, woke}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                woke.cancel()
            if self._closed.is_set():
                return False
            if not event.is_set():
                self.write(": keep-alive\n\n")  # type: ignore[attr-defined]
                await self.flush()  # type: ignore[attr-defined]
        return True


class TaskEventsHandler(_EventStreamMixin, BaseHandler):
    """``/fileintel/task/<id>/events``: SSE ``status`` events (full documents), then ``end``."""

    route = "page_task_events"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        task_id = self.valid_id(task_id)
        hub = self.plugin.hub
        self.start_stream()
        try:
            with hub.watch_task(task_id) as watcher:
                await hub.wait_connected(1.0)
                await self.send("hello", json.dumps({"push": hub.connected}))
                while await self.next_wakeup(watcher.event):
                    text = watcher.take()
                    if text is not None:
                        await self.send("status", text)
                    if watcher.ready:
                        await self.send("end", "{}")
                        break
        except StreamClosedError:
            return
        self.finish()


class BoardEventsHandler(_EventStreamMixin, BaseHandler):
    """``/fileintel/events``: SSE ``board`` snapshots, coalesced ``progress`` batches, and a
    ``problem`` event when the board cannot be refreshed (it keeps retrying)."""

    route = "page_board_events"

    @web.authenticated
    async def get(self) -> None:
        hub = self.plugin.hub
        self.start_stream()
        try:
            with hub.watch_board() as watcher:
                await hub.wait_connected(1.0)
                await self.send("hello", json.dumps({"push": hub.connected}))
                while await self.next_wakeup(watcher.event):
                    problem = watcher.take_problem()
                    if problem is not None:
                        await self.send("problem", json.dumps({"message": problem, "retrying": True}))
                    snapshot, updates = watcher.take()
                    if snapshot is not None:
                        await self.send("board", snapshot)
                    if updates:
                        await self.send(
                            "progress",
                            json.dumps({"tasks": list(updates.values()), "sent_at": time.time()}, allow_nan=False),
                        )
        except StreamClosedError:
            return
        self.finish()


# --------------------------------------------------------------------------------------------
# static files (behind the same auth as the pages: nothing the plugin adds is public)

_STATIC_TYPES = {".js": "application/javascript; charset=UTF-8", ".css": "text/css; charset=UTF-8"}
_static_versions: dict[str, str] = {}


def _static_files() -> dict[str, str]:
    return {
        name: os.path.join(STATIC_DIR, name)
        for name in os.listdir(STATIC_DIR)
        if os.path.splitext(name)[1] in _STATIC_TYPES
    }


def _static_version(name: str) -> str:
    if name not in _static_versions:
        try:
            _static_versions[name] = str(int(os.path.getmtime(os.path.join(STATIC_DIR, name))))
        except OSError:
            _static_versions[name] = "0"
    return _static_versions[name]


class StaticHandler(_PageMixin, BaseHandler):
    """``/fileintel/static/<name>``: the plugin's own JS and CSS (a fixed list of files)."""

    route = "static"

    @web.authenticated
    async def get(self, name: str) -> None:
        path = _static_files().get(name)
        if path is None:
            raise ApiError(404, "not_found", f"no static file {name!r} in flower-fileintel")
        with open(path, "rb") as f:
            data = f.read()
        self.set_header("Content-Type", _STATIC_TYPES[os.path.splitext(name)[1]])
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(data)
