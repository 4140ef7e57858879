"""``celery -A proj fileintel status|result|wait``: truthful task status from the terminal.

Registered through the ``celery.commands`` entry point. Celery imports this module on every
``celery`` invocation (``celery worker`` included), so it imports nothing heavy at module
level: rich, redis and the rest of ``celery_ext`` are loaded inside the commands.

Conventions, for people who write shell scripts:

- stdout carries only the product: the result as JSON, the status document (``--json``,
  JSON Lines for several ids), or the summary. Everything for humans (progress, warnings,
  errors) goes to stderr, so ``celery ... fileintel result ID > out.json`` is always clean.
- The exit code says what happened (table in ``EXIT_CODES`` and in ``--help``).
"""

from __future__ import annotations

import contextlib
import enum
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import CeleryCommand, CeleryOption, handle_preload_options

if TYPE_CHECKING:
    from celery import Celery
    from rich.console import Console

    from celery_ext.download import ResultUnavailable
    from celery_ext.settings import FileIntelSettings
    from celery_ext.status import Progress, TaskStatus

__all__ = ["fileintel", "ExitCode", "EXIT_CODES", "FileIntelGroup", "COMMANDS_ENTRY_POINT_GROUP"]


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    EXPIRED = 3
    UNKNOWN = 4
    TOO_LARGE = 5
    UNAVAILABLE = 69  # EX_UNAVAILABLE, as Celery's own commands use
    TIMEOUT = 124  # as timeout(1)
    INTERRUPTED = 130  # 128 + SIGINT
    BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout was closed by its reader (not in the table)


#: The exit-code table (also printed by ``--help`` and in docs/cli.md).
EXIT_CODES: tuple[tuple[ExitCode, str], ...] = (
    (ExitCode.OK, "succeeded (wait with several ids: all succeeded)"),
    (ExitCode.FAILED, "the task failed, was revoked, or was lost with its worker (why, on stderr)"),
    (ExitCode.USAGE, "usage error (bad option, malformed task id)"),
    (ExitCode.EXPIRED, "the task succeeded, but its result expired, was evicted, was never stored "
     "or cannot be decoded here"),
    (ExitCode.UNKNOWN, "unknown task id (never seen, or its record has expired too)"),
    (ExitCode.TOO_LARGE, "result too large to print; use --output FILE"),
    (ExitCode.UNAVAILABLE, "Redis / result backend unreachable"),
    (ExitCode.TIMEOUT, "timed out (the task is still queued or running)"),
    (ExitCode.INTERRUPTED, "interrupted with Ctrl-C"),
)

EXIT_EPILOG = "\b\nExit codes:\n" + "\n".join(f"  {int(c):>3}  {text}" for c, text in EXIT_CODES)

#: The entry-point group sub-commands join ``fileintel`` through, as ``celery`` finds its own
#: plugins in ``celery.commands``. ``doctor`` registers here like ``flower`` and ``demo`` (from
#: ``flower_fileintel``), so this module names no other package.
COMMANDS_ENTRY_POINT_GROUP = "fileintel.commands"


def _command_entry_points() -> dict[str, Any]:
    """The registered sub-commands by name (metadata only: nothing is imported yet)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=COMMANDS_ENTRY_POINT_GROUP)}


class FileIntelGroup(click.Group):
    """The ``fileintel`` group. Sub-commands registered in the ``fileintel.commands`` entry-point
    group load on demand (and are left out if broken), so ``celery`` itself stays fast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registered: dict[str, Any] | None = None
        self._loaded: dict[str, click.Command | None] = {}

    def _registered_names(self) -> dict[str, Any]:
        if self._registered is None:
            self._registered = _command_entry_points()
        return self._registered

    def _load(self, name: str) -> click.Command | None:
        if name not in self._loaded:
            command: Any
            try:
                command = self._registered_names()[name].load()
            except Exception:  # its package is not installed, or broken: leave it out
                import logging

                logging.getLogger(__name__).debug("fileintel %s is unavailable", name, exc_info=True)
                command = None
            self._loaded[name] = command if isinstance(command, click.Command) else None
        return self._loaded[name]

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(name for name in self._registered_names() if self._load(name) is not None)
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self._registered_names():
            command = self._load(cmd_name)
        return command


