"""The packages type-check under mypy --strict (configured in setup.cfg)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from tests.harness import REPO_ROOT


def _redis_major() -> int:
    return int(version("redis").split(".")[0])


@pytest.mark.slow
@pytest.mark.skipif(
    5 <= _redis_major() < 8,
    reason="the code is type-checked against redis-py 8's hints; 5.x and 6.x ship older ones "
    "(untyped close(), hgetall() of str only) and 4.6 none (redis.* is Any then). The "
    "matrix's runtime tests cover every version; the type check runs where the hints match.",
)
def test_mypy_strict_is_clean():
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
