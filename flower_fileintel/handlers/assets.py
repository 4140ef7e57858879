"""The plugin's own static files (JS, CSS): which exist, their types, and a version for
cache busting."""

from __future__ import annotations

import os

from flower_fileintel.state import STATIC_DIR

STATIC_TYPES = {".js": "application/javascript; charset=UTF-8", ".css": "text/css; charset=UTF-8"}
_static_versions: dict[str, str] = {}


def static_files() -> dict[str, str]:
    return {
        name: os.path.join(STATIC_DIR, name)
        for name in os.listdir(STATIC_DIR)
        if os.path.splitext(name)[1] in STATIC_TYPES
    }


def static_version(name: str) -> str:
    if name not in _static_versions:
        try:
            _static_versions[name] = str(int(os.path.getmtime(os.path.join(STATIC_DIR, name))))
        except OSError:
            _static_versions[name] = "0"
    return _static_versions[name]
