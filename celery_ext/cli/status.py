"""``celery fileintel status TASK_ID``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import handle_preload_options

from celery_ext.cli.exit_codes import EXIT_EPILOG, ExitCode
from celery_ext.cli.group import fileintel
from celery_ext.cli.options import (
    TASK_ID_HELP,
    FileIntelCommand,
    decode_pickle_option,
    json_option,
    validate_ids,
)
from celery_ext.cli.output import Output
from celery_ext.cli.text import summary

if TYPE_CHECKING:
    pass


@fileintel.command(cls=FileIntelCommand, epilog=EXIT_EPILOG, arguments={"TASK_ID": TASK_ID_HELP})
@click.argument("task_id", callback=validate_ids)
@json_option
@decode_pickle_option
@click.pass_context
@handle_preload_options
def status(ctx: click.Context, task_id: str, as_json: bool, **kwargs: Any) -> None:
    """Show what is known about a task: phase, times, worker, progress, result expiry.

    The summary (or, with --json, the status document) goes to stdout; a warning when its
    result expires soon goes to stderr. Exits 0 whenever the backend could answer, whatever
    the task's phase.
    """
    from celery_ext.prefix import describe_id_or_prefix

    out = Output(ctx)
    with out.edges():
        task = describe_id_or_prefix(out.app, task_id)  # a short id from the board works too
        if as_json:
            out.json(task.to_dict())
        else:
            out.stdout(summary(task, out.app))
        if as_json:
            out.expiry_warning(task)
        elif not task.expired:  # the summary's note already says when it expired
            out.expiry_warning(task, when_shown=True)  # its result row says when: once is enough
    ctx.exit(ExitCode.OK)
