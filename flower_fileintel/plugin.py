"""Installing the plugin into a Flower application: its routes (``urls.py``) and templates.

Flower 2.x has no plugin API (see DESIGN.md). Two supported ways in:

- ``install(flower_app)`` after building ``flower.app.Flower`` (what ``celery fileintel
  flower`` does): ``add_handlers(r".*", routes)``, which Tornado places before Flower's
  catch-all 404, with ``flower.app.rewrite_handler`` applied for ``--url_prefix``;
- ``splice_into_flower_urls()`` before Flower builds its app (``import
  flower_fileintel.activate`` in ``flowerconfig.py``): the routes go into
  ``flower.urls.handlers`` just before the ``.*`` entry, and Flower prefixes them itself.

Either way the per-application state (``state.py``: executors, the live hub) is created
lazily on the first request.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from tornado import template

from flower_fileintel.compat import check_flower

__all__ = [
    "TEMPLATE_DIR",
    "install",
    "splice_into_flower_urls",
    "template_settings",
    "ChainLoader",
]

logger = logging.getLogger(__name__)

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

#: True once splice_into_flower_urls() ran: Flower then builds the routes in itself.
_spliced = False


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
        from flower_fileintel.urls import routes

        prefix = getattr(flower_app.options, "url_prefix", None)
        flower_app.add_handlers(r".*", routes(prefix))
    flower_app.fileintel_installed = True
    from flower_fileintel import metrics

    metrics.start_inventory(flower_app.capp)  # before any request: /metrics has the gauges at once
    logger.debug("flower-fileintel installed (url_prefix=%r)", getattr(flower_app.options, "url_prefix", None))


def splice_into_flower_urls() -> None:
    """Put the routes into ``flower.urls.handlers`` before the catch-all, and our template
    loader into ``flower.urls.settings`` (for ``celery flower`` with a flowerconfig.py import)."""
    check_flower()
    global _spliced
    from flower import urls

    from flower_fileintel.urls import routes

    if _spliced:
        return
    catch_all = urls.handlers[-1]
    urls.handlers[-1:] = routes() + [catch_all]
    urls.settings.update(template_settings(urls.settings))
    _spliced = True
