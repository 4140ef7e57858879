"""What Flower's in-memory events state knows about a task that our records do not: its
arguments, routing, family and client. The task page shows it beside the record.

Flower keeps the last ``--max_tasks`` tasks it saw events for (``events.state.tasks``); a task
it never saw (worker without ``-E``, Flower started later, evicted) has no story, and the page
says so rather than showing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TaskStory", "story_of", "events_task"]


@dataclass(frozen=True)
class TaskStory:
    """A task as Flower's events state saw it; every field as text (Celery sends args and
    kwargs as their repr), None when the events did not say."""

    args: str | None = None
    kwargs: str | None = None
    routing_key: str | None = None
    exchange: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    retries: int | None = None
    worker: str | None = None
    eta: str | None = None
    expires: str | None = None
    client: str | None = None


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else repr(value)


def story_of(task: Any) -> TaskStory | None:
    """The story of a ``celery.events.state.Task`` (or anything with its attributes)."""
    if task is None:
        return None
    worker = getattr(task, "worker", None)
    hostname = getattr(worker, "hostname", None) if worker is not None else None
    retries = getattr(task, "retries", None)
    root_id = _text(getattr(task, "root_id", None))
    return TaskStory(
        args=_text(getattr(task, "args", None)),
        kwargs=_text(getattr(task, "kwargs", None)),
        routing_key=_text(getattr(task, "routing_key", None)),
        exchange=_text(getattr(task, "exchange", None)),
        parent_id=_text(getattr(task, "parent_id", None)),
        # a task that is its own root says nothing new
        root_id=root_id if root_id != getattr(task, "uuid", None) else None,
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        worker=_text(hostname),
        eta=_text(getattr(task, "eta", None)),
        expires=_text(getattr(task, "expires", None)),
        client=_text(getattr(task, "client", None)),
    )


def events_task(application: Any, task_id: str) -> Any:
    """The task in Flower's events state, or None (no such task, or no events state)."""
    events = getattr(application, "events", None)
    state = getattr(events, "state", None)
    tasks = getattr(state, "tasks", None)
    if tasks is None:
        return None
    try:
        return tasks.get(task_id)
    except Exception:  # a state Flower restored from an old file: no story rather than a 500
        return None
