"""Progress while waiting: rich bars on a terminal, one plain line per change otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from celery_ext.cli.output import Output
from celery_ext.cli.text import phase_text, single_line, update_line

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

#: Longest error message shown in a bar's row (the whole error follows at the end, on stderr).
ROW_ERROR_MAX = 100


def _ended_badly(task: TaskStatus) -> bool:
    """Failed, revoked or lost: finished without success, drawn red and still at once."""
    return task.phase.finished and task.phase.value != "succeeded"


def row_detail(task: TaskStatus) -> str:
    """The text after a task's bar: its phase, then its error (type and message) once it
    failed, was revoked or lost, else its last progress message."""
    if _ended_badly(task) and task.error is not None:
        error = single_line(f"{task.error.type}: {task.error.message}" if task.error.message else task.error.type)
        if len(error) > ROW_ERROR_MAX:
            error = error[: ROW_ERROR_MAX - 1] + "…"
        return f"{phase_text(task)}  {error}"
    progress = task.progress
    message = progress.message if progress is not None and progress.message else ""
    return phase_text(task) + (f"  {single_line(message)}" if message else "")


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
            ProgressColumn,
            TaskProgressColumn,
            TimeElapsedColumn,
        )

        class PhaseBarColumn(BarColumn):
            """A failed, revoked or lost task's bar: in its row's style and still, never
            pulsing like a queued task's."""

            def render(self, task: Any) -> Any:
                from rich.progress_bar import ProgressBar

                ended = task.fields.get("ended_style")
                if not ended:
                    return super().render(task)
                return ProgressBar(
                    total=task.total or 100.0,
                    completed=task.completed,
                    width=self.bar_width,
                    pulse=False,
                    style=ended,
                    complete_style=f"bold {ended}",
                    finished_style=f"bold {ended}",
                )

        class FieldColumn(ProgressColumn):
            """A row's ``Text`` field as it is, style included (a ``TextColumn`` format
            string would drop the style, and markup would read task data as markup)."""

            def __init__(self, field: str) -> None:
                super().__init__()
                self.field = field

            def render(self, task: Any) -> Any:
                return task.fields[self.field]

        self.out = out
        self.progress = Progress(
            FieldColumn("label"),
            PhaseBarColumn(),
            TaskProgressColumn(),
            FieldColumn("detail"),
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
        style = PHASE_STYLE[task.phase.value]
        ended = _ended_badly(task)
        label = Text(
            task.task_id[:8] + (f" {task.name.rsplit('.', 1)[-1]}" if task.name else ""), style=style if ended else ""
        )
        progress = task.progress
        percent = progress.percent if progress is not None else None
        if task.phase is Phase.SUCCEEDED:
            completed: float | None = 100.0
            total: float | None = 100.0
        elif percent is not None:
            # 100 % means success: a task at its last step, or failed at 100 %, shows 99 %.
            completed, total = min(float(percent), 99.0), 100.0
        elif ended:
            # Ended without figures: a still bar where it stood (0 if it never reported).
            completed = next((t.completed for t in self.progress.tasks if t.id == row), 0.0)
            total = 100.0
        else:
            completed, total = None, None
        detail = Text(row_detail(task), style=style)
        ended_style = style if ended else ""
        if row is None:
            row = self.rows[task.task_id] = self.progress.add_task(
                "", total=total, completed=int(completed or 0), label=label, detail=detail, ended_style=ended_style
            )
        else:
            kwargs: dict[str, Any] = {"label": label, "detail": detail, "ended_style": ended_style}
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
