"""The pages (``/fileintel``, ``/fileintel/task/<id>``) and the JSON they poll."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from tornado import web

from celery_ext.errors import BackendUnavailable
from celery_ext.status import Outcome, Phase, TaskStatus
from celery_ext.verdict import sentence
from flower_fileintel import metrics
from flower_fileintel.consumers import consumers_of
from flower_fileintel.finished import FINISHED_PHASES
from flower_fileintel.formatting import duration_text, elapsed_s
from flower_fileintel.handlers.base import ApiError, JsonHandler, PageHandler
from flower_fileintel.state import BOARD_FAILURES_LIMIT, BOARD_FINISHED_LIMIT
from flower_fileintel.story import events_task, story_of

#: Results larger than this are not pretty-printed into the detail page (download them).
PAGE_RESULT_MAX_BYTES = 1024 * 1024



PAGE_BANNER: Mapping[Outcome, tuple[str, str] | None] = {
    Outcome.OK: None,
    Outcome.NOT_READY: None,
    Outcome.UNKNOWN: ("secondary", "Unknown task"),
    Outcome.FAILED: ("danger", "Task failed"),
    Outcome.REVOKED: ("secondary", "Task revoked"),
    Outcome.LOST: ("danger", "Task lost with its worker"),
    Outcome.EXPIRED: ("secondary", "Result expired"),
    Outcome.EVICTED: ("warning", "Result gone before its expiry"),
    Outcome.NO_RESULT: ("secondary", "No result stored"),
    Outcome.NOT_READABLE: ("warning", "Result not readable here"),
    Outcome.TOO_LARGE: None,
}


def result_segments(status: TaskStatus) -> list[tuple[str, bool]]:
    """The pretty-printed result split into (text, is_placeholder) runs, for marking."""
    from celery_ext.results import placeholder_text

    text = json.dumps(status.result, indent=2, ensure_ascii=False, allow_nan=False)
    markers = {
        json.dumps(placeholder_text(p.type, p.path), ensure_ascii=False)
        for p in status.result_info.placeholders
    }
    if not markers:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True)))
    segments: list[tuple[str, bool]] = []
    pos = 0
    for match in pattern.finditer(text):
        if match.start() > pos:
            segments.append((text[pos:match.start()], False))
        segments.append((match.group(0), True))
        pos = match.end()
    if pos < len(text):
        segments.append((text[pos:], False))
    return segments


class TaskPageHandler(PageHandler):
    """``/fileintel/task/<id>``: everything about one task, live while it runs."""

    route = "page_task"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        task_id = self.valid_id(task_id)
        status = await self.lookup(task_id, short_ids=True)
        if status.task_id != task_id:  # a short id: show the task under its own address
            from urllib.parse import quote

            self.redirect(self.url_prefix_path(f"/fileintel/task/{quote(status.task_id, safe='')}"))
            return
        metrics.OUTCOMES.labels(self.route, status.outcome.value).inc()
        show_result = (
            status.result_info.inline
            and (status.result_info.bytes or 0) <= PAGE_RESULT_MAX_BYTES
        )
        from celery_ext.settings import result_expires_seconds

        self.render_page(
            "fileintel_task.html",
            status=status,
            doc=status.to_dict(),
            segments=result_segments(status) if show_result else [],
            show_result=show_result,
            page_result_max=PAGE_RESULT_MAX_BYTES,
            expiry_warning=self.plugin.settings.expiry_warning,
            result_expires_setting=result_expires_seconds(self.plugin.capp),
            verdict=PAGE_BANNER[status.outcome],
            verdict_sentence=sentence(status),
            download_url=self.download_url(task_id, page=True),
            raw_url=self.download_url(task_id, page=True, raw=True),
            flower_task_url=self.url_prefix_path(f"/task/{task_id}"),
            story=story_of(events_task(self.application, task_id)),
            queued=await self.queued_notice(status),
            active_tab="fileintel",
        )

    async def queued_notice(self, status: TaskStatus) -> dict[str, Any] | None:
        """For a queued task: its queue, how long it has waited, whether that is longer than
        ``fileintel_stuck_after`` and who consumes its queue (as the board's "stuck" section
        says it). None for any other phase."""
        if status.phase is not Phase.QUEUED:
            return None
        from celery_ext.stuck import queue_of

        try:
            queue = await self.plugin.run(queue_of, self.plugin.capp, status.task_id)
        except BackendUnavailable:  # the status was read a moment ago: show it, queue unknown
            queue = None
        age = elapsed_s(status.queued_at, datetime.now(timezone.utc))
        stuck = age is not None and age > self.plugin.settings.stuck_after
        workers = self.plugin.live_worker_queues()
        if stuck:
            self.plugin.inspect_workers_if_stale(workers)
        return {
            "queue": queue,
            "age_s": age,
            "stuck": stuck,
            "stuck_after_text": duration_text(self.plugin.settings.stuck_after),
            "consumers": consumers_of(queue, workers),
        }


class BoardPageHandler(PageHandler):
    """``/fileintel``: running tasks with live progress, lost and stuck ones, pinned failures, expiring soon and
    recently finished."""

    route = "page_board"

    @web.authenticated
    async def get(self) -> None:
        self.render_page(
            "fileintel_board.html",
            expiry_warning=self.plugin.settings.expiry_warning,
            expiry_warning_text=duration_text(self.plugin.settings.expiry_warning),
            stuck_after_text=duration_text(self.plugin.settings.stuck_after),
            lost_after_text=duration_text(self.plugin.settings.lost_after),
            finished_phases=[p.value for p in FINISHED_PHASES],
            finished_page_size=BOARD_FINISHED_LIMIT,
            failures_limit=BOARD_FAILURES_LIMIT,
            active_tab="fileintel",
        )


class TaskPollHandler(JsonHandler):
    """``/fileintel/task/<id>/status.json``: the status document, for the page's polling."""

    route = "page_task_json"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        status = await self.lookup(self.valid_id(task_id))
        self.write_json(200, status.to_dict())


