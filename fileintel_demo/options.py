"""What a demo run is asked to do (``DemoOptions``), and the constants every part of it shares.

Kept apart from the runner so the start/stop, case and report modules can read them without
importing the runner that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "APP_MODULE",
    "DemoOptions",
    "EXIT_CASES_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_START_FAILED",
    "ONCE_RESULT_EXPIRES",
    "READY_TIMEOUT",
    "SUMMARY_SCHEMA",
]

#: The demo's Celery app, as the worker, Flower and the printed commands name it.
APP_MODULE = "fileintel_demo.app"
#: Exit statuses.
EXIT_OK = 0
EXIT_CASES_FAILED = 1
EXIT_START_FAILED = 3
EXIT_INTERRUPTED = 130
#: ``result_expires`` in a scripted (``--once``) run: short, so the expiry happens in it.
ONCE_RESULT_EXPIRES = 15
#: Seconds to wait for the worker and Flower to come up.
READY_TIMEOUT = 60.0
SUMMARY_SCHEMA = "fileintel.demo-summary/1"


@dataclass
class DemoOptions:
    port: int = 5555
    redis_url: str | None = None
    once: bool = False
    duration: float | None = None
    result_expires: int | None = None
    concurrency: int = 4
    interval: float = 30.0
    timeout: float = 90.0
    summary_file: Path | None = None
    log_dir: Path | None = None
    keep_data: bool = False
