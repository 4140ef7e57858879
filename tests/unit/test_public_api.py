"""The public API is what __all__ says (what importing it costs: tests/integration/test_import_weight.py)."""

from __future__ import annotations

import celery_ext


def test_every_public_name_resolves():
    for name in celery_ext.__all__:
        assert getattr(celery_ext, name) is not None, name
    assert sorted(dir(celery_ext)) == sorted(celery_ext.__all__)


def test_describe_is_the_function_even_after_its_module_is_imported():
    import celery_ext.lookup  # noqa: F401

    assert callable(celery_ext.describe) and celery_ext.describe.__name__ == "describe"
