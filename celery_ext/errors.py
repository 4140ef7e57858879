"""The one error tree of flower-fileintel.

::

    FileIntelError
    ├── InvalidTaskId (also a ValueError)    a malformed id, rejected before any Redis call
    ├── BackendUnavailable                   Redis / the result backend cannot be reached
    ├── ResultNotSerializable                FileIntelTask with result_policy="fail"
    └── ResultTooLarge                       FileIntelTask with result_size_policy="fail"

Edges (celery_ext.cli, the Flower handlers) turn these into exit codes and HTTP statuses;
nothing below them does.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "FileIntelError",
    "InvalidTaskId",
    "BackendUnavailable",
    "ResultNotSerializable",
    "ResultTooLarge",
    "redact_url",
]


class FileIntelError(Exception):
    """Base class for every error this package raises on purpose."""


class InvalidTaskId(FileIntelError, ValueError):
    """The task id cannot be a Celery task id (empty, too long, control or glob characters)."""


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
