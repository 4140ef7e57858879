"""Shared helpers for the benchmarks: a private redis-server and timing statistics.

Benchmarks print figures side by side with stock Celery/Flower behaviour; they never assert.
Run them from the repository root with the project's virtualenv, e.g.
``.venv/bin/python benchmarks/describe.py``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness import RedisServer, run_subprocess_worker  # noqa: E402

__all__ = ["RedisServer", "run_subprocess_worker", "median", "p95", "machine_line", "ms"]


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def machine_line() -> str:
    return (
        f"{date.today().isoformat()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
