from __future__ import annotations

import pytest

from celery_ext import InvalidTaskId
from celery_ext.ids import validate_task_id


@pytest.mark.parametrize(
    ("task_id", "says"),
    [
        ("", "empty"),
        ("a" * 10_000, "10000 characters"),
        ("abc\x00def", "'\\x00'"),
        ("abc\ndef", "'\\n'"),
        ("has space", "' '"),
        ("celery-*", "pattern"),
        ("a?b", "pattern"),
        ("[ab]", "pattern"),
        ("ünïcode", "printable ASCII"),
        (None, "must be a string"),
    ],
)
def test_malformed_ids_are_rejected_with_a_message_that_says_why(task_id, says):
    with pytest.raises(InvalidTaskId, match=None) as info:
        validate_task_id(task_id)
    assert says in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("task_id", ["d3b07384-d113-4ec6-a8c6-1b7c5f3e2a11", "my-app:job/42", "x"])
def test_real_ids_pass(task_id):
    assert validate_task_id(task_id) == task_id


def test_the_fast_check_accepts_exactly_the_characters_the_detailed_rules_do():
    from celery_ext import ids

    for char in [chr(code) for code in range(0x250)] + ["\u2028", "\U0001f600"]:
        by_rules = bool(ids._ALLOWED.fullmatch(char)) and char not in ids._GLOB
        assert bool(ids._VALID.fullmatch(char)) == by_rules, repr(char)
