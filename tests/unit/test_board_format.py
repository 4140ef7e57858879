"""The pages' formats and the board's per-task flags, on hand-built inputs and a fixed clock
(``flower_fileintel.formatting``, ``state.running_entry`` / ``finished_entry``,
``story.story_of``)."""

from __future__ import annotations

import math
import types
from datetime import datetime, timedelta, timezone

import pytest

from celery_ext.status import Phase, Progress, TaskStatus
from flower_fileintel.formatting import (
    STALLED_AFTER_S,
    absolute_text,
    elapsed_s,
    percent_text,
    relative_text,
    runtime_of,
    size_text,
    stalled_for_s,
)
from flower_fileintel.state import finished_entry, running_entry, split_active
from flower_fileintel.story import TaskStory, story_of

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=timezone.utc)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("percent", "text"),
    [(0, "0 %"), (15, "15 %"), (18.3333, "18 %"), (99.9, "99 %"), (100, "100 %"), (140, "100 %"),
     (-3, "0 %"), (None, "—"), (math.nan, "—")],
)
def test_percent_is_whole_and_never_reads_done_early(percent, text):
    assert percent_text(percent) == text


@pytest.mark.parametrize(
    ("nbytes", "text"), [(0, "0 bytes"), (1023, "1023 bytes"), (4300, "4.2 KiB"), (4_404_019, "4.2 MiB")]
)
def test_one_size_format_the_cli_uses_too(nbytes, text):
    from celery_ext.cli.text import size_text as cli_size_text

    assert size_text(nbytes) == text == cli_size_text(nbytes)


def test_relative_times_both_ways_and_absolute_without_microseconds():
    assert relative_text(ago(180), NOW) == "3 min ago"
    assert relative_text(NOW + timedelta(minutes=27), NOW) == "in 27 min"
    assert relative_text(NOW + timedelta(milliseconds=300), NOW) == "just now"
    assert relative_text(ago(2 * 3600 + 60), NOW) == "2 h 1 min ago"
    assert relative_text(None, NOW) == "—"
    assert absolute_text(datetime(2026, 12, 3, 10, 31, 2, 123456, tzinfo=timezone.utc)) == "2026-12-03 10:31:02 UTC"
    assert absolute_text(None) == "—"


def test_runtime_of_a_revoked_task_comes_from_its_start_and_end():
    assert runtime_of(1.5, ago(10), NOW) == 1.5
    assert runtime_of(None, ago(42), NOW) == 42
    assert runtime_of(None, None, NOW) is None
    assert runtime_of(None, NOW, ago(5)) is None  # clocks that disagree: no made-up number


def test_stalled_only_past_the_threshold_and_only_with_progress():
    assert stalled_for_s(ago(STALLED_AFTER_S + 5), NOW) == STALLED_AFTER_S + 5
    assert stalled_for_s(ago(STALLED_AFTER_S), NOW) is None
    assert stalled_for_s(ago(1), NOW) is None
    assert stalled_for_s(None, NOW) is None  # never reported progress: not flagged
    assert stalled_for_s(ago(20), NOW, threshold=10) == 20
    assert elapsed_s(ago(90), NOW) == 90 and elapsed_s(None, NOW) is None


def _running(progress_age: float | None) -> TaskStatus:
    progress = None
    if progress_age is not None:
        progress = Progress(3, 10, 30.0, "step 3", ago(progress_age).isoformat())
    return TaskStatus("t-1", Phase.RUNNING, "PROGRESS", name="n", started_at=ago(300), progress=progress)


def test_running_entry_has_elapsed_time_and_the_stalled_flag():
    fresh = running_entry(_running(5), NOW)
    assert fresh["elapsed_s"] == 300 and fresh["stalled_for_s"] is None
    stale = running_entry(_running(STALLED_AFTER_S * 2), NOW)
    assert stale["stalled_for_s"] == STALLED_AFTER_S * 2
    assert running_entry(_running(None), NOW)["stalled_for_s"] is None
    assert "result" not in fresh


def _active(task_id: str, phase: Phase, state: str = "STARTED", **fields) -> TaskStatus:
    return TaskStatus(task_id, phase, state, name="n", started_at=ago(3 * 3600), **fields)


def test_lost_tasks_leave_running_for_their_own_list_with_when_their_worker_was_seen():
    statuses = [
        _active("run-1", Phase.RUNNING, worker="w1@host"),
        _active("lost-1", Phase.LOST, worker="w2@host", worker_last_seen_at=ago(7200)),
        _active("retry-1", Phase.RETRYING, "RETRY"),
        _active("lost-2", Phase.LOST, worker="w3@host"),  # its worker never beat
        TaskStatus("done-1", Phase.SUCCEEDED, "SUCCESS", name="n"),  # finished since the index was read
    ]
    running, lost = split_active(statuses, NOW)
    assert [e["task_id"] for e in running] == ["run-1", "retry-1"]
    assert [e["task_id"] for e in lost] == ["lost-1", "lost-2"]
    assert lost[0]["phase"] == "lost" and lost[0]["worker"] == "w2@host"
    assert lost[0]["elapsed_s"] == 3 * 3600 and lost[0]["worker_silent_for_s"] == 7200
    assert lost[0]["worker_last_seen_at"] == ago(7200).isoformat()
    assert lost[1]["worker_silent_for_s"] is None and lost[1]["worker_last_seen_at"] is None
    assert "result" not in lost[0]
    assert split_active([], NOW) == ([], [])


