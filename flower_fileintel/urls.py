"""The plugin's route table: URL pattern, handler class and route name, as Flower's own
``flower/urls.py`` lists its routes. ``plugin.install`` and ``plugin.splice_into_flower_urls``
put these into Flower."""

from __future__ import annotations

from typing import Any

from tornado.web import url

from flower_fileintel.handlers import (
    BoardEventsHandler,
    BoardPageHandler,
    BoardPollHandler,
    DownloadApiHandler,
    FinishedPollHandler,
    KeepApiHandler,
    PageDownloadHandler,
    PageRawDownloadHandler,
    RawDownloadApiHandler,
    ResultApiHandler,
    StaticHandler,
    StatusApiHandler,
    TaskEventsHandler,
    TaskPageHandler,
    TaskPollHandler,
)

__all__ = ["ROUTES", "ROUTE_NAMES", "routes"]

#: (pattern, handler, route name); every handler authenticates like Flower's own.
ROUTES: list[tuple[str, type[Any], str]] = [
    (r"/fileintel", BoardPageHandler, "fileintel-board"),
    (r"/fileintel/", BoardPageHandler, "fileintel-board-slash"),
    (r"/fileintel/board\.json", BoardPollHandler, "fileintel-board-json"),
    (r"/fileintel/events", BoardEventsHandler, "fileintel-board-events"),
    (r"/fileintel/finished\.json", FinishedPollHandler, "fileintel-finished-json"),
    (r"/fileintel/task/([^/]+)", TaskPageHandler, "fileintel-task"),
    (r"/fileintel/task/([^/]+)/status\.json", TaskPollHandler, "fileintel-task-json"),
    (r"/fileintel/task/([^/]+)/events", TaskEventsHandler, "fileintel-task-events"),
    (r"/fileintel/task/([^/]+)/download", PageDownloadHandler, "fileintel-task-download"),
    (r"/fileintel/task/([^/]+)/raw", PageRawDownloadHandler, "fileintel-task-raw"),
    (r"/fileintel/static/(.+)", StaticHandler, "fileintel-static"),
    (r"/api/fileintel/task/([^/]+)", StatusApiHandler, "fileintel-api-status"),
    (r"/api/fileintel/task/([^/]+)/result", ResultApiHandler, "fileintel-api-result"),
    (r"/api/fileintel/task/([^/]+)/result/download", DownloadApiHandler, "fileintel-api-download"),
    (r"/api/fileintel/task/([^/]+)/result/raw", RawDownloadApiHandler, "fileintel-api-raw"),
    (r"/api/fileintel/task/([^/]+)/keep", KeepApiHandler, "fileintel-api-keep"),
]
#: Every route name (the auth tests check the live router against it).
ROUTE_NAMES = frozenset(name for _, _, name in ROUTES)


def routes(url_prefix: str | None = None) -> list[Any]:
    """The plugin's Tornado routes (``tornado.web.url`` rules), prefixed like Flower's own."""
    from flower.app import rewrite_handler

    rules = [url(pattern, handler, name=name) for pattern, handler, name in ROUTES]
    if url_prefix:
        rules = [rewrite_handler(r, url_prefix) for r in rules]
    return rules
