"""Importing stays light: Celery imports ``celery_ext.cli`` on every ``celery`` call, so the
package and its CLI must not pull in redis, rich, tornado or Flower. Measured in a fresh
interpreter (a subprocess), since this one has imported everything already."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_and_its_cli_imports_nothing_heavy():
    """The ``fileintel`` command is a plugin loaded on every ``celery`` invocation."""
    code = (
        "import sys, celery_ext, celery_ext.cli; "
        "heavy = [m for m in ('redis', 'rich', 'jsonschema', 'tornado', 'flower', 'celery_ext.lookup') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at start-up: {out}"


def test_importing_the_plugin_stays_light():
    """Celery imports celery_ext.cli on every ``celery`` call: it must not pull in rich, redis, etc."""
    code = (
        "import sys, celery.bin.base, click\n"
        "before = set(sys.modules)\n"
        "import celery_ext.cli\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    added = eval(run.stdout)  # a printed list of module names
    # Only the package's own modules, none of them heavy (no rich, redis, etc.).
    assert all(name == "celery_ext" or name.startswith("celery_ext.cli") for name in added), added