def test_the_stalled_threshold_is_the_fileintel_stalled_after_setting():
    from celery import Celery

    from celery_ext.settings import get_settings

    app = Celery("stalled-setting")
    assert get_settings(app).stalled_after == STALLED_AFTER_S == 60
    app.conf.fileintel_stalled_after = 3
    threshold = get_settings(app).stalled_after
    assert running_entry(_running(5), NOW, threshold)["stalled_for_s"] == 5
    assert running_entry(_running(2), NOW, threshold)["stalled_for_s"] is None
    app.conf.fileintel_stalled_after = 0
    with pytest.raises(ValueError, match="fileintel_stalled_after must be a number of seconds > 0"):
        get_settings(app)


def test_finished_entry_shows_a_revoked_tasks_runtime():
    revoked = TaskStatus("t-2", Phase.REVOKED, "REVOKED", started_at=ago(30), completed_at=ago(10))
    assert finished_entry(revoked)["shown_runtime_s"] == 20
    assert finished_entry(revoked)["runtime_s"] is None  # the document itself is unchanged


def test_story_of_an_events_task():
    worker = types.SimpleNamespace(hostname="celery@box")
    task = types.SimpleNamespace(
        uuid="c", args="(1, 2)", kwargs="{'x': '<b>'}", routing_key="files", exchange="",
        parent_id="p", root_id="r", retries=2, worker=worker, eta=None, expires=None, client=None,
    )
    assert story_of(task) == TaskStory(
        args="(1, 2)", kwargs="{'x': '<b>'}", routing_key="files", parent_id="p", root_id="r",
        retries=2, worker="celery@box",
    )
    own_root = types.SimpleNamespace(uuid="c", root_id="c")
    assert story_of(own_root).root_id is None  # a task that is its own root
    assert story_of(None) is None


# --------------------------------------------------------------------------------------------
# "recently finished": filters and paging over the finished index


class FakeIndex:
    """The finished index as find_finished reads it, counting what each read costs."""

    def __init__(self, rows):
        self.rows = rows  # (task id, state, name), newest first
        self.ids_read = 0
        self.fields_read = 0

    def finished_count(self):
        return len(self.rows)

    def finished_ids(self, start, count):
        ids = [r[0] for r in self.rows[start:start + count]]
        self.ids_read += len(ids)
        return ids

    def states_and_names(self, task_ids):
        self.fields_read += len(task_ids)
        by_id = {r[0]: (r[1], r[2]) for r in self.rows}
        return [by_id[i] for i in task_ids]


def _index(n_success=1000, failures_at=(3, 700)):
    rows = [(f"{i:04d}-ok", "SUCCESS", "app.resize") for i in range(n_success)]
    for at in failures_at:
        rows[at] = (f"{at:04d}-bad", "FAILURE", "app.convert")
    return FakeIndex(rows)


def test_unfiltered_pages_read_only_the_page():
    from flower_fileintel.finished import FinishedQuery, find_finished

    index = _index()
    page = find_finished(index, FinishedQuery(page=3, page_size=25))
    assert page.task_ids == [f"{i:04d}-ok" for i in range(50, 75)]
    assert page.has_next and page.index_size == 1000
    assert index.ids_read == 26 and index.fields_read == 0  # the page and one more


def test_phase_filter_finds_failures_deep_in_the_index():
    from flower_fileintel.finished import FinishedQuery, find_finished

    index = _index()
    page = find_finished(index, FinishedQuery(phase=Phase.FAILED, page_size=25))
    assert page.task_ids == ["0003-bad", "0700-bad"] and not page.has_next
    assert index.ids_read == 1000  # bounded by the index, never by what else is in Redis


def test_filters_stop_reading_once_the_page_is_full():
    from flower_fileintel.finished import FinishedQuery, find_finished

    index = _index()
    page = find_finished(index, FinishedQuery(name="RESIZE", page_size=10), chunk=50)
    assert len(page.task_ids) == 10 and page.has_next
    assert index.ids_read == 50  # one chunk was enough


def test_id_prefix_and_paging_together():
    from flower_fileintel.finished import FinishedQuery, find_finished

    index = _index()
    first = find_finished(index, FinishedQuery(id_prefix="00", page_size=40))
    second = find_finished(index, FinishedQuery(id_prefix="00", page=2, page_size=40))
    assert first.task_ids == [r[0] for r in index.rows[:40]] and first.has_next
    assert second.task_ids == [r[0] for r in index.rows[40:80]] and second.has_next
    assert index.fields_read == 0  # an id prefix needs no record fields
    none = find_finished(index, FinishedQuery(id_prefix="zz", page_size=40))
    assert none.task_ids == [] and not none.has_next


def test_the_finished_cache_lets_the_least_recently_shown_go_first():
    """Paging through "finished" must not push out the entries the board shows now."""
    from collections import OrderedDict

    from flower_fileintel import state

    cache = types.SimpleNamespace(_finished_cache=OrderedDict(), _expiry_seen={})
    board = [f"board-{n}" for n in range(state.BOARD_FINISHED_LIMIT)]
    for task_id in board:
        cache._finished_cache[task_id] = {}
        cache._expiry_seen[task_id] = None
    for page in range(10):  # then many pages, each read after the board
        ids = [f"page{page}-{n}" for n in range(25)]
        for task_id in ids:
            cache._finished_cache[task_id] = {}
        state.PluginState._keep_finished(cache, ids)
        state.PluginState._keep_finished(cache, board)
    assert len(cache._finished_cache) == state.FINISHED_CACHE_SIZE
    assert all(task_id in cache._finished_cache for task_id in board)
    assert "page0-0" not in cache._finished_cache  # the least recently shown went first
    assert set(cache._expiry_seen) == set(board)
