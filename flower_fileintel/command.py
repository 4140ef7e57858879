"""``celery -A proj fileintel flower``: Flower, with the flower-fileintel pages installed.

It is ``celery flower`` step for step, reusing ``flower.command``'s own helpers, so every
option, ``FLOWER_*`` environment variable, ``flowerconfig.py``, ``--url_prefix``, auth and
TLS behave exactly as there. The one difference: after Flower builds its application, the
plugin's routes are added with ``add_handlers`` (which Tornado puts before Flower's
catch-all 404). Before anything starts, a self-check makes sure the installed Flower still
has the internals the plugin relies on, and stops with a clear message if not.

This module is imported lazily by the ``fileintel`` command group; it imports Flower only
when the command runs.
"""

from __future__ import annotations

import atexit
import logging
import signal
import sys
from typing import Any

import click
from celery.bin.base import CeleryCommand

# Its home in every supported Celery; celery.bin.base re-exports it only in newer ones (not 5.3).
from celery.exceptions import CeleryCommandException

__all__ = ["flower", "build_flower"]

logger = logging.getLogger(__name__)

#: Exit status when the installed Flower lacks what the plugin needs (sysexits EX_CONFIG).
EX_CONFIG = 78


def build_flower(capp: Any, options: Any, settings: dict[str, Any], **kwargs: Any) -> Any:
    """Build ``flower.app.Flower`` exactly as ``celery flower`` does, then install the plugin."""
    from flower.app import Flower

    from flower_fileintel.plugin import install

    flower_app = Flower(capp=capp, options=options, **settings, **kwargs)
    install(flower_app)
    return flower_app


def _warn_about_celery_args(ctx: click.Context, flower_args: tuple[str, ...]) -> None:
    """Flower's own warning, looking at the root ``celery`` command (we sit one level lower)."""
    root = ctx.find_root()
    celery_options = {opt for param in root.command.params for opt in param.opts}
    misplaced = [a.partition("=")[0] for a in flower_args if a.partition("=")[0] in celery_options]
    if misplaced:
        logger.warning(
            "You have given these celery options after the flower command: %s. Give them "
            "before it instead: celery [celery options] fileintel flower [flower options].",
            misplaced,
        )


@click.command(
    cls=CeleryCommand,
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
)
@click.argument("tornado_argv", nargs=-1, type=click.UNPROCESSED, metavar="[FLOWER OPTIONS]...")
@click.pass_context
def flower(ctx: click.Context, tornado_argv: tuple[str, ...]) -> None:
    """Start Flower with the flower-fileintel pages and API installed.

    Takes every option `celery flower` takes (listed below), the same FLOWER_* environment
    variables and the same flowerconfig.py. The plugin's pages are at
    /fileintel (add --url_prefix as usual), behind Flower's own authentication.
    """
    if "--help" in tornado_argv or "-h" in tornado_argv:
        from flower.options import options as flower_options

        click.echo(ctx.get_help())
        click.echo("\nFlower's options (the same as for `celery flower`):\n")
        flower_options.print_help(sys.stdout)
        ctx.exit(0)

    from flower_fileintel.compat import FlowerIncompatible, check_flower

    try:
        check_flower()
    except FlowerIncompatible as exc:
        raise CeleryCommandException(str(exc), exit_code=EX_CONFIG) from None

    from flower import command as flower_command

    _warn_about_celery_args(ctx, tornado_argv)
    flower_command.apply_env_options()
    flower_command.apply_options(sys.argv[0], tornado_argv)
    flower_command.extract_settings()
    flower_command.setup_logging()

    capp = ctx.obj.app
    options = flower_command.options
    settings = flower_command.settings
    flower_app = build_flower(capp, options, settings)

    atexit.register(flower_app.stop)
    signal.signal(signal.SIGTERM, flower_command.sigterm_handler)

    # Flower 2.1+ binds before start() and its banner shows the port it got; Flower 2.0 has
    # no start_http_server (start() binds) and its banner shows the configured port.
    start_http_server = getattr(flower_app, "start_http_server", None)
    port = (start_http_server(),) if start_http_server else ()
    if not ctx.obj.quiet:
        flower_command.print_banner(capp, "ssl_options" in settings, *port)
        prefix = f"/{options.url_prefix.strip('/')}" if options.url_prefix else ""
        logger.info("flower-fileintel pages: %s/fileintel", prefix)
    try:
        flower_app.start()
    except (KeyboardInterrupt, SystemExit):
        pass
