"""The public API is what __all__ says, and importing the package costs nothing."""

from __future__ import annotations

import subprocess
import sys

import celery_ext


def test_every_public_name_resolves():
    for name in celery_ext.__all__:
        assert getattr(celery_ext, name) is not None, name
    assert sorted(dir(celery_ext)) == sorted(celery_ext.__all__)


def test_describe_is_the_function_even_after_its_module_is_imported():
    import celery_ext.lookup  # noqa: F401

    assert callable(celery_ext.describe) and celery_ext.describe.__name__ == "describe"


def test_importing_the_package_and_its_cli_imports_nothing_heavy():
    """The ``fileintel`` command is a plugin loaded on every ``celery`` invocation."""
    code = (
        "import sys, celery_ext, celery_ext.cli; "
        "heavy = [m for m in ('redis', 'rich', 'jsonschema', 'tornado', 'flower', 'celery_ext.lookup') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"imported at start-up: {out}"
