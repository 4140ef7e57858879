"""``celery fileintel wait TASK_ID...``: live progress, then each task's final status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import CeleryOption, handle_preload_options

from celery_ext.cli.exit_codes import EXIT_EPILOG, WAIT_EXIT, ExitCode
from celery_ext.cli.group import fileintel
from celery_ext.cli.options import (
    FileIntelCommand,
    decode_pickle_option,
    json_lines_option,
    resolve_timeout,
    timeout_option,
    validate_ids,
)
from celery_ext.cli.output import Output
from celery_ext.cli.reporters import progress_reporter
from celery_ext.cli.text import one_line

if TYPE_CHECKING:
    pass


@fileintel.command(
    cls=FileIntelCommand,
    epilog=EXIT_EPILOG,
    arguments={
        "TASK_ID...": "One or more task ids (or short ids, as for status); each one's final "
        "status is printed in this order."
    },
)
@click.argument("task_ids", nargs=-1, required=True, callback=validate_ids, metavar="TASK_ID...")
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

    On a terminal each task gets a progress bar; one that fails, is revoked or is lost turns
    red at once, with its error in its row. Elsewhere (or with --no-progress) each change is
    one line. The final status of each task goes to stdout (--json: one document per line).
    With several ids the exit code is that of the first id, in argument order, that did not
    succeed. Unknown ids are waited for until the deadline (then exit 4).
    """
    from celery_ext.prefix import could_be_prefix, describe_id_or_prefix
    from celery_ext.watch import wait as wait_for

    out = Output(ctx)
    with out.edges():
        # A short id from the board stands for the one recent task it starts.
        full = [describe_id_or_prefix(out.app, i).task_id if could_be_prefix(i) else i for i in task_ids]
        ids = list(dict.fromkeys(full))
        seconds = resolve_timeout(timeout, out.settings)
        with progress_reporter(out, show_plain=True, no_progress=no_progress) as reporter:
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
                out.stdout(one_line(task))
            task_code = WAIT_EXIT[task.outcome]
            if task_code is not ExitCode.OK:
                out.explain(task, timeout=seconds, waited=True)
                if code is ExitCode.OK:
                    code = task_code
    ctx.exit(code)
