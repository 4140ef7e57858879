"""What keeps the readers' cost bounded at scale, without Redis: the read script's packed
record, the decoding fast path for plain ASCII JSON, and the live hub taking a board snapshot
only when a task could change what the board shows (1,000 running tasks reporting progress
made it re-read the board at every flush). Figures: benchmarks/reader_scale.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from celery import Celery
from redis.exceptions import NoScriptError, ResponseError

from celery_ext.decoding import NotDecoded, decode_stored
from celery_ext.lookup import METADATA_ONLY_BYTES
from celery_ext.push import Message
from celery_ext.read_script import (
    READ_BATCH_TASKS,
    _batch_size,
    _per_task,
    unpack_record,
)
from celery_ext.records import ACTIVE_READ_LIMIT
from flower_fileintel.live import LiveHub
from flower_fileintel.watchers import BoardWatcher


def _unit_app() -> Celery:
    return Celery("reader-scale-unit", backend="redis://127.0.0.1:1/0", set_as_current=False)


def _pack(items: list[bytes]) -> bytes:
    """What the read script's Lua builds: ``<length>:<bytes>`` per item."""
    return b"".join(str(len(i)).encode() + b":" + i for i in items)


def test_a_packed_record_unpacks_to_hgetalls_flat_list_whatever_its_bytes():
    items = [b"state", b"FAILURE", b"error_message", b"a:b:12:c\n\x00\xff", b"empty", b"", b"name", "é".encode()]
    assert unpack_record(_pack(items)) == items
    assert unpack_record(b"") == []


@pytest.mark.parametrize("packed", [b"5:abc", b"x:abc", b"3abc", b"-1:a"])
def test_a_packed_record_that_is_cut_or_garbled_raises_value_error(packed):
    with pytest.raises(ValueError):
        unpack_record(packed)


def test_the_reply_of_a_read_call_splits_into_one_reply_per_task():
    first = [12, 3600000, b"{}", None, b"", None]
    third = [0, -2, None, None, b"4:rank1:2", b"inf"]
    wrongtype = b"WRONGTYPE Operation against a key script: 3c1d, on @user_script:17."
    reply = [*first, None, None, None, None, None, None, None, wrongtype, *third, None]
    replies = _per_task(reply, 3)
    assert (replies[0], replies[2]) == (first, third)
    assert isinstance(replies[1], ResponseError) and str(replies[1]) == "WRONGTYPE Operation against a key"
    refused = NoScriptError("NOSCRIPT")
    assert _per_task(refused, 2) == [refused, refused]  # what Redis said to the whole call


def test_a_read_batch_brings_at_most_a_few_mib_of_payloads():
    assert _batch_size(METADATA_ONLY_BYTES) == READ_BATCH_TASKS
    assert _batch_size(10 * 1024 * 1024) == 1  # results that may be loaded whole: one per call
    assert _batch_size(1024 * 1024) == 4
    assert _batch_size(0) == READ_BATCH_TASKS


@pytest.mark.parametrize(
    ("payload", "result"),
    [
        (b'{"status": "SUCCESS", "result": "plain ascii"}', "plain ascii"),
        (b'{"status": "SUCCESS", "result": "report-\\udcff.pdf"}', "report-\\udcff.pdf"),
        ('{"status": "SUCCESS", "result": "caf\u00e9"}'.encode(), "caf\u00e9"),
    ],
    ids=["ascii", "escaped-lone-surrogate", "utf8"],
)
def test_decoding_escapes_lone_surrogates_with_or_without_the_ascii_fast_path(payload, result):
    assert decode_stored(_unit_app(), payload, allow_pickle=False)["result"] == result


# -- the live hub ------------------------------------------------------------------------------


class FakeBoard:
    """A board snapshot with the given running ids; counts how often it is taken."""

    def __init__(self, running: list[str]) -> None:
        self.running = running
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        self.taken += 1
        return {"running": [{"task_id": i} for i in self.running]}


def _hub(app: Celery, board: Callable[[], Awaitable[dict[str, Any]]]) -> LiveHub:
    async def describe_many(ids: list[str]) -> list[Any]:
        return []

    hub = LiveHub(app, describe_many, board)
    hub.board_watchers.add(BoardWatcher())  # one viewer on the board
    return hub


def _progress(app: Celery, task_id: str) -> Message:
    meta = {"status": "PROGRESS", "result": {"current": 1, "total": 2}, "task_id": task_id}
    return Message(task_id, app.backend.encode(meta))


def _done(app: Celery, task_id: str) -> Message:
    return Message(task_id, app.backend.encode({"status": "SUCCESS", "result": 1, "task_id": task_id}))


