"""The start-up self-check: are the Flower internals this plugin relies on still there?

Flower 2.x has no plugin API. The plugin depends on a handful of internals (listed in
``REQUIREMENTS``); if an upgrade removes one, Flower would otherwise start and silently
answer 404 on every plugin route. ``check_flower()`` fails first, with a message saying what
is missing and what to do.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

__all__ = ["FlowerIncompatible", "check_flower", "flower_version", "SUPPORTED"]

#: The Flower versions this plugin is tested with (noxfile.py; the same range as pyproject.toml).
SUPPORTED = ">=2.0.1,<2.3"


class FlowerIncompatible(RuntimeError):
    """The installed Flower lacks an internal the plugin needs."""


def flower_version() -> str:
    try:
        import flower

        return str(getattr(flower, "__version__", "unknown"))
    except ImportError:
        return "not installed"


def _attr(module: str, name: str) -> Callable[[], bool]:
    def check() -> bool:
        return hasattr(importlib.import_module(module), name)

    return check


def _catch_all_last() -> bool:
    handlers = importlib.import_module("flower.urls").handlers
    if not isinstance(handlers, list) or not handlers:
        return False
    last = handlers[-1]
    pattern = last.regex.pattern if hasattr(last, "regex") else last[0]
    return pattern in (r".*", r".*$")


def _settings_dict() -> bool:
    settings = importlib.import_module("flower.urls").settings
    return isinstance(settings, dict) and "template_path" in settings and "login_url" in settings


def _base_template() -> bool:
    settings = importlib.import_module("flower.urls").settings
    path = os.path.join(settings["template_path"], "base.html")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return "{% block container %}" in text and "navbar.html" in text


def _authenticated_handlers() -> bool:
    from flower.api import BaseApiHandler
    from flower.views import BaseHandler

    return issubclass(BaseApiHandler, BaseHandler) and callable(
        getattr(BaseHandler, "get_current_user", None)
    )


#: (what we need, why, check)
REQUIREMENTS: tuple[tuple[str, str, Callable[[], bool]], ...] = (
    ("flower.views.BaseHandler / flower.api.BaseApiHandler", "Flower's authentication for every plugin route", _authenticated_handlers),
    ("flower.app.Flower", "the Tornado application the routes are added to", _attr("flower.app", "Flower")),
    ("flower.app.rewrite_handler", "--url_prefix support", _attr("flower.app", "rewrite_handler")),
    ("flower.urls.handlers ending with the '.*' catch-all", "where the flowerconfig.py import splices routes", _catch_all_last),
    ("flower.urls.settings", "template path, login URL and cookie settings", _settings_dict),
    ("flower/templates/base.html with a 'container' block", "the plugin pages extend it", _base_template),
    ("flower.command.apply_env_options", "FLOWER_* environment variables", _attr("flower.command", "apply_env_options")),
    ("flower.command.apply_options", "command-line options and flowerconfig.py", _attr("flower.command", "apply_options")),
    ("flower.command.extract_settings", "auth, TLS and url_prefix settings", _attr("flower.command", "extract_settings")),
    ("flower.command.setup_logging", "Flower's logging set-up", _attr("flower.command", "setup_logging")),
    ("flower.options.options", "Flower's option definitions", _attr("flower.options", "options")),
)


def check_flower() -> None:
    """Raise ``FlowerIncompatible`` naming every missing internal; return quietly if all are there."""
    missing: list[str] = []
    for what, why, check in REQUIREMENTS:
        try:
            ok = check()
        except Exception as exc:  # an ImportError, a changed signature...
            ok = False
            why = f"{why}; checking it raised {type(exc).__name__}: {exc}"
        if not ok:
            missing.append(f"  - {what} ({why})")
    if missing:
        raise FlowerIncompatible(
            f"flower-fileintel cannot install its pages into Flower {flower_version()}: "
            "these Flower internals are missing or changed:\n"
            + "\n".join(missing)
            + f"\nInstall a Flower version this plugin supports ({SUPPORTED}), "
            "or upgrade flower-fileintel."
        )
