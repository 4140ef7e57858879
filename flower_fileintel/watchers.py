"""What one viewer of the live hub holds: a *latest value* slot, not a queue, so a slow
browser skips intermediate states instead of piling them up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery_ext.status import TaskStatus

__all__ = ["TaskWatcher", "BoardWatcher", "board_entry"]


def board_entry(status: TaskStatus) -> dict[str, Any]:
    """A task as the board shows it: the status document without the (possibly big) result."""
    doc = status.to_dict()
    doc.pop("result", None)
    if doc.get("error"):
        doc["error"] = {**doc["error"], "traceback": None}
    return doc


@dataclass(eq=False)
class TaskWatcher:
    """One viewer (or ``?wait=`` waiter) of one task: the latest document and a wake-up event."""

    task_id: str
    kind: str = "task"
    latest: str | None = None  # JSON text of the latest status document
    ready: bool = False  # the latest document is final
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, text: str, ready: bool) -> None:
        self.latest = text
        self.ready = ready
        self.event.set()

    def take(self) -> str | None:
        text, self.latest = self.latest, None
        self.event.clear()
        return text


@dataclass(eq=False)
class BoardWatcher:
    """One board viewer: the latest snapshot and the progress updates merged since."""

    snapshot: str | None = None
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    has_snapshot: bool = False  # updates are only useful once the viewer has the rows
    #: Why the board could not be refreshed (Redis down...), until the next snapshot.
    problem: str | None = None

    def offer_snapshot(self, text: str) -> None:
        self.has_snapshot = True
        self.snapshot = text
        self.updates.clear()  # the snapshot is newer than any pending update
        self.event.set()

    def offer_problem(self, message: str) -> None:
        """The board could not be refreshed: say so rather than go silent."""
        self.problem = message
        self.event.set()

    def take_problem(self) -> str | None:
        problem, self.problem = self.problem, None
        return problem

    def offer_updates(self, updates: dict[str, dict[str, Any]]) -> None:
        self.updates.update(updates)
        self.event.set()

    def take(self) -> tuple[str | None, dict[str, dict[str, Any]]]:
        snapshot, updates = self.snapshot, self.updates
        self.snapshot, self.updates = None, {}
        self.event.clear()
        return snapshot, updates
