"""``FileIntelTask``: a task base class that checks the return value before Celery stores it.

With the json serializer, a return value JSON cannot hold makes Celery store FAILURE
(EncodeError) and the task's work is lost. With ``base=FileIntelTask``:

- ``fileintel_result_policy = "sanitize"`` (default): non-JSON parts become placeholders,
  listed in the task record, and the task still succeeds;
- ``"warn"``: stored as is (fine with pickle), and a warning names the paths;
- ``"fail"``: ``ResultNotSerializable`` names the first offending path.

Size: results above ``fileintel_max_result_bytes`` are stored intact and logged with their
size (readers then refuse to inline them), or raise ``ResultTooLarge`` with
``fileintel_result_size_policy = "fail"``. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from celery import Task

from celery_ext.errors import ResultNotSerializable, ResultTooLarge
from celery_ext.progress import report_progress
from celery_ext.results import make_json_safe
from celery_ext.settings import get_settings

__all__ = ["FileIntelTask"]

logger = logging.getLogger(__name__)


class FileIntelTask(Task):
    """Use as ``@app.task(base=FileIntelTask, bind=True)``; adds ``self.report_progress``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value = super().__call__(*args, **kwargs)
        return self._checked(value)

    def report_progress(self, current: float, total: float | None = None, message: str | None = None) -> None:
        report_progress(self, current, total, message)

    def _checked(self, value: Any) -> Any:
        settings = get_settings(self.app)
        safe = make_json_safe(value)
        if safe.placeholders:
            paths = ", ".join(p.path for p in safe.placeholders[:5])
            if settings.result_policy == "fail":
                first = safe.placeholders[0]
                raise ResultNotSerializable(
                    f"task {self.name} returned a value JSON cannot hold: {first.type} at {first.path} "
                    f"({first.repr}). Return plain JSON types, or set fileintel_result_policy='sanitize'."
                )
            if settings.result_policy == "warn":
                logger.warning("task %s[%s] returned non-JSON parts at %s", self.name, self.request.id, paths)
            else:
                logger.info(
                    "task %s[%s]: replaced non-JSON parts with placeholders at %s", self.name, self.request.id, paths
                )
                value = safe.value
                self.request.fileintel_placeholders = json.dumps([asdict(p) for p in safe.placeholders])
        size = _encoded_size(safe.value)
        if size > settings.max_result_bytes:
            if settings.result_size_policy == "fail":
                raise ResultTooLarge(
                    f"task {self.name} returned {size} bytes, above fileintel_max_result_bytes "
                    f"({settings.max_result_bytes}). Store large data elsewhere and return a reference."
                )
            logger.warning(
                "task %s[%s] returned %d bytes (above fileintel_max_result_bytes=%d); stored intact, "
                "readers will offer it as a download",
                self.name,
                self.request.id,
                size,
                settings.max_result_bytes,
            )
        return value


def _encoded_size(value: Any) -> int:
    """Bytes of ``value`` as JSON; strings UTF-8 cannot encode (lone surrogates, which plain
    Celery stores as ``\\udcff`` escapes) are counted as the escapes JSON writes."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
