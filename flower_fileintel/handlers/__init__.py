"""The plugin's Tornado handlers: pages, their live streams, downloads and the JSON API.

Every handler builds on one base in ``base.py`` (``PageHandler``, ``JsonHandler`` or
``ApiHandler``, all Flower's ``BaseHandler`` underneath), and every method carries
``@tornado.web.authenticated``: Flower's own authentication (basic auth -> 401, OAuth ->
redirect to the login page) applies unchanged. Pages use page-namespace JSON/SSE endpoints
(like Flower's ``/tasks/datatable``), so they work on an instance without
``FLOWER_UNAUTHENTICATED_API`` too. ``flower_fileintel.urls`` lists the routes.

Handlers stay thin: ``celery_ext.describe`` does the reading (in the plugin's own thread
pool, never on the IOLoop), ``celery_ext.stream_result`` the downloading; handlers turn the
``Outcome`` of a ``TaskStatus`` into HTTP statuses (``RESULT_API``) and pages (``PAGE_BANNER``).
"""

from __future__ import annotations

from flower_fileintel.handlers.api import MAX_WAIT_S, ResultApiHandler, StatusApiHandler
from flower_fileintel.handlers.base import (
    RESULT_API,
    ApiError,
    ApiHandler,
    JsonHandler,
    PageHandler,
    PluginHandler,
)
from flower_fileintel.handlers.download import (
    DownloadApiHandler,
    PageDownloadHandler,
    PageRawDownloadHandler,
    RawDownloadApiHandler,
)
from flower_fileintel.handlers.events import BoardEventsHandler, TaskEventsHandler
from flower_fileintel.handlers.keep import KEEP_API, KeepApiHandler
from flower_fileintel.handlers.pages import (
    PAGE_BANNER,
    BoardPageHandler,
    BoardPollHandler,
    FinishedPollHandler,
    TaskPageHandler,
    TaskPollHandler,
)
from flower_fileintel.handlers.static import StaticHandler

__all__ = [
    "PluginHandler",
    "PageHandler",
    "JsonHandler",
    "ApiHandler",
    "ApiError",
    "RESULT_API",
    "PAGE_BANNER",
    "MAX_WAIT_S",
    "BoardPageHandler",
    "BoardPollHandler",
    "FinishedPollHandler",
    "BoardEventsHandler",
    "TaskPageHandler",
    "TaskPollHandler",
    "TaskEventsHandler",
    "PageDownloadHandler",
    "PageRawDownloadHandler",
    "StaticHandler",
    "StatusApiHandler",
    "ResultApiHandler",
    "DownloadApiHandler",
    "RawDownloadApiHandler",
    "KeepApiHandler",
    "KEEP_API",
]
