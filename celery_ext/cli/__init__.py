"""``celery -A proj fileintel status|result|wait|keep``: truthful task status from the terminal.

Registered through the ``celery.commands`` entry point. Celery imports this package on every
``celery`` invocation (``celery worker`` included), so nothing here imports anything heavy
at module level: rich, redis and the rest of ``celery_ext`` are loaded inside the commands.

Conventions, for people who write shell scripts:

- stdout carries only the product: the result as JSON, the status document (``--json``,
  JSON Lines for several ids), or the summary. Everything for humans (progress, warnings,
  errors) goes to stderr, so ``celery ... fileintel result ID > out.json`` is always clean.
- The exit code says what happened (table in ``EXIT_CODES`` and in ``--help``).

One module per concern: ``group`` (the click group and the sub-commands other packages
register), one module per command (``status``, ``result``, ``wait``, ``keep``), ``options``,
``exit_codes``, ``output`` (stdout/stderr), ``reporters`` (progress) and ``text``.
"""

from __future__ import annotations

# Importing the command modules registers them on the group.
from celery_ext.cli import keep, result, status, wait  # noqa: F401
from celery_ext.cli.exit_codes import (
    EXIT_CODES,
    KEEP_EXIT,
    RESULT_EXIT,
    WAIT_EXIT,
    ExitCode,
)
from celery_ext.cli.group import COMMANDS_ENTRY_POINT_GROUP, FileIntelGroup, fileintel

__all__ = [
    "fileintel",
    "ExitCode",
    "EXIT_CODES",
    "RESULT_EXIT",
    "WAIT_EXIT",
    "KEEP_EXIT",
    "FileIntelGroup",
    "COMMANDS_ENTRY_POINT_GROUP",
]
