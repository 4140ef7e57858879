"""``celery fileintel keep TASK_ID --for 7d``: keep one result (and its record) longer."""

from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryCommand, CeleryOption, handle_preload_options

from celery_ext.cli.exit_codes import EXIT_EPILOG, KEEP_EXIT, ExitCode
from celery_ext.cli.group import fileintel
from celery_ext.cli.options import make_json_option, validate_ids
from celery_ext.cli.output import Output


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """``90s``, ``30m``, ``12h``, ``7d`` as seconds (``celery_ext.keeping.parse_duration``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        from celery_ext.keeping import InvalidDuration, parse_duration

        try:
            return parse_duration(str(value))
        except InvalidDuration as exc:
            self.fail(str(exc), param, ctx)


@fileintel.command(cls=CeleryCommand, epilog=EXIT_EPILOG)
@click.argument("task_id", callback=validate_ids)
@click.option(
    "--for",
    "duration",
    cls=CeleryOption,
    type=DurationType(),
    required=True,
    help_group="Keep Options",
    help="How long to keep the result from now: a whole number and a unit, s, m, h or d "
    "(90s, 30m, 12h, 7d; at most 30d). A result that already lives longer is left as it is.",
)
@make_json_option('Print {"task_id", "kept", "verdict", "result_expires_at", "message", ...} as JSON on stdout.')
@click.pass_context
@handle_preload_options
def keep(ctx: click.Context, task_id: str, duration: int, as_json: bool, **kwargs: Any) -> None:
    """Keep a task's stored result longer than result_expires: extend the time to live of
    the result and of its task record (which always outlives it by a day), and record the
    new expiry so `status` and Flower tell it.

    TASK_ID is a task id, or the short id the board shows. Exits 0 when the result is kept,
    3 when it has already expired (it cannot be brought back), 4 for an unknown task and 2
    for a task that has not finished yet.
    """
    from celery_ext.keeping import KeepRefused
    from celery_ext.keeping import keep as keep_result

    out = Output(ctx)
    with out.edges():
        try:
            kept = keep_result(out.app, task_id, duration)
        except KeepRefused as exc:
            code = KEEP_EXIT[exc.reason] if exc.reason is not None else ExitCode.USAGE
            if as_json:
                out.json({
                    "task_id": exc.status.task_id,
                    "kept": False,
                    "reason": exc.reason.value if exc.reason is not None else "unsupported",
                    "message": str(exc),
                })
            out.error(f"{out.esc(exc)}.")
            out.notes(exc.status)
            ctx.exit(code)
        if as_json:
            out.json(kept.to_dict())
        else:
            out.stdout(f"{kept.sentence()}.")
    ctx.exit(ExitCode.OK)
