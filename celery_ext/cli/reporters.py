"""Progress while waiting: rich bars on a terminal, one plain line per change otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from celery_ext.cli.output import Output
from celery_ext.cli.text import phase_text, update_line

if TYPE_CHECKING:
    from celery_ext.status import TaskStatus

# --------------------------------------------------------------------------------------------
# progress: rich bars on a terminal, one plain line per change otherwise



#: How each phase's row reads in the TTY display (rich styles; "" is the terminal's default).
#: Keyed by ``Phase`` values so importing this module stays light; a test walks every phase.
PHASE_STYLE: dict[str, str] = {
    "unknown": "yellow",
    "queued": "",
    "running": "",
    "retrying": "",
    "succeeded": "green",
    "failed": "red",
    "revoked": "red",
    "lost": "red",
}

class PlainReporter:
    def __init__(self, out: Output, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled

    def update(self, task: TaskStatus) -> None:
        if self.enabled:
            self.out.console.print(self.out.esc(update_line(task)))


class BarReporter:
    """One rich progress bar per task on stderr; 100 % only for success."""

    def __init__(self, out: Output) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.out = out
        self.progress = Progress(
            TextColumn("{task.fields[label]}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=out.console,
            transient=False,
        )
        self.rows: dict[str, Any] = {}

    def __enter__(self) -> BarReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, task: TaskStatus) -> None:
        from rich.text import Text

        from celery_ext.status import Phase

        row = self.rows.get(task.task_id)
        label = Text(task.task_id[:8] + (f" {task.name.rsplit('.', 1)[-1]}" if task.name else ""))
        progress = task.progress
        percent = progress.percent if progress is not None else None
        if task.phase is Phase.SUCCEEDED:
            completed: float | None = 100.0
            total: float | None = 100.0
        elif percent is not None:
            # 100 % means success: a task at its last step, or failed at 100 %, shows 99 %.
            completed, total = min(float(percent), 99.0), 100.0
        else:
            completed, total = None, None
        style = PHASE_STYLE[task.phase.value]
        message = progress.message if progress is not None and progress.message else ""
        detail = Text(phase_text(task) + (f"  {message}" if message else ""), style=style)
        if row is None:
            row = self.rows[task.task_id] = self.progress.add_task(
                "", total=total, completed=int(completed or 0), label=label, detail=detail
            )
        else:
            kwargs: dict[str, Any] = {"label": label, "detail": detail}
            if total is not None:
                kwargs["total"] = total
            if completed is not None:
                kwargs["completed"] = completed
            self.progress.update(row, **kwargs)
        if task.phase.settled:
            self.progress.stop_task(row)


@contextlib.contextmanager
def progress_reporter(out: Output, *, show_plain: bool, no_progress: bool = False) -> Iterator[Any]:
    if not no_progress and out.console.is_terminal:
        with BarReporter(out) as bars:
            yield bars
    else:
        yield PlainReporter(out, enabled=show_plain and not out.quiet)
