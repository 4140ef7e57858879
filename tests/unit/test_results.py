"""results.make_json_safe: one pass, never raises, output always strict JSON."""

from __future__ import annotations

import datetime
import decimal
import io
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from celery_ext.results import make_json_safe, placeholder_text


def strict_dumps(value):
    return json.dumps(value, allow_nan=False)


def test_plain_json_passes_through_unchanged():
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
    safe = make_json_safe(value)
    assert safe.value == value
    assert safe.placeholders == ()


def test_each_non_json_value_becomes_a_listed_placeholder_with_its_path():
    value = {
        "tags": {"a"},
        "blob": b"\x00",
        "when": datetime.date(2026, 1, 1),
        "price": decimal.Decimal("1.1"),
        "nan": float("nan"),
        "inf": -math.inf,
        "items": [1, object()],
        "file": io.BytesIO(b"x"),
        "odd key": complex(1, 2),
    }
    safe = make_json_safe(value)
    strict_dumps(safe.value)
    paths = {p.path: p.type for p in safe.placeholders}
    assert paths == {
        "$.tags": "set",
        "$.blob": "bytes",
        "$.when": "datetime.date",
        "$.price": "decimal.Decimal",
        "$.nan": "float",
        "$.inf": "float",
        "$.items[1]": "object",
        "$.file": "_io.BytesIO",
        "$['odd key']": "complex",
    }
    assert safe.value["tags"] == placeholder_text("set", "$.tags")
    assert safe.value["items"][0] == 1


def test_tuples_become_lists_and_json_keys_are_converted_like_json_dumps():
    # False, not True: True == 1 would silently merge with the key 1 in the literal.
    safe = make_json_safe({1: (1, 2), None: 1, False: 2, 2.5: 3})
    assert safe.value == json.loads(json.dumps({1: [1, 2], None: 1, False: 2, 2.5: 3}))
    assert safe.placeholders == ()


def test_non_string_keys_json_cannot_hold_are_placeholders():
    safe = make_json_safe({(1, 2): "x"})
    assert [p.path for p in safe.placeholders] == ["$ key"]
    strict_dumps(safe.value)


def test_cycles_and_deep_nesting_do_not_recurse_forever():
    loop: list = []
    loop.append(loop)
    safe = make_json_safe(loop)
    assert safe.placeholders[0].repr == "refers to itself"
    deep: list = []
    cur = deep
    for _ in range(5000):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    assert make_json_safe(deep).placeholders[0].repr == "nested too deeply"


def test_a_broken_repr_does_not_break_validation():
    class Nasty:
        def __repr__(self):
            raise RuntimeError("no")

    safe = make_json_safe([Nasty()])
    assert "Nasty" in safe.placeholders[0].repr


anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # includes NaN and infinities
    | st.text()
    | st.binary()
    | st.decimals()
    | st.datetimes()
    | st.complex_numbers(),
    lambda children: st.lists(children)
    | st.tuples(children, children)
    | st.frozensets(st.integers())
    | st.dictionaries(st.text() | st.integers() | st.booleans(), children),
    max_leaves=30,
)


@settings(deadline=None)  # examples: the profile in tests/conftest.py
@given(anything)
def test_any_value_becomes_strict_json_and_never_raises(value):
    safe = make_json_safe(value)
    text = strict_dumps(safe.value)
    assert json.loads(text) == safe.value
    for placeholder in safe.placeholders:
        assert placeholder.path.startswith("$")
        assert len(placeholder.repr) <= 200


def test_placeholders_already_in_a_stored_result_are_found_again():
    from celery_ext.results import find_placeholders

    stored = {"a": [placeholder_text("set", "$.a[0]")], "b": "<placeholder is just text>"}
    found = find_placeholders(stored)
    assert [(p.path, p.type) for p in found] == [("$.a[0]", "set")]
