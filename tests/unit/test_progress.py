"""progress.normalize_progress: every shape seen in the wild, every correction listed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from celery_ext.progress import normalize_progress, progress_meta


def test_our_own_meta_reads_back_without_corrections():
    progress = normalize_progress(progress_meta(3, 10, "resizing"))
    assert (progress.current, progress.total, progress.percent, progress.message) == (3, 10, 30.0, "resizing")
    assert progress.updated_at is not None
    assert progress.issues == ()


def test_celery_progress_shape_is_read():
    progress = normalize_progress({"current": 5, "total": 20, "percent": 25, "description": "half way"})
    assert (progress.percent, progress.message, progress.updated_at) == (25.0, "half way", None)
    assert progress.issues == ()


def test_percentage_timestamp_shape_is_read():
    progress = normalize_progress({"current": 1, "total": 4, "percentage": 25, "message": "m", "timestamp": 0})
    assert progress.percent == 25.0
    assert progress.updated_at == "1970-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("meta", "expected", "issue"),
    [
        ({"current": "7", "total": "10"}, (7, 10, 70.0), "current was the string '7'; parsed"),
        ({"current": -3, "total": 10}, (0, 10, 0.0), "current -3 is negative; set to 0"),
        ({"current": 15, "total": 10}, (10, 10, 100.0), "current 15 is above total 10; capped"),
        ({"current": 1, "total": 10, "percent": 250}, (1, 10, 10.0), "percent 250 is above 100; recomputed"),
        ({"percent": 250}, (None, None, 100.0), "percent 250 is above 100; capped"),
        ({"current": 1, "total": 10, "percent": 90}, (1, 10, 10.0), "percent 90 disagrees with current/total (10.00); recomputed"),
        ({"current": 1, "total": -5}, (1, None, None), "total -5 is negative; set to 0"),
        ({"current": "lots"}, (None, None, None), "current 'lots' is not a number; ignored"),
        ({"current": True}, (None, None, None), "current is a boolean; ignored"),
    ],
)
def test_corrections_are_made_and_listed(meta, expected, issue):
    progress = normalize_progress(meta)
    assert (progress.current, progress.total, progress.percent) == expected
    assert issue in progress.issues


def test_celery_progress_unknown_total_is_read_without_a_correction():
    progress = normalize_progress({"pending": False, "current": 3, "total": 0, "percent": 0, "description": "scanning"})
    assert (progress.current, progress.total, progress.percent, progress.message) == (3, None, None, "scanning")
    assert progress.issues == ()


@pytest.mark.parametrize("total", [None, 0])
def test_progress_without_a_total_is_written_in_celery_progress_shape(total):
    """celery-progress's JS draws ``percent + "%"`` and its GroupProgress adds up ``current``
    and ``total``: both must be numbers (its own recorder writes total 0, percent 0)."""
    meta = progress_meta(3, total, "scanning")
    assert (meta["pending"], meta["current"], meta["total"], meta["percent"]) == (False, 3, 0, 0.0)
    assert meta["description"] == "scanning"
    assert normalize_progress(meta).issues == ()


def test_long_messages_are_cut_and_missing_times_stay_unknown():
    progress = normalize_progress({"message": "x" * 600})
    assert len(progress.message) == 500
    assert "message was 600 characters; cut to 500" in progress.issues
    assert progress.updated_at is None


def test_naive_timestamps_are_read_as_utc_and_garbage_is_ignored():
    assert normalize_progress({"updated_at": "2026-01-01T10:00:00"}).updated_at == "2026-01-01T10:00:00+00:00"
    progress = normalize_progress({"updated_at": "yesterday"})
    assert progress.updated_at is None and progress.issues


def test_a_non_object_is_no_progress():
    progress = normalize_progress(["not", "a", "dict"])
    assert progress.current is None and progress.issues


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
progressish = st.dictionaries(
    st.sampled_from(["current", "total", "percent", "percentage", "message", "description", "timestamp", "updated_at", "done", "count"]),
    json_values,
)


@settings(deadline=None)  # examples: the profile in tests/conftest.py
@given(st.one_of(json_values, progressish))
def test_normalisation_never_raises_and_output_is_in_range(meta):
    progress = normalize_progress(meta)
    if progress.percent is not None:
        assert 0 <= progress.percent <= 100
    if progress.current is not None:
        assert progress.current >= 0
    if progress.current is not None and progress.total is not None:
        assert progress.current <= progress.total
    if progress.message is not None:
        assert len(progress.message) <= 500
    json.dumps([progress.current, progress.total, progress.percent, progress.message, progress.updated_at], allow_nan=False)
