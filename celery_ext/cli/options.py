"""Options and argument checks shared by the sub-commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import CeleryCommand, CeleryOption

if TYPE_CHECKING:
    from celery_ext.settings import FileIntelSettings




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


def validate_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Reject malformed ids while parsing (exit 2) so no Redis call is ever made for them."""
    from celery_ext.errors import InvalidTaskId
    from celery_ext.ids import validate_task_id

    for task_id in value if isinstance(value, tuple) else (value,):
        try:
            validate_task_id(task_id)
        except InvalidTaskId as exc:
            raise click.BadParameter(f"{task_id!r:.80}: {exc}", ctx=ctx, param=param) from None
    return value


class FileIntelCommand(CeleryCommand):
    """Celery's command (options in their help groups) whose ``--help`` also describes each
    argument, from ``arguments`` ({metavar: description}). Click only takes help for
    arguments from 8.5 on, and Celery's grouping would list them again, bare, as options."""

    def __init__(self, *args: Any, arguments: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arguments = arguments or {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(list(self.arguments.items()))
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and not isinstance(param, click.Argument):
                groups.setdefault(str(getattr(param, "help_group", None) or "Options"), []).append(record)
        for name, records in groups.items():
            with formatter.section(name):
                formatter.write_dl(records)


#: What a task id argument accepts (shown by ``--help`` beside TASK_ID).
TASK_ID_HELP = (
    "The task's id, or the short id the board and the demo show (its first 6 to 31 "
    "characters), which stands for the one recent task whose id starts with it."
)


def make_json_option(help: str) -> Callable[[Any], Any]:
    return click.option("-j", "--json", "as_json", cls=CeleryOption, is_flag=True, help_group="Output Options", help=help)


json_option = make_json_option("Print the fileintel.task-status/1 JSON document on stdout.")
json_lines_option = make_json_option(
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


def resolve_timeout(timeout: float | None, settings: FileIntelSettings) -> float | None:
    """``--timeout`` as ``wait()`` takes it: default from settings, ``inf`` -> no limit."""
    if timeout is None:
        timeout = float(settings.wait_timeout)
    return None if timeout == float("inf") else timeout