# --------------------------------------------------------------------------------------------
# shared options


class TimeoutType(click.ParamType):  # type: ignore[type-arg]
    """Seconds >= 0; ``none``/``inf`` for no limit (given as ``float('inf')``)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            if text in ("none", "inf", "infinite", "forever", "never"):
                return float("inf")
            try:
                seconds = float(text)
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds (or 'none' for no limit)", param, ctx)
        if seconds != seconds or seconds < 0:
            self.fail(f"{value!r}: the timeout must be 0 or more seconds", param, ctx)
        return seconds


def _validate_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Reject malformed ids while parsing (exit 2) so no Redis call is ever made for them."""
    from celery_ext.errors import InvalidTaskId
    from celery_ext.ids import validate_task_id

    for task_id in value if isinstance(value, tuple) else (value,):
        try:
            validate_task_id(task_id)
        except InvalidTaskId as exc:
            raise click.BadParameter(f"{task_id!r:.80}: {exc}", ctx=ctx, param=param) from None
    return value


def _json_option(help: str) -> Callable[[Any], Any]:
    return click.option("-j", "--json", "as_json", cls=CeleryOption, is_flag=True, help_group="Output Options", help=help)


json_option = _json_option("Print the fileintel.task-status/1 JSON document on stdout.")
json_lines_option = _json_option(
    "Print each task's fileintel.task-status/1 document on stdout, one per line (JSON Lines)."
)
timeout_option = click.option(
    "-t",
    "--timeout",
    cls=CeleryOption,
    type=TimeoutType(),
    default=None,
    help_group="Wait Options",
    help="Give up after this many seconds (0: check once, 'none': no limit). "
    "Default: the fileintel_wait_timeout setting (300).",
)
decode_pickle_option = click.option(
    "--decode-pickle",
    cls=CeleryOption,
    is_flag=True,
    help_group="Output Options",
    help="Decode results stored as pickle (off by default: loading pickle runs code from "
    "the store; only use it when you trust everyone who can write to the result backend).",
)


# --------------------------------------------------------------------------------------------
# the group


