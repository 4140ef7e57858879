"""flower-fileintel's Flower side: validated result pages, live progress, expiry warnings.

Two ways to turn it on (see docs/flower.md):

- ``celery -A proj fileintel flower [any celery flower option]``;
- or keep ``celery flower`` and add ``import flower_fileintel.activate`` to ``flowerconfig.py``.

Or, when you build ``flower.app.Flower`` yourself: ``flower_fileintel.install(flower_app)``.
Names are loaded lazily: importing this package does not import Flower.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["install", "routes", "check_flower", "FlowerIncompatible", "get_state"]

_EXPORTS = {
    "install": "flower_fileintel.plugin",
    "routes": "flower_fileintel.urls",
    "get_state": "flower_fileintel.state",
    "check_flower": "flower_fileintel.compat",
    "FlowerIncompatible": "flower_fileintel.compat",
}

if TYPE_CHECKING:
    from flower_fileintel.compat import FlowerIncompatible, check_flower
    from flower_fileintel.plugin import install
    from flower_fileintel.state import get_state
    from flower_fileintel.urls import routes


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'flower_fileintel' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