class BoardPollHandler(JsonHandler):
    """``/fileintel/board.json``: the board snapshot, for the board's polling."""

    route = "page_board_json"

    @web.authenticated
    async def get(self) -> None:
        try:
            snapshot = await self.plugin.board_snapshot(join=True)
        except BackendUnavailable as exc:
            metrics.REDIS_ERRORS.labels("board").inc()
            raise ApiError(503, "backend_unavailable", f"cannot read the board: {exc}") from exc
        self.write_json(200, snapshot)


class FinishedPollHandler(JsonHandler):
    """``/fileintel/finished.json?phase=&name=&q=&page=``: "recently finished" filtered by
    phase, task name and id prefix, paged over the whole finished index."""

    route = "page_finished_json"

    @web.authenticated
    async def get(self) -> None:
        from celery_ext.status import Phase
        from flower_fileintel.finished import MAX_PAGE, FinishedQuery

        phase_text = (self.get_query_argument("phase", "") or "").strip()
        phases = {p.value: p for p in FINISHED_PHASES}
        if phase_text and phase_text not in phases:
            raise ApiError(400, "invalid_argument",
                           f"?phase= must be one of {', '.join(phases)}, not {phase_text[:40]!r}")
        name = (self.get_query_argument("name", "") or "").strip()[:200] or None
        prefix = (self.get_query_argument("q", "") or "").strip() or None
        if prefix is not None:
            prefix = self.valid_id(prefix)
        page = self.query_float("page", 1, MAX_PAGE)
        query = FinishedQuery(
            phase=Phase(phases[phase_text]) if phase_text else None,
            name=name,
            id_prefix=prefix,
            page=int(page) if page is not None else 1,
            page_size=BOARD_FINISHED_LIMIT,
        )
        try:
            body = await self.plugin.finished_page(query)
        except BackendUnavailable as exc:
            metrics.REDIS_ERRORS.labels("board").inc()
            raise ApiError(503, "backend_unavailable", f"cannot read the finished tasks: {exc}") from exc
        self.write_json(200, body)
