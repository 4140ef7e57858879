"""The demo runner: Redis, a worker and Flower on 127.0.0.1, a stream of demo tasks, clean stop.

``run(DemoOptions(...))`` starts, in this order: an embedded redis-server (or uses
``--redis URL``), a Celery worker (prefork) on the demo app, and Flower with the
flower-fileintel pages. It then sends one task per demo case, prints where to look at each
(the ``celery fileintel status`` command and the Flower page), and follows them.

- Interactive (default): keeps sending a new progress task and a new short-lived result
  every ``interval`` seconds, printing each change, until Ctrl-C or SIGTERM.
- ``once``: waits until every case has reached what it demonstrates (the expiring case
  until its result has expired), checks Flower shows each one the same, prints a summary
  and stops. Exit status 0 only if every case did.
- ``duration``: the interactive stream for that many seconds, then the summary.

Whatever happens (Ctrl-C, SIGTERM, a child dying), every process it started is stopped,
including the worker's pool processes, and their ports are free again.

This module holds the run's state and its order of steps; the steps live beside it:
``lifecycle`` (start, wait until ready, stop, clean up), ``following`` (send the cases and
watch them) and ``report`` (banner and summary).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType

from fileintel_demo import following, lifecycle, report
from fileintel_demo.cases import CaseRun
from fileintel_demo.options import (
    EXIT_CASES_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_START_FAILED,
    ONCE_RESULT_EXPIRES,
    DemoOptions,
)
from fileintel_demo.processes import Child, ChildFailed

__all__ = ["DemoOptions", "run", "EXIT_OK", "EXIT_CASES_FAILED", "EXIT_START_FAILED", "EXIT_INTERRUPTED"]


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop everything."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Started:
    """What this run started, for the stop and the summary."""

    redis: Child | None = None
    worker: Child | None = None
    flower: Child | None = None
    pids: list[int] = field(default_factory=list)

    def children(self) -> list[Child]:
        return [c for c in (self.flower, self.worker, self.redis) if c is not None]


def run(options: DemoOptions, echo: Callable[[str], None] | None = None) -> int:
    """Run the demo; returns the exit status."""
    return Demo(options, echo).run()


class Demo:
    """One run's state, shared by its steps; signals turn into ``Interrupted`` here."""

    def __init__(self, options: DemoOptions, echo: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.echo = echo or report.print_line
        self.mode = "once" if options.once else ("duration" if options.duration else "interactive")
        self.quick = options.once
        self.result_expires = options.result_expires or (ONCE_RESULT_EXPIRES if options.once else 120)
        self.run_id = os.environ.get("FILEINTEL_DEMO_RUN_ID") or uuid.uuid4().hex
        self.external_redis = options.redis_url is not None
        # A shared Redis gets a per-run prefix, so the demo's keys (and only those) can be
        # deleted at the end; the embedded one dies with the demo anyway.
        self.key_prefix = f"fileintel-demo:{self.run_id[:8]}:" if self.external_redis else "fileintel-demo:"
        self.redis_url = options.redis_url or ""
        self.redis_where = ""
        self.started = Started()
        self.workdir = Path(".")
        self.own_workdir = False
        self.flower_port = options.port
        self.flower_url = ""
        self.flower_plugin = True
        self.demo: ModuleType | None = None
        self.runs: list[CaseRun] = []
        self.signal_received: int | None = None
        self.hurry = False
        self.error: str | None = None
        self.flower_answered = False
        self.leftover_pids: list[int] = []
        self.state_written = False

    # -- signals ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_received is not None:
            self.hurry = True  # a second Ctrl-C: stop without waiting for warm shutdowns
        self.signal_received = signum

    def check_signal(self) -> None:
        """Raise ``Interrupted`` if SIGINT or SIGTERM arrived: the steps call it between waits."""
        if self.signal_received is not None:
            raise Interrupted(self.signal_received)

    def sleep(self, seconds: float) -> None:
        """Sleep in short steps, so a signal interrupts the wait at once."""
        deadline = time.monotonic() + seconds
        while True:
            self.check_signal()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.05, left))

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = EXIT_OK
        try:
            lifecycle.start(self)
            following.send_cases(self)
            code = following.follow(self)
        except Interrupted as exc:
            self.echo(f"\n{exc.args[0]} received: stopping everything the demo started...")
            code = EXIT_OK if self.mode == "interactive" else EXIT_INTERRUPTED
        except ChildFailed as exc:
            self.error = str(exc)
            self.echo(f"\nThe demo cannot go on: {exc}")
            code = EXIT_START_FAILED
        except Exception as exc:  # say what broke, then still stop everything
            self.error = f"{type(exc).__name__}: {exc}"
            self.echo(f"\nThe demo stopped on an unexpected error: {self.error}")
            code = EXIT_START_FAILED
        finally:
            # Keep signals pointed at us until everything is stopped.
            try:
                lifecycle.shutdown(self, failed=code not in (EXIT_OK, EXIT_INTERRUPTED))
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if self.leftover_pids and code == EXIT_OK:
            code = EXIT_START_FAILED
        if self.mode != "interactive" or self.runs:
            report.print_summary(self, code)
        if self.error:
            self.echo(f"\nThe demo failed: {self.error.splitlines()[0]}")
        report.print_stopped(self)
        report.write_summary(self, code)
        return code

