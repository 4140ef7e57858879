"""``celery_ext.push`` on its own: decoding pushed updates, parsing messages, backoff, which
backends push. No Redis: the apps here point at a port nothing listens on."""

from __future__ import annotations

import pytest
from celery import Celery

from celery_ext import push
from celery_ext.status import Phase


def _unit_app(**conf):
    app = Celery("push-unit", backend="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.update(**conf)
    return app


def test_decode_update_applies_the_progress_message_limit():
    app = _unit_app(fileintel_progress_message_max=10)
    data = app.backend.encode({"status": "PROGRESS", "result": {"current": 1, "total": 4, "message": "m" * 50}})
    update = push.decode_update(app, push.Message("t1", data))
    assert update is not None and update.phase is Phase.RUNNING and update.state == "PROGRESS"
    assert update.progress is not None and update.progress.percent == 25.0
    assert update.progress.message == "m" * 10
    assert any("message" in issue for issue in update.progress.issues)


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"no_status": 1}',
        b'{"status": ["a", "list"]}',
        b'"a bare string"',
    ],
)
def test_decode_update_leaves_what_it_cannot_read_to_a_real_read(data):
    assert push.decode_update(_unit_app(), push.Message("t1", data)) is None


def test_a_large_message_is_not_decoded():
    app = _unit_app()
    big = app.backend.encode({"status": "SUCCESS", "result": "x" * (push.SMALL_MESSAGE + 1)})
    assert push.decode_update(app, push.Message("t1", big)) is None


def test_parse_message_keeps_only_task_channels():
    app = _unit_app()
    channel = app.backend.get_key_for_task("t1")
    assert push.parse_message(app, {"type": "message", "channel": channel, "data": b"x"}) == push.Message("t1", b"x")
    assert push.parse_message(app, {"type": "pmessage", "channel": channel, "data": "x"}) == push.Message("t1", b"x")
    assert push.parse_message(app, {"type": "subscribe", "channel": channel, "data": 1}) is None
    assert push.parse_message(app, {"type": "message", "channel": b"other", "data": b"x"}) is None
    assert push.parse_message(app, None) is None


def test_backoff_grows_to_its_cap_and_resets():
    backoff = push.Backoff(0.5, 4.0, factor=2.0)
    delays = [backoff.next() for _ in range(8)]
    assert 0.4 <= delays[0] <= 0.6 and max(delays) <= 4.0 and delays[-1] >= 3.2
    backoff.reset()
    assert backoff.next() <= 0.6


def test_only_redis_backends_push():
    assert push.supports_push(_unit_app())
    assert not push.supports_push(Celery("rpc", backend="rpc://", set_as_current=False))
