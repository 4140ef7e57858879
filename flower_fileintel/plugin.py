"""Installing the plugin into a Flower application, and its per-application state.

Flower 2.x has no plugin API (see DESIGN.md). Two supported ways in:

- ``install(flower_app)`` after building ``flower.app.Flower`` (what ``celery fileintel
  flower`` does): ``add_handlers(r".*", routes)``, which Tornado places before Flower's
  catch-all 404, with ``flower.app.rewrite_handler`` applied for ``--url_prefix``;
- ``splice_into_flower_urls()`` before Flower builds its app (``import
  flower_fileintel.activate`` in ``flowerconfig.py``): the routes go into
  ``flower.urls.handlers`` just before the ``.*`` entry, and Flower prefixes them itself.

Either way the state below (executors, the live hub) is created lazily, per application, on
the first request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from datetime import datetime
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tornado import template
from tornado.web import url

from flower_fileintel.compat import check_flower

__all__ = [
    "TEMPLATE_DIR",
    "STATIC_DIR",
    "PluginState",
    "get_state",
    "routes",
    "install",
    "splice_into_flower_urls",
    "template_settings",
    "ChainLoader",
    "ROUTE_NAMES",
]

logger = logging.getLogger(__name__)

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

#: Threads for status lookups (one Redis round trip each). Our own pool: Flower's blocking
#: runner has 5 shared slots, and long waits never hold a thread here (they use push).
LOOKUP_THREADS = 8
#: Threads for downloads (each holds one for the length of a transfer).
DOWNLOAD_THREADS = 4
#: Board sizes.
BOARD_RUNNING_LIMIT = 200
BOARD_FINISHED_LIMIT = 25
#: The board reads metadata only: payloads above this (finished results) are not loaded.
BOARD_LOAD_LIMIT = 64 * 1024
BOARD_EXPIRY_SCAN = 25

T = TypeVar("T")

#: True once splice_into_flower_urls() ran: Flower then builds the routes in itself.
_spliced = False


class PluginState:
    """What the plugin keeps per Flower application: settings, executors and the live hub."""

    def __init__(self, application: Any) -> None:
        from celery_ext.settings import get_settings

        from flower_fileintel.live import LiveHub

        self.application = application
        self.capp = application.capp
        self.settings = get_settings(self.capp)
        self.executor = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="fileintel-lookup")
        self.download_executor = ThreadPoolExecutor(
            DOWNLOAD_THREADS, thread_name_prefix="fileintel-download"
        )
        self.hub = LiveHub(self.capp, self.describe_many, self.board_snapshot)
        self._board_lock = threading.Lock()
        self._finished_cache: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call in the lookup pool, off the IOLoop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(func, *args, **kwargs))

    async def describe(self, task_id: str) -> Any:
        import celery_ext

        return await self.run(celery_ext.describe, self.capp, task_id)

    async def describe_many(self, task_ids: list[str]) -> list[Any]:
        import celery_ext

        return await self.run(celery_ext.describe_many, self.capp, task_ids)

    async def board_snapshot(self) -> dict[str, Any]:
        return await self.run(self._board_snapshot)

    def _board_snapshot(self) -> dict[str, Any]:
        """Running, recently finished and expiring-soon tasks (runs in the lookup pool).

        A finished task does not change, so its board entry (which never holds the result)
        is read once and cached; only its expiry is recomputed. Results above
        BOARD_LOAD_LIMIT are not even loaded for that one read.
        """
        from celery_ext import describe_many
        from celery_ext.records import recent_task_ids

        from flower_fileintel.live import board_entry

        active = recent_task_ids(self.capp, "active", BOARD_RUNNING_LIMIT)
        finished = recent_task_ids(self.capp, "finished", BOARD_FINISHED_LIMIT)
        with self._board_lock:
            missing = [i for i in finished if i not in self._finished_cache]
        ids = active + missing
        # The board shows no results: load none but small progress payloads.
        statuses = describe_many(self.capp, ids, max_result_bytes=BOARD_LOAD_LIMIT) if ids else []
        running = [board_entry(s) for s in statuses[: len(active)] if not s.ready]
        now = time.time()
        with self._board_lock:
            for status in statuses[len(active):]:
                if status.ready:
                    self._finished_cache[status.task_id] = board_entry(status)
            while len(self._finished_cache) > 4 * BOARD_FINISHED_LIMIT:
                self._finished_cache.popitem(last=False)
            done = [_with_current_expiry(self._finished_cache[i], now) for i in finished if i in self._finished_cache]
        warning = self.settings.expiry_warning
        expiring = sorted(
            (
                d for d in done
                if d["result_available"] and d["expires_in_s"] is not None
                and d["expires_in_s"] <= warning
            ),
            key=lambda d: d["expires_in_s"],
        )
        return {
            "running": running,
            "finished": done,
            "expiring": expiring,
            "expiry_warning_s": warning,
        }

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.download_executor.shutdown(wait=False, cancel_futures=True)


def _with_current_expiry(entry: dict[str, Any], now: float) -> dict[str, Any]:
    """A cached finished entry with ``expires_in_s`` (and ``expired``) as of ``now``."""
    at = entry.get("result_expires_at")
    if not at or not entry.get("result_available"):
        return entry
    left = datetime.fromisoformat(at).timestamp() - now
    if left > 0:
        return {**entry, "expires_in_s": round(left, 3)}
    return {**entry, "expires_in_s": 0.0, "expired": True, "result_available": False}


def get_state(application: Any) -> PluginState:
    """The plugin state of ``application`` (created on first use)."""
    state: PluginState | None = getattr(application, "fileintel_state", None)
    if state is None:
        state = PluginState(application)
        application.fileintel_state = state
    return state


#: Route name -> (pattern, handler class name in flower_fileintel.handlers).
ROUTE_NAMES: dict[str, tuple[str, str]] = {
    "fileintel-board": (r"/fileintel", "BoardPageHandler"),
    "fileintel-board-slash": (r"/fileintel/", "BoardPageHandler"),
    "fileintel-board-json": (r"/fileintel/board\.json", "BoardPollHandler"),
    "fileintel-board-events": (r"/fileintel/events", "BoardEventsHandler"),
    "fileintel-task": (r"/fileintel/task/([^/]+)", "TaskPageHandler"),
    "fileintel-task-json": (r"/fileintel/task/([^/]+)/status\.json", "TaskPollHandler"),
    "fileintel-task-events": (r"/fileintel/task/([^/]+)/events", "TaskEventsHandler"),
    "fileintel-task-download": (r"/fileintel/task/([^/]+)/download", "PageDownloadHandler"),
    "fileintel-task-raw": (r"/fileintel/task/([^/]+)/raw", "PageRawDownloadHandler"),
    "fileintel-static": (r"/fileintel/static/(.+)", "StaticHandler"),
    "fileintel-api-status": (r"/api/fileintel/task/([^/]+)", "StatusApiHandler"),
    "fileintel-api-result": (r"/api/fileintel/task/([^/]+)/result", "ResultApiHandler"),
    "fileintel-api-download": (r"/api/fileintel/task/([^/]+)/result/download", "DownloadApiHandler"),
    "fileintel-api-raw": (r"/api/fileintel/task/([^/]+)/result/raw", "RawDownloadApiHandler"),
}


def routes(url_prefix: str | None = None) -> list[Any]:
    """The plugin's Tornado routes (``tornado.web.url`` rules), prefixed like Flower's own."""
    from flower.app import rewrite_handler

    from flower_fileintel import handlers

    rules = [
        url(pattern, getattr(handlers, cls_name), name=name)
        for name, (pattern, cls_name) in ROUTE_NAMES.items()
    ]
    if url_prefix:
        rules = [rewrite_handler(r, url_prefix) for r in rules]
    return rules


class ChainLoader(template.Loader):
    """Templates from this package first, then Flower's (``{% extends "base.html" %}``).

    Our ``navbar.html`` wraps Flower's (reachable as ``flower/navbar.html``) to add a link
    to the board.
    """

    def __init__(self, flower_dir: str, **kwargs: Any) -> None:
        super().__init__(TEMPLATE_DIR, **kwargs)
        self.flower_dir = flower_dir

    def resolve_path(self, name: str, parent_path: str | None = None) -> str:
        return name  # one flat namespace, as Flower's templates expect

    def _create_template(self, name: str) -> template.Template:
        if name.startswith("flower/"):
            path = os.path.join(self.flower_dir, name[len("flower/"):])
        else:
            path = os.path.join(self.root, name)
            if not os.path.isfile(path):
                path = os.path.join(self.flower_dir, name)
        with open(path, "rb") as f:
            return template.Template(f.read(), name=name, loader=self)


def template_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Application settings that make Tornado load templates through ``ChainLoader``.

    ``template_path`` is set to our own directory so that Tornado's process-wide loader
    cache (keyed by that path) never hands our pages a plain loader.
    """
    flower_dir = settings.get("template_path") or _flower_template_dir()
    if flower_dir == TEMPLATE_DIR:  # already ours
        return {}
    return {
        "template_path": TEMPLATE_DIR,
        "template_loader": ChainLoader(
            flower_dir, autoescape=settings.get("autoescape", "xhtml_escape")
        ),
    }


def _flower_template_dir() -> str:
    from flower.urls import settings

    return str(settings["template_path"])


def install(flower_app: Any) -> None:
    """Add the plugin's routes and templates to a built ``flower.app.Flower`` (idempotent)."""
    check_flower()
    if getattr(flower_app, "fileintel_installed", False):
        return
    flower_app.settings.update(template_settings(flower_app.settings))
    if not _spliced:
        prefix = getattr(flower_app.options, "url_prefix", None)
        flower_app.add_handlers(r".*", routes(prefix))
    flower_app.fileintel_installed = True
    logger.debug("flower-fileintel installed (url_prefix=%r)", getattr(flower_app.options, "url_prefix", None))


def splice_into_flower_urls() -> None:
    """Put the routes into ``flower.urls.handlers`` before the catch-all, and our template
    loader into ``flower.urls.settings`` (for ``celery flower`` with a flowerconfig.py import)."""
    check_flower()
    global _spliced
    from flower import urls

    if _spliced:
        return
    catch_all = urls.handlers[-1]
    urls.handlers[-1:] = routes() + [catch_all]
    urls.settings.update(template_settings(urls.settings))
    _spliced = True