@click.group(
    name="fileintel",
    cls=FileIntelGroup,
    epilog=EXIT_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.pass_context
def fileintel(ctx: click.Context, /, **kwargs: Any) -> None:
    """Truthful task status, results and waiting (flower-fileintel).

    \b
      celery -A proj fileintel status TASK_ID [--json]
      celery -A proj fileintel result TASK_ID [--wait] [--timeout S] [--output FILE]
      celery -A proj fileintel wait TASK_ID [TASK_ID ...] [--timeout S] [--json]
    """


@fileintel.command(cls=CeleryCommand, epilog=EXIT_EPILOG)
@click.argument("task_id", callback=_validate_ids)
@json_option
@decode_pickle_option
@click.pass_context
@handle_preload_options
def status(ctx: click.Context, task_id: str, as_json: bool, **kwargs: Any) -> None:
    """Show what is known about a task: phase, times, worker, progress, result expiry.

    Exits 0 whenever the backend could answer, whatever the task's phase.
    """
    from celery_ext.lookup import describe

    out = _Output(ctx)
    with out.edges():
        task = describe(out.app, task_id)
        if as_json:
            out.json(task.to_dict())
        else:
            out.stdout(_summary(task, out.app))
        if as_json or not task.expired:  # the summary's notes already say when it expired
            out.expiry_warning(task)
    ctx.exit(ExitCode.OK)


@fileintel.command(cls=CeleryCommand, epilog=EXIT_EPILOG)
@click.argument("task_id", callback=_validate_ids)
@click.option(
    "-w",
    "--wait",
    "wait_",
    cls=CeleryOption,
    is_flag=True,
    help_group="Wait Options",
    help="Wait for the task to finish first (bounded by --timeout). "
    "Without it, a task that is not ready exits 124 at once.",
)
@timeout_option
@json_option
@click.option(
    "-o",
    "--output",
    cls=CeleryOption,
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default=None,
    help_group="Output Options",
    help="Stream the full stored result (JSON) to FILE with bounded memory, whatever its size "
    "('-' for stdout).",
)
@decode_pickle_option
@click.pass_context
@handle_preload_options
def result(
    ctx: click.Context,
    task_id: str,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
    output: str | None,
    **kwargs: Any,
) -> None:
    """Print a task's return value as JSON on stdout (the value itself, not a wrapper).

    Results above fileintel_max_result_bytes are not printed (exit 5): use --output FILE.
    """
    from celery_ext.lookup import describe
    from celery_ext.status import Outcome

    if output is not None and output != "-":
        output = _output_target(output)  # before any Redis call: a bad path is a usage error
    out = _Output(ctx)
    with out.edges():
        task = describe(out.app, task_id)
        if task.outcome is Outcome.UNKNOWN:
            # Exits at once even with --wait: use `wait` for ids from producers without install().
            out.unknown(task)
            ctx.exit(ExitCode.UNKNOWN)
        if wait_ and not task.phase.settled:
            seconds = _resolve_timeout(timeout, out.settings)
            from celery_ext.watch import wait

            with _progress_reporter(out, show_plain=False) as reporter:
                outcome = wait(
                    out.app,
                    [task_id],
                    timeout=seconds,
                    on_update=reporter.update,
                    on_backend_change=out.backend_change,
                )
            task = outcome[task_id]
        if as_json:
            out.json(task.to_dict())
        code = _report_result(out, task, output=output, print_value=not as_json, waited=wait_, timeout=timeout)
    ctx.exit(code)


@fileintel.command(cls=CeleryCommand, epilog=EXIT_EPILOG)
@click.argument("task_ids", nargs=-1, required=True, callback=_validate_ids)
@timeout_option
@json_lines_option
@click.option(
    "--no-progress",
    cls=CeleryOption,
    is_flag=True,
    help_group="Output Options",
    help="No progress bars; print one line per change on stderr instead.",
)
@decode_pickle_option
@click.pass_context
@handle_preload_options
def wait(
    ctx: click.Context,
    task_ids: tuple[str, ...],
    timeout: float | None,
    as_json: bool,
    no_progress: bool,
    **kwargs: Any,
) -> None:
    """Wait for one or more tasks to finish, with live progress on stderr.

    The final status of each task goes to stdout (--json: one document per line). With
    several ids the exit code is that of the first id, in argument order, that did not
    succeed. Unknown ids are waited for until the deadline (then exit 4).
    """
    from celery_ext.watch import wait as wait_for

    out = _Output(ctx)
    ids = list(dict.fromkeys(task_ids))
    with out.edges():
        seconds = _resolve_timeout(timeout, out.settings)
        with _progress_reporter(out, show_plain=True, no_progress=no_progress) as reporter:
            outcome = wait_for(
                out.app,
                ids,
                timeout=seconds,
                on_update=reporter.update,
                on_backend_change=out.backend_change,
            )
        code = ExitCode.OK
        for task_id in ids:
            task = outcome[task_id]
            if as_json:
                out.json(task.to_dict(), pretty=False)
            else:
                out.stdout(_one_line(task))
            task_code = WAIT_EXIT[task.outcome]
            if task_code is not ExitCode.OK:
                out.explain(task, timeout=seconds, waited=True)
                if code is ExitCode.OK:
                    code = task_code
    ctx.exit(code)


# --------------------------------------------------------------------------------------------
# exit codes


# The tables are keyed by ``Outcome`` values (plain strings, so importing this module stays
# light; ``Outcome`` is a str enum, so ``RESULT_EXIT[task.outcome]`` works).

#: ``result``: what each outcome exits with (docs/cli.md has the same table).
RESULT_EXIT: Mapping[str, ExitCode] = {
    "ok": ExitCode.OK,
    "failed": ExitCode.FAILED,
    "revoked": ExitCode.FAILED,
    "lost": ExitCode.FAILED,
    "expired": ExitCode.EXPIRED,
    "evicted": ExitCode.EXPIRED,
    "no_result": ExitCode.EXPIRED,
    "not_readable": ExitCode.EXPIRED,
    "unknown": ExitCode.UNKNOWN,
    "too_large": ExitCode.TOO_LARGE,
    "not_ready": ExitCode.TIMEOUT,
}

#: ``wait``: whether the task ended well, whatever became of its result.
WAIT_EXIT: Mapping[str, ExitCode] = {
    **{outcome: ExitCode.OK for outcome in ("ok", "expired", "evicted", "no_result", "not_readable", "too_large")},
    "failed": ExitCode.FAILED,
    "revoked": ExitCode.FAILED,
    "lost": ExitCode.FAILED,
    "unknown": ExitCode.UNKNOWN,
    "not_ready": ExitCode.TIMEOUT,
}


def _report_result(
    out: _Output,
    task: TaskStatus,
    *,
    output: str | None,
    print_value: bool,
    waited: bool,
    timeout: float | None,
) -> ExitCode:
    """Deliver a task's result (stdout or --output) and return the exit code."""
    from celery_ext.status import Outcome

    outcome = task.outcome
    if output is not None and outcome in (Outcome.OK, Outcome.TOO_LARGE):
        code = _stream_to(out, task, output)
        if code is ExitCode.OK:
            out.placeholders_warning(task)
            out.expiry_warning(task)
        return code
    code = RESULT_EXIT[outcome]
    if outcome is Outcome.TOO_LARGE:
        limit = _size(out.settings.max_result_bytes)
        out.error(
            f"the result of task {out.esc(task.task_id)} is {_size(task.result_info.bytes)}, more than "
            f"fileintel_max_result_bytes ({limit}); it is not printed on the terminal. "
            f"Use [bold]--output FILE[/] to stream it to a file (or '--output -' for stdout)."
        )
    elif code is not ExitCode.OK:
        out.explain(task, timeout=_resolve_timeout(timeout, out.settings) if waited else 0, waited=waited)
        return code
    if outcome is Outcome.OK:
        if print_value:
            out.json(task.result)
        out.placeholders_warning(task)
        out.expiry_warning(task)
    return code


#: What the partial file adds to the target's name (``.NAME.XXXXXXXX.part``).
_PARTIAL_SUFFIX = ".part"
_PARTIAL_EXTRA = len(".") + len(".XXXXXXXX") + len(_PARTIAL_SUFFIX)


def _output_target(output: str) -> str:
    """The absolute path ``--output`` will write, or a usage error (exit 2) saying why not."""
    import os

    def bad(why: str) -> click.BadParameter:
        return click.BadParameter(f"{output!r}: {why}", param_hint="'--output'")

    if not output.strip():
        raise bad("give a file name, or '-' for stdout")
    target = os.path.abspath(output)
    name = os.path.basename(target)
    directory = os.path.dirname(target)
    limit = 255 - _PARTIAL_EXTRA  # most file systems allow 255 bytes; the partial file adds its suffix
    if len(os.fsencode(name)) > limit:
        raise bad(f"the file name is {len(os.fsencode(name))} bytes; at most {limit} are possible here")
    if not os.path.isdir(directory):
        raise bad(f"the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise bad(f"no permission to write in {directory}")
    return target


def _stream_to(out: _Output, task: TaskStatus, output: str) -> ExitCode:
    """``--output``: stream the stored result; a file appears only when complete."""
    import os
    import tempfile

    from celery_ext.download import ResultUnavailable, stream_result

    if output == "-":
        stream = click.get_binary_stream("stdout")  # type: ignore[operator]
        try:
            written = stream_result(out.app, task.task_id, stream.write)
            stream.write(b"\n")
            stream.flush()
        except ResultUnavailable as exc:
            return _unavailable_result(out, exc)
        out.info(f"wrote {_size(written)} of task {out.esc(task.task_id)}'s result to stdout")
        return ExitCode.OK

    target = output  # absolute, checked by _output_target
    partial = None
    try:
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.", suffix=_PARTIAL_SUFFIX)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)  # mkstemp's 0600 would surprise: honour the umask
        with os.fdopen(fd, "wb") as fh:
            written = stream_result(out.app, task.task_id, fh.write)
            fh.write(b"\n")
        os.replace(partial, target)
    except ResultUnavailable as exc:
        return _unavailable_result(out, exc)
    except OSError as exc:  # no permission, disk full, a file system that takes no files (/proc)
        out.error(f"cannot write {out.esc(target)}: {out.esc(exc.strerror or exc)}. Nothing was written; choose another --output path.")
        return ExitCode.USAGE
    finally:
        if partial is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
    out.info(f"wrote {_size(written)} of task {out.esc(task.task_id)}'s result to {out.esc(output)}")
    return ExitCode.OK


def _unavailable_result(out: _Output, exc: ResultUnavailable) -> ExitCode:
    """The download found no result: gone since describe (expired, evicted) or unstreamable."""
    from celery_ext.status import Outcome

    task = exc.status
    if task.outcome in (Outcome.OK, Outcome.TOO_LARGE):
        # Stored, but not in a form that can be streamed (another serializer, compression).
        out.error(out.esc(exc))
        return ExitCode.TOO_LARGE
    out.explain(task, timeout=None, waited=False)
    return RESULT_EXIT[task.outcome]


def _resolve_timeout(timeout: float | None, settings: FileIntelSettings) -> float | None:
    """``--timeout`` as ``wait()`` takes it: default from settings, ``inf`` -> no limit."""
    if timeout is None:
        timeout = float(settings.wait_timeout)
    return None if timeout == float("inf") else timeout


# --------------------------------------------------------------------------------------------
# output


class _Output:
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
        from celery_ext.errors import BackendUnavailable, InvalidTaskId

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
        except InvalidTaskId as exc:
            raise click.UsageError(str(exc), ctx=self.ctx) from None
        except BackendUnavailable as exc:
            from celery_ext.watch import BackendLost

            if isinstance(exc, BackendLost):
                self.error(
                    f"gave up at the deadline: {self.esc(exc)}"
                )
                for task in exc.statuses.values():
                    self.console.print(f"  last known: {self.esc(_update_line(task, clock=False))}")
            else:
                self.error(self.esc(exc))
            self.ctx.exit(ExitCode.UNAVAILABLE)

    # -- explanations ----------------------------------------------------------------------
    def unknown(self, task: TaskStatus, *, waited_s: float | None = None) -> None:
        tid = self.esc(task.task_id)
        after = f" after waiting {_seconds(waited_s)}" if waited_s else ""
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
            state = self.esc(_phase_text(task))
            last = f"; last progress: {self.esc(_progress_text(task.progress))}" if task.progress else ""
            if waited and timeout is not None:
                self.error(f"timed out after {_seconds(timeout)}: task {tid} is still {state}{last}")
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
        return f"result_expires is {_duration(expires)}" if expires else "result_expires is off (never)"

    def expiry_warning(self, task: TaskStatus) -> None:
        """Warn when a stored result goes away within fileintel_expiry_warning."""
        from celery_ext.status import Outcome

        if task.expired:
            if task.outcome in (Outcome.EXPIRED, Outcome.EVICTED):
                from celery_ext.verdict import sentence

                self.warning(f"{self.esc(sentence(task))} ({self.expires_setting()})")
            return
        if not task.result_available or task.expires_in_s is None:
            return
        if task.expires_in_s <= self.settings.expiry_warning:
            at = f" (at {_when(task.result_expires_at)})" if task.result_expires_at else ""
            self.warning(
                f"the result of task {self.esc(task.task_id)} expires in "
                f"{_duration(task.expires_in_s)}{at}. Save it now, e.g. "
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


# --------------------------------------------------------------------------------------------
# progress: rich bars on a terminal, one plain line per change otherwise


class _PlainReporter:
    def __init__(self, out: _Output, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled

    def update(self, task: TaskStatus) -> None:
        if self.enabled:
            self.out.console.print(self.out.esc(_update_line(task)))


class _BarReporter:
    """One rich progress bar per task on stderr; 100 % only for success."""

    def __init__(self, out: _Output) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

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

    def __enter__(self) -> _BarReporter:
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
        style = {
            Phase.SUCCEEDED: "green",
            Phase.FAILED: "red",
            Phase.REVOKED: "red",
            Phase.LOST: "red",
            Phase.UNKNOWN: "yellow",
        }.get(task.phase, "")
        message = progress.message if progress is not None and progress.message else ""
        detail = Text(_phase_text(task) + (f"  {message}" if message else ""), style=style)
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
def _progress_reporter(out: _Output, *, show_plain: bool, no_progress: bool = False) -> Iterator[Any]:
    if not no_progress and out.console.is_terminal:
        with _BarReporter(out) as bars:
            yield bars
    else:
        yield _PlainReporter(out, enabled=show_plain and not out.quiet)


# --------------------------------------------------------------------------------------------
# formatting (pure functions, unit-tested with CliRunner and directly)


def _summary(task: TaskStatus, app: Celery | None = None) -> str:
    """The human ``status`` summary: aligned ``label  value`` lines."""
    rows: list[tuple[str, str]] = [("task", task.task_id), ("phase", _phase_text(task))]
    if task.name:
        rows.append(("name", task.name))
    if task.worker:
        rows.append(("worker", task.worker))
    if task.retries:
        rows.append(("retries", str(task.retries)))
    for label, value in (
        ("queued", task.queued_at),
        ("started", task.started_at),
        ("completed", task.completed_at),
    ):
        if value is not None:
            rows.append((label, _when(value, relative=True)))
    if task.runtime_s is not None:
        rows.append(("runtime", _duration(task.runtime_s)))
    if task.progress is not None:
        rows.append(("progress", _progress_text(task.progress)))
    rows.append(("result", _result_text(task)))
    if task.error is not None:
        rows.append(("error", f"{task.error.type}: {task.error.message}"))
        if task.error.traceback:
            rows.append(("traceback", task.error.traceback.rstrip()))
    for note in task.notes:
        rows.append(("note", note))
    width = max(len(label) for label, _ in rows)
    indent = "\n" + " " * (width + 2)  # a multi-line value (the traceback) stays in its column
    return "\n".join(f"{label:<{width}}  {value.replace(chr(10), indent)}" for label, value in rows)


def _one_line(task: TaskStatus) -> str:
    """``task_id<TAB>phase<TAB>detail``: one line a shell loop can ``read``."""
    detail = _phase_text(task) if task.state is not None else "no stored result and no record"
    if task.progress is not None and not task.phase.finished:
        detail += f" {_progress_text(task.progress)}"
    if task.error is not None:
        detail += f" {task.error.type}: {task.error.message}"
    elif task.phase.finished and task.runtime_s is not None:
        detail += f" in {_duration(task.runtime_s)}"
    return f"{task.task_id}\t{task.phase.value}\t{_single_line(detail)}"


def _update_line(task: TaskStatus, *, clock: bool = True) -> str:
    """A progress line for stderr: ``10:31:02 <id> running (PROGRESS) 40% (4/10) step 4``."""
    import time

    task_id, phase, detail = _one_line(task).split("\t", 2)
    if not detail.startswith(phase):
        detail = f"{phase}: {detail}"
    line = f"{task_id} {detail}"
    return f"{time.strftime('%H:%M:%S')} {line}" if clock else line


def _single_line(text: str) -> str:
    return " ".join(text.split())


# The raw state each phase usually has; any other state is shown beside the phase.
_USUAL_STATE = {
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "revoked": "REVOKED",
    "retrying": "RETRY",
    "queued": "PENDING",
}


def _phase_text(task: TaskStatus) -> str:
    phase = task.phase.value
    if task.state and task.state != _USUAL_STATE.get(phase):
        return f"{phase} ({task.state})"
    return phase


def _progress_text(progress: Progress | None) -> str:
    if progress is None:
        return "-"
    parts = []
    if progress.percent is not None:
        parts.append(f"{progress.percent:.0f}%")
    if progress.current is not None and progress.total is not None:
        parts.append(f"({_num(progress.current)}/{_num(progress.total)})")
    elif progress.current is not None:
        parts.append(f"({_num(progress.current)} done)")
    if progress.message:
        parts.append(_single_line(progress.message))
    return " ".join(parts) or "started, no figures reported"


def _result_text(task: TaskStatus) -> str:
    from celery_ext.status import Outcome

    info = task.result_info
    size = f", {_size(info.bytes)}" if info.bytes is not None else ""
    outcome = task.outcome
    if outcome is Outcome.EXPIRED:
        return f"expired at {_when(task.result_expires_at)}{size}"
    if outcome is Outcome.EVICTED:
        return f"gone before its expiry (deleted or evicted){size}"
    if task.result_available and outcome in (Outcome.OK, Outcome.TOO_LARGE):
        expiry = ""
        if task.result_expires_at is not None:
            expiry = f", expires {_when(task.result_expires_at, relative=True)}"
        elif task.phase.finished:
            expiry = ", never expires"
        extra = ""
        if outcome is Outcome.TOO_LARGE:
            extra = " (too large to show; use `result --output FILE`)"
        elif info.placeholders:
            extra = f" ({len(info.placeholders)} placeholder(s))"
        return f"available{size}{expiry}{extra}"
    return _OUTCOME_TEXT[outcome] + size


#: How the ``result`` line of ``status`` names an outcome without a result to show.
_OUTCOME_TEXT: Mapping[str, str] = {
    "ok": "available",
    "not_ready": "not ready",
    "unknown": "unknown",
    "failed": "none (the task failed)",
    "revoked": "none (the task was revoked)",
    "lost": "none (its worker died while it ran)",
    "expired": "expired",
    "evicted": "gone before its expiry (deleted or evicted)",
    "no_result": "none stored (ignore_result, or a backend that keeps none for other clients)",
    "not_readable": "stored, but not readable by this app",
    "too_large": "too large to show",
}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "unknown size"
    size = float(nbytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{nbytes} bytes"  # pragma: no cover


def _seconds(seconds: float) -> str:
    """A timeout as the user typed it: ``2 s``, ``0.5 s``."""
    return f"{seconds:g} s"


def _duration(seconds: float | None) -> str:
    """``4.2 ms``, ``1.2 s``, ``45 s``, ``2 min 30 s``, ``1 h``, ``3 h 2 min``, ``1 d``."""
    if seconds is None:
        return "unknown"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.2g} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    total = int(round(seconds))
    minutes, secs = divmod(total, 60)
    if minutes == 0 or (minutes == 1 and secs):
        return f"{total} s"
    if minutes < 120 and (minutes % 60 or secs):
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    if hours < 48 and (hours % 24 or minutes):
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def _when(value: Any, *, relative: bool = False) -> str:
    """``2026-11-28 10:31:02 UTC`` (+ `` (3 min ago)`` / `` (in 5 min)`` when relative)."""
    from datetime import datetime, timezone

    if value is None:
        return "unknown"
    moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    text: str = moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if relative:
        delta = (moment - datetime.now(timezone.utc)).total_seconds()
        text += f" (in {_duration(delta)})" if delta >= 0 else f" ({_duration(-delta)} ago)"
    return text
