"""A hook on Celery's tracer for the two ends no signal tells: ``Ignore`` and ``Reject``.

A task that raises either sends none of ``task_success``, ``task_failure`` or
``task_retry``, and Celery stores nothing for it. Its end is seen only in the tracer's
``TraceInfo.handle_ignore`` and ``handle_reject``, which this module wraps (no cost to any
other task). ``receivers.py`` connects its receiver here, as it connects the others to signals.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["connect_ignore_or_reject"]

logger = logging.getLogger(__name__)

#: ``receiver(task, request, exc)``: ``exc`` is the ``Ignore`` or ``Reject`` the task raised.
IgnoreOrRejectReceiver = Callable[[Any, Any, "BaseException | None"], None]

_MARK = "_fileintel_ends_run"


def connect_ignore_or_reject(receiver: IgnoreOrRejectReceiver) -> None:
    """Call ``receiver`` after Celery has handled a task's ``Ignore`` or ``Reject``. Once per
    process: a second call leaves the hook as it is. The receiver never breaks a task: what
    it raises is logged."""
    from celery.app.trace import TraceInfo

    for name in ("handle_ignore", "handle_reject"):
        original = getattr(TraceInfo, name)
        if getattr(original, _MARK, False):
            continue

        def handled(self: Any, task: Any, req: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            try:
                return _original(self, task, req, *args, **kwargs)
            finally:
                try:
                    receiver(task, req, getattr(self, "retval", None))
                except Exception:  # pragma: no cover - defensive: a record never breaks a task
                    logger.exception("fileintel: could not record how task %s ended", getattr(req, "id", None))

        setattr(handled, _MARK, True)
        setattr(TraceInfo, name, functools.wraps(original)(handled))
