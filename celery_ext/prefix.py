"""Short ids: the 8-character prefix the board, the demo and the CLI show, resolved to a task.

``resolve_prefix(app, "0e275254")`` looks among the tasks the bootstep's indexes hold (the
started, unfinished ones and the last 1,000 finished; a bounded read, whatever the number
of tasks in Redis) for ids that start with it. Readers call it only for an id that reads
``unknown`` as given, so an app's own short task ids always win over a prefix match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery_ext.errors import AmbiguousTaskId
from celery_ext.ids import validate_task_id
from celery_ext.records import ACTIVE_READ_LIMIT, FINISHED_INDEX_SIZE, store_for
from celery_ext.status import Outcome

if TYPE_CHECKING:
    from celery import Celery

    from celery_ext.status import TaskStatus

__all__ = ["resolve_prefix", "describe_id_or_prefix", "could_be_prefix", "MIN_PREFIX"]

#: Shorter prefixes match too much to be useful.
MIN_PREFIX = 6
#: Celery's ids are 36-character UUIDs: anything this long is a whole id.
_WHOLE = 32


def could_be_prefix(task_id: str) -> bool:
    """Long enough to be worth resolving, short enough not to be a whole Celery id."""
    return MIN_PREFIX <= len(task_id) < _WHOLE


def resolve_prefix(app: Celery, prefix: str) -> str:
    """The one recent task id that starts with ``prefix``; ``prefix`` itself when it cannot
    be a prefix or matches no recent task. Raises ``AmbiguousTaskId`` (listing the
    candidates) when several match, and ``BackendUnavailable`` when Redis does not answer."""
    validate_task_id(prefix)
    if not could_be_prefix(prefix):
        return prefix
    pages = store_for(app).index_pages(active=ACTIVE_READ_LIMIT, finished=FINISHED_INDEX_SIZE)
    recent = pages.active + pages.finished
    matches = sorted({task_id for task_id in recent if task_id.startswith(prefix)})
    if len(matches) > 1:
        raise AmbiguousTaskId(prefix, matches)
    return matches[0] if matches else prefix


def describe_id_or_prefix(app: Celery, task_id: str) -> TaskStatus:
    """``describe(task_id)``; when that task is unknown and ``task_id`` could be a short id,
    the status of the one recent task it is the prefix of (its ``task_id`` says which)."""
    from celery_ext.lookup import describe

    status = describe(app, task_id)
    if status.outcome is not Outcome.UNKNOWN or not could_be_prefix(task_id):
        return status
    full = resolve_prefix(app, task_id)
    return status if full == task_id else describe(app, full)
