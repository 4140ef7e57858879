"""The exit codes of ``celery fileintel`` and the tables that map each ``Outcome`` to one.

The tables are keyed by ``Outcome`` values (plain strings, so importing this module stays
light; ``Outcome`` is a str enum, so ``RESULT_EXIT[task.outcome]`` works). docs/cli.md has
the same tables (a test compares them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


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

#: ``keep``: 0 when the result was kept (or already lives that long), else why it cannot be.
#: Outcomes whose result is stored go on to the keep itself, which exits 0, or 3 when the
#: result expired in between.
KEEP_EXIT: Mapping[str, ExitCode] = {
    **{outcome: ExitCode.OK for outcome in ("ok", "too_large", "not_readable", "failed", "revoked", "lost")},
    "expired": ExitCode.EXPIRED,
    "evicted": ExitCode.EXPIRED,
    "no_result": ExitCode.EXPIRED,
    "unknown": ExitCode.UNKNOWN,
    "not_ready": ExitCode.USAGE,
}
