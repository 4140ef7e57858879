"""The handler bases every plugin route builds on, as Flower's handlers build on its
``BaseHandler``: ``PluginHandler`` (lookups, ids, metrics), ``PageHandler`` (pages in
Flower's look), ``JsonHandler`` (JSON bodies, errors included) and ``ApiHandler`` (Flower's
API authentication on top). Every route method carries ``@tornado.web.authenticated``."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import tornado.web
from flower.api import BaseApiHandler
from flower.views import BaseHandler

from celery_ext.errors import AmbiguousTaskId, BackendUnavailable, InvalidTaskId
from celery_ext.ids import validate_task_id
from celery_ext.status import Outcome, TaskStatus
from celery_ext.verdict import sentence
from flower_fileintel import metrics
from flower_fileintel.handlers.assets import static_version
from flower_fileintel.state import PluginState, get_state


class ApiError(tornado.web.HTTPError):
    """An HTTP error whose JSON body carries ``code``, ``message`` and extra fields."""

    def __init__(self, status_code: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(status_code, reason=None)
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"status": self.status_code, "code": self.code, "message": self.message, **self.extra}


@contextlib.contextmanager
def id_lookup_errors(doing: str) -> Iterator[None]:
    """What a call that resolves a task id (full or short) and reads Redis can raise, as
    API errors: a malformed id 400, an ambiguous short id 400 with its candidates, Redis
    down 503 with ``doing`` ("cannot read task X") before the reason."""
    try:
        yield
    except InvalidTaskId as exc:
        raise ApiError(400, "invalid_task_id", f"malformed task id: {exc}") from exc
    except AmbiguousTaskId as exc:
        raise ApiError(400, "ambiguous_task_id", str(exc), candidates=exc.candidates) from exc
    except BackendUnavailable as exc:
        metrics.REDIS_ERRORS.labels("lookup").inc()
        raise ApiError(503, "backend_unavailable", f"{doing}: {exc}") from exc


class PluginHandler(BaseHandler):
    """Lookups, id validation and error mapping shared by pages and the API."""

    route = "unknown"  # metrics label (fixed per handler class)

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

    async def lookup(self, task_id: str, *, short_ids: bool = False) -> TaskStatus:
        """``describe`` off the IOLoop, with metrics; 400 / 503 as ApiError. With
        ``short_ids``, an unknown id that could be a short one (the board shows 8
        characters) reads as the one recent task it starts; several matches are a 400."""

        read = self.plugin.describe_id_or_prefix if short_ids else self.plugin.describe
        started = time.perf_counter()
        try:
            with id_lookup_errors(f"cannot read task {task_id}"):
                status: TaskStatus = await read(task_id)
        finally:
            metrics.LOOKUP_SECONDS.labels(self.route).observe(time.perf_counter() - started)
        metrics.LOOKUPS.labels(self.route, status.phase.value).inc()
        return status

    def query_float(self, name: str, low: float, high: float | None = None) -> float | None:
        """A numeric query argument, or None. Bad values are 400 (``get_query_argument``:
        Flower's ``get_argument`` HTML-escapes values)."""
        raw = self.get_query_argument(name, None)
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


def json_error_body(handler: Any, status_code: int, kwargs: dict[str, Any]) -> dict[str, Any]:
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


class JsonHandler(PluginHandler):
    """JSON bodies for every error, including Flower's 401 (with its WWW-Authenticate)."""

    def write_json(self, status_code: int, body: Any) -> None:
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, allow_nan=False))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401 and self.application.options.basic_auth:
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')
        self.clear_header("Content-Disposition")
        self.write_json(status_code, json_error_body(self, status_code, kwargs))

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


#: What the error page says for each error code: a title and what to do next.
ERROR_PAGES: Mapping[str, tuple[str, str]] = {
    "invalid_task_id": (
        "Not a task id",
        "Task ids are up to 255 printable characters without spaces or '*?[]'. Check the "
        "address: a copied id may have lost or gained characters. The board lists recent tasks.",
    ),
    "ambiguous_task_id": (
        "Several tasks match this short id",
        "Pick one of the tasks below, or give more characters of the id.",
    ),
    "backend_unavailable": (
        "Redis did not answer",
        "The task records and results could not be read. Check that Redis is up and reachable "
        "from Flower, then reload this page.",
    ),
}


class PageHandler(PluginHandler):
    """Error pages in Flower's look for 400/404/503: what went wrong, what to do, a way back."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, ApiError):
            if not hasattr(self, "_current_user"):
                self.current_user = None
            self.set_status(status_code)
            title, advice = ERROR_PAGES.get(exc.code, ("Cannot show this page", ""))
            self.render_page(
                "fileintel_error.html",
                title=title,
                message=exc.message,
                advice=advice,
                code=exc.code,
                candidates=list(exc.extra.get("candidates") or []),
                active_tab="fileintel",
            )
            return
        super().write_error(status_code, **kwargs)

    def render_page(self, template_name: str, **kwargs: Any) -> None:
        from flower_fileintel import formatting

        now = datetime.now(timezone.utc)

        def when(value: datetime | str | None) -> dict[str, str]:
            """A time for a ``<time>`` element: ISO value, absolute title, relative text."""
            moment: datetime | None
            if isinstance(value, str):
                try:
                    moment = datetime.fromisoformat(value)
                except ValueError:
                    return {"iso": "", "title": value, "text": value}
            else:
                moment = value
            return {
                "iso": moment.isoformat() if moment else "",
                "title": formatting.absolute_text(moment),
                "text": formatting.relative_text(moment, now),
            }

        self.render(
            template_name,
            fi_static=lambda name: self.url_prefix_path(f"/fileintel/static/{name}")
            + f"?v={static_version(name)}",
            fi_url=self.url_prefix_path,
            fmt_time=formatting.absolute_text,
            when=when,
            fmt=formatting,
            **kwargs,
        )


class ApiHandler(JsonHandler, BaseApiHandler):
    """``/api/fileintel/...``: JSON, with Flower's API authentication (``BaseApiHandler``)."""
