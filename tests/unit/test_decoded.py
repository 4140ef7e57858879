"""``lookup._Decoded``: unchanged bytes are decoded once; a final result is never shared."""

from __future__ import annotations

import json

import pytest
from celery import Celery

from celery_ext import lookup


@pytest.fixture
def app() -> Celery:
    return Celery("decoded", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")


@pytest.fixture
def decodes(monkeypatch) -> list[bytes]:
    """The payloads actually decoded."""
    seen: list[bytes] = []
    real = lookup._decode_meta

    def counting(app, payload, allow_pickle):
        seen.append(payload)
        return real(app, payload, allow_pickle)

    monkeypatch.setattr(lookup, "_decode_meta", counting)
    return seen


def _meta(status: str, result: object) -> bytes:
    return json.dumps({"status": status, "result": result, "task_id": "t"}).encode()


def test_unchanged_progress_is_decoded_once_and_shared_read_only(app, decodes):
    cache = lookup._Decoded()
    payload = _meta("PROGRESS", {"current": 3, "total": 10})
    first, _ = cache.meta(app, payload, allow_pickle=False)
    again, _ = cache.meta(app, bytes(payload), allow_pickle=False)  # the same bytes, read again
    assert decodes == [payload] and again == first
    with pytest.raises(TypeError):
        again["status"] = "SUCCESS"  # type: ignore[index]
    cache.meta(app, _meta("PROGRESS", {"current": 4, "total": 10}), allow_pickle=False)
    assert len(decodes) == 2  # changed bytes: decoded again


def test_a_final_result_and_a_large_payload_are_decoded_every_time(app, decodes):
    cache = lookup._Decoded()
    final = _meta("SUCCESS", {"rows": [1, 2, 3]})
    large = _meta("PROGRESS", {"note": "x" * (lookup._Decoded.MAX_BYTES + 1)})
    for payload in (final, final, large, large):
        meta, _ = cache.meta(app, payload, allow_pickle=False)
        assert isinstance(meta, dict)  # the caller's own
    assert decodes == [final, final, large, large]


def test_records_are_kept_by_their_bytes_and_the_oldest_go_first(app):
    cache = lookup._Decoded()
    cache.MAX_ENTRIES = 2
    packed = [b"5:state7:STARTED4:rank1:2" + b"4:name%d:%s" % (len(n), n) for n in (b"a", b"bb", b"ccc")]
    first = cache.record(packed[0], None)
    assert first is not None and first.state == "STARTED" and cache.record(packed[0], None) is first
    cache.record(packed[1], None)
    cache.record(packed[2], None)
    assert cache.record(packed[0], None) is not first  # evicted, decoded anew
    assert cache.record(packed[0], None) == first
