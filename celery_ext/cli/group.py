"""The ``fileintel`` click group, and the sub-commands other packages register for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from celery_ext.cli.exit_codes import EXIT_EPILOG

if TYPE_CHECKING:
    pass

#: The entry-point group sub-commands join ``fileintel`` through, as ``celery`` finds its own
#: plugins in ``celery.commands``. ``doctor`` registers here like ``flower`` and ``demo`` (from
#: ``flower_fileintel``), so this module names no other package.
COMMANDS_ENTRY_POINT_GROUP = "fileintel.commands"


def command_entry_points() -> dict[str, Any]:
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
            self._registered = command_entry_points()
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
