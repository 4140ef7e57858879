"""The packages type-check under mypy --strict (configured in setup.cfg)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import REPO_ROOT


@pytest.mark.slow
def test_mypy_strict_is_clean():
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
