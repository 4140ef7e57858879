"""``Output``: stdout for the product, one rich Console on stderr for people, and the
sentences that explain an outcome."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from celery_ext.cli.exit_codes import ExitCode
from celery_ext.cli.text import (
    duration_text,
    phase_text,
    progress_text,
    seconds_text,
    update_line,
    when_text,
)

if TYPE_CHECKING:
    from celery import Celery
    from rich.console import Console

    from celery_ext.settings import FileIntelSettings
    from celery_ext.status import TaskStatus

# --------------------------------------------------------------------------------------------
# output


class Output:
    """stdout for the product, one rich Console on stderr for people."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx = ctx
        obj = ctx.obj
        self.no_color = bool(getattr(obj, "no_color", False))
        self.quiet = bool(getattr(obj, "quiet", False))
        self._app = getattr(obj, "app", None)
        self._console: Console | None = None
        self._settings: FileIntelSettings | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            from celery import current_app

            self._app = current_app._get_current_object()
        if self.ctx.params.get("decode_pickle") and not self._app.conf.get("fileintel_decode_pickle"):
            from celery_ext.records import forget_store

            self._app.conf.fileintel_decode_pickle = True  # --decode-pickle: for this run only
            forget_store(self._app)
        return self._app

    @property
    def settings(self) -> FileIntelSettings:
        if self._settings is None:
            from celery_ext.settings import get_settings

            self._settings = get_settings(self.app)
        return self._settings

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=True,
                highlight=False,
                soft_wrap=True,
                no_color=self.no_color or None,
            )
        return self._console

    @staticmethod
    def esc(value: object) -> str:
        from rich.markup import escape

        return escape(str(value))

    # -- stdout --------------------------------------------------------------------------
    def stdout(self, text: str) -> None:
        click.echo(text)

    def json(self, value: Any, *, pretty: bool | None = None) -> None:
        import json

        if pretty is None:
            pretty = sys.stdout.isatty()
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=2 if pretty else None)
        click.echo(text)

    # -- stderr --------------------------------------------------------------------------
    def error(self, markup: str) -> None:
        self.console.print(f"[bold red]error:[/] {markup}")

    def warning(self, markup: str) -> None:
        self.console.print(f"[bold yellow]warning:[/] {markup}")

    def info(self, markup: str) -> None:
        if not self.quiet:
            self.console.print(markup)

    def backend_change(self, error: Exception | None) -> None:
        if error is None:
            self.info("the result backend answers again; still waiting")
        else:
            self.warning(f"{self.esc(error)} Retrying until the deadline.")

    def require_backend(self) -> None:
        """Without ``-A`` (or ``--result-backend``) every id would read as unknown: say so."""
        from celery.backends.base import DisabledBackend

        if isinstance(self.app.backend, DisabledBackend):
            raise click.UsageError(
                "no result backend is configured, so no task can be found. Pass the app that "
                "calls celery_ext.install(), e.g. `celery -A proj fileintel ...`, or "
                "--result-backend URL.",
                ctx=self.ctx,
            )

    @contextlib.contextmanager
    def edges(self) -> Iterator[None]:
        """Turn library errors and Ctrl-C into messages and exit codes (never a traceback)."""
        from celery_ext.errors import AmbiguousTaskId, BackendUnavailable, InvalidTaskId

        try:
            self.require_backend()
            yield
        except KeyboardInterrupt:
            self.console.print("[bold]interrupted[/] (Ctrl-C); nothing was changed.")
            self.ctx.exit(ExitCode.INTERRUPTED)
        except BrokenPipeError:
            # The reader went away (`... | head -1`): stop quietly, as a SIGPIPE'd tool would.
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            self.ctx.exit(ExitCode.BROKEN_PIPE)
        except (InvalidTaskId, AmbiguousTaskId) as exc:
            raise click.UsageError(str(exc), ctx=self.ctx) from None
        except BackendUnavailable as exc:
            from celery_ext.watch import BackendLost

            if isinstance(exc, BackendLost):
                self.error(
                    f"gave up at the deadline: {self.esc(exc)}"
                )
                for task in exc.statuses.values():
                    self.console.print(f"  last known: {self.esc(update_line(task, clock=False))}")
            else:
                self.error(self.esc(exc))
            self.ctx.exit(ExitCode.UNAVAILABLE)

    # -- explanations ----------------------------------------------------------------------
    def unknown(self, task: TaskStatus, *, waited_s: float | None = None) -> None:
        tid = self.esc(task.task_id)
        after = f" after waiting {seconds_text(waited_s)}" if waited_s else ""
        self.error(f"task {tid} is unknown{after}.")
        self.notes(task)
        if not task.notes:
            self.console.print(
                "  No worker or producer has recorded it and the backend has no result for it. "
                "Check the id, and that -A names the app that sent it."
            )

    def notes(self, task: TaskStatus) -> None:
        for note in task.notes:
            self.console.print(f"  note: {self.esc(note)}")

    def explain(self, task: TaskStatus, *, timeout: float | None, waited: bool) -> None:
        """Say on stderr why ``task`` has no result to give: its outcome's sentence."""
        from celery_ext.status import Outcome
        from celery_ext.verdict import sentence

        outcome = task.outcome
        if outcome is Outcome.UNKNOWN:
            self.unknown(task, waited_s=timeout if waited else None)
        elif outcome is Outcome.NOT_READY:
            tid = self.esc(task.task_id)
            state = self.esc(phase_text(task))
            last = f"; last progress: {self.esc(progress_text(task.progress))}" if task.progress else ""
            if waited and timeout is not None:
                self.error(f"timed out after {seconds_text(timeout)}: task {tid} is still {state}{last}")
            else:
                self.error(
                    f"task {tid} is not ready: it is {state}{last}. "
                    "Use --wait (and --timeout) to wait for it."
                )
        else:
            self.error(self.esc(sentence(task)))
            if outcome in (Outcome.EXPIRED, Outcome.EVICTED):
                self.console.print(f"  {self.expires_setting()}")
            if outcome in (Outcome.FAILED, Outcome.LOST, Outcome.NOT_READABLE):
                self.notes(task)

    def expires_setting(self) -> str:
        from celery_ext.settings import result_expires_seconds

        expires = result_expires_seconds(self.app)
        return f"result_expires is {duration_text(expires)}" if expires else "result_expires is off (never)"

    def expiry_warning(self, task: TaskStatus, *, when_shown: bool = False) -> None:
        """Warn when a stored result goes away within fileintel_expiry_warning; with
        ``when_shown`` (the ``status`` summary above already says when) without saying it again."""
        from celery_ext.status import Outcome

        if task.expired:
            if task.outcome in (Outcome.EXPIRED, Outcome.EVICTED):
                from celery_ext.verdict import sentence

                self.warning(f"{self.esc(sentence(task))} ({self.expires_setting()})")
            return
        if not task.result_available or task.expires_in_s is None:
            return
        if task.expires_in_s <= self.settings.expiry_warning:
            at = f" (at {when_text(task.result_expires_at)})" if task.result_expires_at else ""
            soon = "soon" if when_shown else f"in {duration_text(task.expires_in_s)}{at}"
            self.warning(
                f"the result of task {self.esc(task.task_id)} expires {soon}. Save it now, e.g. "
                f"[bold]celery fileintel result {self.esc(task.task_id)} --output FILE[/]."
            )

    def placeholders_warning(self, task: TaskStatus) -> None:
        placeholders = task.result_info.placeholders
        if not placeholders:
            return
        shown = ", ".join(f"{self.esc(p.path)} ({self.esc(p.type)})" for p in placeholders[:5])
        more = f" and {len(placeholders) - 5} more" if len(placeholders) > 5 else ""
        self.warning(
            f"{len(placeholders)} part(s) of the result of task {self.esc(task.task_id)} could not "
            f"be stored as JSON and are placeholders: {shown}{more}."
        )
