"""``celery fileintel result TASK_ID``: the return value itself, or ``--output FILE``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import CeleryOption, handle_preload_options

from celery_ext.cli.exit_codes import EXIT_EPILOG, RESULT_EXIT, ExitCode
from celery_ext.cli.group import fileintel
from celery_ext.cli.options import (
    TASK_ID_HELP,
    FileIntelCommand,
    decode_pickle_option,
    make_json_option,
    resolve_timeout,
    timeout_option,
    validate_ids,
)
from celery_ext.cli.output import Output
from celery_ext.cli.reporters import progress_reporter
from celery_ext.cli.text import size_text

if TYPE_CHECKING:
    from celery_ext.download import ResultUnavailable
    from celery_ext.status import TaskStatus


@fileintel.command(cls=FileIntelCommand, epilog=EXIT_EPILOG, arguments={"TASK_ID": TASK_ID_HELP})
@click.argument("task_id", callback=validate_ids)
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
@make_json_option(
    "Print the task's fileintel.task-status/1 document on stdout instead of the bare value "
    "(the exit code is the same)."
)
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
    from celery_ext.prefix import describe_id_or_prefix
    from celery_ext.status import Outcome

    if output is not None and output != "-":
        output = _output_target(output)  # before any Redis call: a bad path is a usage error
    out = Output(ctx)
    with out.edges():
        task = describe_id_or_prefix(out.app, task_id)  # a short id from the board works too
        task_id = task.task_id
        if task.outcome is Outcome.UNKNOWN:
            # Exits at once even with --wait: use `wait` for ids from producers without install().
            out.unknown(task)
            ctx.exit(ExitCode.UNKNOWN)
        if wait_ and not task.phase.settled:
            seconds = resolve_timeout(timeout, out.settings)
            from celery_ext.watch import wait

            with progress_reporter(out, show_plain=False) as reporter:
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
        if code is ExitCode.OK:
            from celery_ext.fetched import mark_fetched

            mark_fetched(out.app, task_id)  # for the board's "expiring, nobody fetched it"; never fails
    ctx.exit(code)


def _report_result(
    out: Output,
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
        limit = size_text(out.settings.max_result_bytes)
        out.error(
            f"the result of task {out.esc(task.task_id)} is {size_text(task.result_info.bytes)}, more than "
            f"fileintel_max_result_bytes ({limit}); it is not printed on the terminal. "
            f"Use [bold]--output FILE[/] to stream it to a file (or '--output -' for stdout)."
        )
    elif code is not ExitCode.OK:
        out.explain(task, timeout=resolve_timeout(timeout, out.settings) if waited else 0, waited=waited)
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
    name_bytes = len(os.fsencode(name))
    if name_bytes > limit:
        raise bad(f"the file name is {name_bytes} bytes; at most {limit} are possible here")
    if not os.path.isdir(directory):
        raise bad(f"the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise bad(f"no permission to write in {directory}")
    return target


def _stream_to(out: Output, task: TaskStatus, output: str) -> ExitCode:
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
        out.info(f"wrote {size_text(written)} of task {out.esc(task.task_id)}'s result to stdout")
        return ExitCode.OK

    target = output  # absolute: result() passed it through _output_target
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
    out.info(f"wrote {size_text(written)} of task {out.esc(task.task_id)}'s result to {out.esc(output)}")
    return ExitCode.OK


def _unavailable_result(out: Output, exc: ResultUnavailable) -> ExitCode:
    """The download found no result: gone since describe (expired, evicted) or unstreamable."""
    from celery_ext.status import Outcome

    task = exc.status
    if task.outcome in (Outcome.OK, Outcome.TOO_LARGE):
        # Stored, but not in a form that can be streamed (another serializer, compression).
        out.error(out.esc(exc))
        return ExitCode.TOO_LARGE
    out.explain(task, timeout=None, waited=False)
    return RESULT_EXIT[task.outcome]
