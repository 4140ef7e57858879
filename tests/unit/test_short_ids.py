"""What counts as a short id (the 8 characters the board shows)."""

from __future__ import annotations

import uuid

from celery_ext.prefix import MIN_PREFIX, could_be_prefix


def test_what_counts_as_a_short_id():
    assert could_be_prefix("0e275254")
    assert not could_be_prefix("0" * (MIN_PREFIX - 1))
    assert not could_be_prefix(str(uuid.uuid4()))  # a whole id is never resolved
