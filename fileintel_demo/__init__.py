"""The flower-fileintel demo: Redis, a Celery worker and Flower on 127.0.0.1, showing every case.

Three ways to start it (the same command and options behind each)::

    scripts/demo                      # from a fresh clone: makes .venv, installs, runs
    fileintel-demo [--once] [--port N] [--redis URL] ...
    celery fileintel demo ...         # or: python -m fileintel_demo ...

This module is imported when ``celery fileintel --help`` lists its commands, so it only
defines the click command; the runner is imported when the demo starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

__all__ = ["demo", "main"]


@click.command(name="demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True,
              help="Flower's port on 127.0.0.1 (a free one is picked, and said, if it is taken).")
@click.option("--redis", "redis_url", metavar="URL",
              help="Use this Redis instead of starting an embedded one. Nothing in it is flushed: "
                   "the demo's keys sit under their own prefix and are deleted when it stops.")
@click.option("--once", is_flag=True,
              help="Scripted run: send each case once, wait until each reaches its expected "
                   "phase (the expiring case's result expires after 15 s), check Flower, print a summary, stop. "
                   "Exit status 0 only if every case did.")
@click.option("--duration", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Run the interactive stream for this long, then print the summary and stop.")
@click.option("--result-expires", type=click.IntRange(min=5), metavar="SECONDS",
              help="How long the expiring case's results live (default 120; 15 with --once). "
                   "Every other case keeps its result for 30 minutes.")
@click.option("--concurrency", type=click.IntRange(min=2), default=4, show_default=True,
              help="Worker pool processes.")
@click.option("--interval", type=click.FloatRange(min=1), default=30.0, show_default=True,
              metavar="SECONDS", help="How often the stream sends more tasks.")
@click.option("--timeout", type=click.FloatRange(min=1), default=90.0, show_default=True,
              metavar="SECONDS", help="With --once: give up on cases not done by then.")
@click.option("--summary-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the summary as JSON here (with --once or --duration).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the Redis, worker and Flower logs here (default: a temporary "
                   "directory, removed at the end unless something failed).")
@click.option("--keep-data", is_flag=True, help="With --redis: leave the demo's keys in your Redis.")
def demo(**kwargs: Any) -> None:
    """Run Redis, a Celery worker and Flower with flower-fileintel on 127.0.0.1, and send
    demo tasks for every case: progress, failure, placeholders, a large result, expiry,
    queued, revoked and HTML. Ctrl-C stops everything it started.

    \b
    Exit status: 0 ok; 1 a case did not reach its expected phase (or Flower did not
    answer); 3 Redis, the worker or Flower failed; 130 interrupted during --once/--duration.
    """
    from fileintel_demo.runner import DemoOptions, run

    if kwargs["once"] and kwargs["duration"]:
        raise click.UsageError("--once and --duration do not go together: pick one.")
    options = DemoOptions(
        port=kwargs["port"],
        redis_url=kwargs["redis_url"],
        once=kwargs["once"],
        duration=kwargs["duration"],
        result_expires=kwargs["result_expires"],
        concurrency=kwargs["concurrency"],
        interval=kwargs["interval"],
        timeout=kwargs["timeout"],
        summary_file=kwargs["summary_file"],
        log_dir=kwargs["log_dir"],
        keep_data=kwargs["keep_data"],
    )
    raise SystemExit(run(options))


def main() -> None:
    """The ``fileintel-demo`` console script."""
    demo(prog_name="fileintel-demo")
