"""``/fileintel/static/<name>``, behind the same auth as the pages: nothing the plugin adds
is public."""

from __future__ import annotations

import os

from tornado import web

from flower_fileintel.handlers.assets import STATIC_TYPES, static_files
from flower_fileintel.handlers.base import ApiError, PageHandler


class StaticHandler(PageHandler):
    """``/fileintel/static/<name>``: the plugin's own JS and CSS (a fixed list of files)."""

    route = "static"

    @web.authenticated
    async def get(self, name: str) -> None:
        path = static_files().get(name)
        if path is None:
            raise ApiError(404, "not_found", f"no static file {name!r} in flower-fileintel")
        with open(path, "rb") as f:
            data = f.read()
        self.set_header("Content-Type", STATIC_TYPES[os.path.splitext(name)[1]])
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(data)
