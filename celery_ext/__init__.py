"""flower-fileintel's Celery side: truthful task status, validated results, pushed progress.

::

    import celery_ext
    celery_ext.install(app)                     # bootstep, receivers, defaults
    status = celery_ext.describe(app, task_id)  # -> TaskStatus
    celery_ext.keep(app, task_id, 7 * 86400)    # keep its result a week longer -> Kept
    status.to_dict()                            # the fileintel.task-status/1 document

This module is imported on every ``celery`` invocation (the ``fileintel`` command is a
plugin), so the public names are loaded lazily: importing ``celery_ext`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: The package version: the one place it is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

__all__ = [
    "install",
    "FileIntelTask",
    "report_progress",
    "describe",
    "describe_many",
    "stream_result",
    "wait",
    "keep",
    "Kept",
    "KeepRefused",
    "InvalidDuration",
    "WaitResult",
    "WaitTimeout",
    "BackendLost",
    "TaskStatus",
    "Phase",
    "FileIntelSettings",
    "get_settings",
    "FileIntelError",
    "InvalidTaskId",
    "BackendUnavailable",
    "ResultNotSerializable",
    "ResultTooLarge",
]

# name -> module that defines it (one place for the public API).
_EXPORTS = {
    "install": "celery_ext.bootstep",
    "FileIntelTask": "celery_ext.task",
    "report_progress": "celery_ext.progress",
    "describe": "celery_ext.lookup",
    "describe_many": "celery_ext.lookup",
    "stream_result": "celery_ext.download",
    "wait": "celery_ext.watch",
    "keep": "celery_ext.keeping",
    "Kept": "celery_ext.keeping",
    "KeepRefused": "celery_ext.keeping",
    "InvalidDuration": "celery_ext.keeping",
    "WaitResult": "celery_ext.watch",
    "WaitTimeout": "celery_ext.watch",
    "BackendLost": "celery_ext.watch",
    "TaskStatus": "celery_ext.status",
    "Phase": "celery_ext.status",
    "FileIntelSettings": "celery_ext.settings",
    "get_settings": "celery_ext.settings",
    "FileIntelError": "celery_ext.errors",
    "InvalidTaskId": "celery_ext.errors",
    "BackendUnavailable": "celery_ext.errors",
    "ResultNotSerializable": "celery_ext.errors",
    "ResultTooLarge": "celery_ext.errors",
}

if TYPE_CHECKING:
    from celery_ext.bootstep import install
    from celery_ext.download import stream_result
    from celery_ext.errors import (
        BackendUnavailable,
        FileIntelError,
        InvalidTaskId,
        ResultNotSerializable,
        ResultTooLarge,
    )
    from celery_ext.keeping import InvalidDuration, KeepRefused, Kept, keep
    from celery_ext.lookup import describe, describe_many
    from celery_ext.progress import report_progress
    from celery_ext.settings import FileIntelSettings, get_settings
    from celery_ext.status import Phase, TaskStatus
    from celery_ext.task import FileIntelTask
    from celery_ext.watch import BackendLost, WaitResult, WaitTimeout, wait


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'celery_ext' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
