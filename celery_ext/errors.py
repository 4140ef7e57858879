"""The one error tree of flower-fileintel.

::

    FileIntelError
    ├── InvalidTaskId (also a ValueError)    a malformed id, rejected before any Redis call
    ├── AmbiguousTaskId (also a ValueError)  a short id that several recent tasks start with
    ├── BackendUnavailable                   Redis / the result backend cannot be reached
    │   └── BackendLost                      ... and still was when a wait's deadline passed
    ├── WaitTimeout (also a TimeoutError)     a wait's deadline passed with tasks unfinished
    ├── ResultNotSerializable                FileIntelTask with result_policy="fail"
    └── ResultTooLarge                       FileIntelTask with result_size_policy="fail"

Edges (celery_ext.cli, the Flower handlers) turn these into exit codes and HTTP statuses;
nothing below them does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from celery_ext.status import TaskStatus
    from celery_ext.watch import WaitResult

__all__ = [
    "FileIntelError",
    "InvalidTaskId",
    "AmbiguousTaskId",
    "BackendUnavailable",
    "ResultNotSerializable",
    "ResultTooLarge",
    "WaitTimeout",
    "BackendLost",
    "redact_url",
]


class FileIntelError(Exception):
    """Base class for every error this package raises on purpose."""


class InvalidTaskId(FileIntelError, ValueError):
    """The task id cannot be a Celery task id (empty, too long, control or glob characters)."""


class AmbiguousTaskId(FileIntelError, ValueError):
    """A short id that more than one recent task's id starts with."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        self.prefix = prefix
        self.candidates = candidates
        shown = ", ".join(candidates[:10]) + (f" and {len(candidates) - 10} more" if len(candidates) > 10 else "")
        super().__init__(
            f"{len(candidates)} recent tasks have ids starting with {prefix!r}: {shown}. "
            "Give more of the id."
        )


class BackendUnavailable(FileIntelError):
    """Redis or the result backend did not answer.

    ``url`` has its password replaced by ``***`` so the message is safe to print and log.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = redact_url(url)
        self.reason = reason = reason.rstrip(". ")  # redis-py's own messages end with "."
        super().__init__(
            f"cannot reach the result backend at {self.url}: {reason}. "
            "Check that Redis is running and that the URL is right."
        )


class ResultNotSerializable(FileIntelError, TypeError):
    """A task's return value has parts JSON cannot hold and result_policy is "fail"."""


class ResultTooLarge(FileIntelError):
    """A task's result is above fileintel_max_result_bytes and result_size_policy is "fail"."""


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (also inside ``;``-joined failover lists)."""
    if not url:
        return url
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class WaitTimeout(FileIntelError, TimeoutError):
    """The deadline passed while some tasks were still unknown, queued, running or retrying."""

    def __init__(self, outcome: WaitResult) -> None:
        self.outcome = outcome
        unfinished = outcome.unfinished
        shown = ", ".join(
            f"{task_id} ({outcome[task_id].phase.value})" for task_id in unfinished[:5]
        )
        more = f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else ""
        super().__init__(
            f"timed out after {outcome.timeout:g} s with {len(unfinished)} task(s) unfinished: "
            f"{shown}{more}. Wait longer, or check that a worker consumes their queue."
        )


class BackendLost(BackendUnavailable):
    """Redis was still unreachable when the wait's deadline passed.

    ``statuses`` holds the last status read for each task before Redis went away (tasks never
    read are missing), ``down_for_s`` how long Redis had been unreachable.
    """

    def __init__(self, url: str, reason: str, *, statuses: dict[str, TaskStatus], down_for_s: float) -> None:
        self.statuses = statuses
        self.down_for_s = down_for_s
        super().__init__(url, f"{reason} (unreachable for the last {down_for_s:.1f} s of the wait)")
