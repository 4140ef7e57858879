"""Helpers for tests that read task statuses: schema validation and waiting for a phase."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

import celery_ext
from celery_ext.status import TaskStatus
from tests import harness


@lru_cache(maxsize=1)
def schema_validator() -> jsonschema.Draft202012Validator:
    text = resources.files("celery_ext").joinpath("schema/task-status-1.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def check_document(document: dict[str, Any]) -> dict[str, Any]:
    """Assert ``document`` is a valid fileintel.task-status/1 document and strict JSON."""
    schema_validator().validate(document)
    json.dumps(document, allow_nan=False)
    return document


def describe_checked(app: Any, task_id: str) -> TaskStatus:
    status = celery_ext.describe(app, task_id)
    check_document(status.to_dict())
    return status


def wait_for(app: Any, task_id: str, predicate: Any, timeout: float = 10.0) -> TaskStatus:
    """Describe ``task_id`` until ``predicate(status)`` holds; fail with the last status."""
    last: list[TaskStatus] = []

    def holds() -> TaskStatus | None:
        last[:] = [describe_checked(app, task_id)]
        return last[0] if predicate(last[0]) else None

    return harness.wait_for(holds, timeout, what=lambda: f"{task_id}; last status: {last[0].to_dict()}")


def wait_for_phase(app: Any, task_id: str, phase: str, timeout: float = 10.0) -> TaskStatus:
    return wait_for(app, task_id, lambda s: s.phase.value == phase, timeout)


def revoke_confirmed(app: Any, task_id: str, **options: Any) -> None:
    """Revoke ``task_id`` and wait until a worker confirms it holds the id (a fixed sleep
    loses that race on a loaded machine). On a connection of its own: a pooled one may be
    dead after a test simulated a Redis outage, and waiting for replies reads from it."""
    with app.connection_for_write() as connection:
        replies = app.control.revoke(task_id, connection=connection, reply=True, timeout=10, limit=1, **options)
    assert replies, f"no worker confirmed the revoke of {task_id}"


def reports_progress_as_started(app: Any, task_id: str) -> bool:
    """The task reported progress and its "started" record is written: the record write
    (a moment after the progress) is what lists it among the board's running tasks."""
    status = celery_ext.describe(app, task_id)
    return status.progress is not None and status.started_at is not None