def _ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def _wants_refresh_after(hub: LiveHub, message: Message) -> bool:
    hub._board_refresh_wanted = False
    hub._on_message(message)
    return hub._board_refresh_wanted


def test_progress_of_a_task_a_full_board_left_out_asks_for_one_snapshot_not_one_per_update():
    app = _unit_app()
    shown, older = _ids(ACTIVE_READ_LIMIT), _ids(3)
    board = FakeBoard(shown)
    hub = _hub(app, board)
    asyncio.run(hub._refresh_board())

    assert not _wants_refresh_after(hub, _progress(app, shown[0]))  # on the board: an update
    assert all(_wants_refresh_after(hub, _progress(app, i)) for i in older)  # never seen: ask
    asyncio.run(hub._refresh_board())  # the snapshot still shows the newest ones only
    assert not any(_wants_refresh_after(hub, _progress(app, i)) for i in older)
    # ...and their updates still reach the viewers.
    assert set(older) <= set(hub._board_updates)

    newer = str(uuid.uuid4())
    assert _wants_refresh_after(hub, _progress(app, newer))  # a task that starts now still shows
    assert _wants_refresh_after(hub, _done(app, older[0]))  # an end always refreshes
    assert board.taken == 2


def test_running_tasks_in_any_section_of_the_board_count_as_shown():
    app = _unit_app()
    running, stuck, done = _ids(ACTIVE_READ_LIMIT - 1), str(uuid.uuid4()), str(uuid.uuid4())

    async def snapshot() -> dict[str, Any]:
        return {
            "running": [{"task_id": i, "ready": False} for i in running],
            "stuck": [{"task_id": stuck, "ready": False}],
            "finished": [{"task_id": done, "ready": True}],
        }

    hub = _hub(app, snapshot)
    asyncio.run(hub._refresh_board())
    assert hub._known_on_board == {*running, stuck}
    assert not _wants_refresh_after(hub, _progress(app, stuck))
    older = str(uuid.uuid4())
    assert _wants_refresh_after(hub, _progress(app, older))
    asyncio.run(hub._refresh_board())  # full: 199 running + 1 in another section
    assert not _wants_refresh_after(hub, _progress(app, older))


def test_on_a_board_with_room_a_missing_task_keeps_asking_until_it_shows():
    app = _unit_app()
    board = FakeBoard(_ids(5))
    hub = _hub(app, board)
    asyncio.run(hub._refresh_board())
    late = str(uuid.uuid4())  # its progress came before the worker wrote its start
    assert _wants_refresh_after(hub, _progress(app, late))
    asyncio.run(hub._refresh_board())
    assert _wants_refresh_after(hub, _progress(app, late))
    board.running.append(late)
    asyncio.run(hub._refresh_board())
    assert not _wants_refresh_after(hub, _progress(app, late))


def test_a_failed_snapshot_forgets_no_task_that_asked():
    app = _unit_app()
    board = FakeBoard(_ids(ACTIVE_READ_LIMIT))
    hub = _hub(app, board)
    asyncio.run(hub._refresh_board())
    asking = str(uuid.uuid4())
    assert _wants_refresh_after(hub, _progress(app, asking))

    async def broken() -> dict[str, Any]:
        raise ConnectionError("Redis went away")

    hub._board_snapshot = broken
    asyncio.run(hub._refresh_board())
    hub._board_snapshot = board
    asyncio.run(hub._refresh_board())  # succeeds: the task is now known to be off the board
    assert not _wants_refresh_after(hub, _progress(app, asking))
    assert json.loads(json.dumps(sorted(hub._off_board))) == [asking]


@pytest.mark.parametrize(
    "meta",
    [
        {"status": "PROGRESS", "result": {"current": 1, "total": 2, "message": "caf\u00e9"}},
        {"status": "SUCCESS", "result": datetime(2026, 12, 3, tzinfo=timezone.utc)},  # kombu's "__type__"
        {"status": "SUCCESS", "result": {"__type__": "not kombu's", "__value__": 1, "x": None}},
    ],
    ids=["plain", "kombu-typed", "look-alike-key"],
)
def test_decoding_gives_what_celerys_own_decode_gives(meta):
    app = _unit_app()
    payload = app.backend.encode(meta)
    assert decode_stored(app, payload, allow_pickle=False) == app.backend.decode(payload)


def test_json_that_does_not_decode_is_explained_as_before():
    with pytest.raises(NotDecoded, match="result_serializer='json': DecodeError"):
        decode_stored(_unit_app(), b'{"status": "SUCC', allow_pickle=False)
