"""Task id validation: malformed ids are rejected before any Redis call."""

from __future__ import annotations

import re

from celery_ext.errors import InvalidTaskId

__all__ = ["MAX_TASK_ID_LENGTH", "validate_task_id"]

#: Celery ids are UUIDs (36 characters), but apps may pass their own ``task_id=``;
#: 255 leaves room for those while keeping keys and channel names sane.
MAX_TASK_ID_LENGTH = 255

# Printable ASCII without whitespace and without Redis glob characters (* ? [ ] \),
# which would turn a key or a PSUBSCRIBE channel into a pattern.
_ALLOWED = re.compile(r"[!-~]+")
_GLOB = set("*?[]\\")
#: Both rules in one pattern: the check every valid id passes, on every task's path (the
#: ranges skip * (0x2a), ? (0x3f) and [ \ ] (0x5b-0x5d)). The others get the detailed message.
_VALID = re.compile(r"[!-)+->@-Z^-~]+")


def validate_task_id(task_id: object) -> str:
    """Return ``task_id`` if it can be a Celery task id, else raise ``InvalidTaskId``.

    The message says what is wrong, so a user who pasted the wrong thing knows what to fix.
    """
    if type(task_id) is str and len(task_id) <= MAX_TASK_ID_LENGTH and _VALID.fullmatch(task_id):
        return task_id
    if not isinstance(task_id, str):
        raise InvalidTaskId(f"a task id must be a string, not {type(task_id).__name__}")
    if not task_id:
        raise InvalidTaskId("the task id is empty")
    if len(task_id) > MAX_TASK_ID_LENGTH:
        raise InvalidTaskId(
            f"the task id is {len(task_id)} characters long; task ids are at most "
            f"{MAX_TASK_ID_LENGTH} (Celery's own are 36-character UUIDs)"
        )
    if not _ALLOWED.fullmatch(task_id):
        bad = next(c for c in task_id if not _ALLOWED.fullmatch(c))
        raise InvalidTaskId(
            f"the task id contains {bad!r} (position {task_id.index(bad)}); task ids are "
            "printable ASCII without spaces or control characters"
        )
    glob = sorted(_GLOB.intersection(task_id))
    if glob:
        raise InvalidTaskId(
            f"the task id contains {''.join(glob)!r}, which Redis would read as a pattern; "
            "task ids never contain * ? [ ] or \\"
        )
    return task_id
