"""The JSON API: ``/api/fileintel/task/<id>`` (the status document) and ``.../result``."""

from __future__ import annotations

import asyncio
import json
import time

from tornado import web

from celery_ext.status import Outcome, TaskStatus
from flower_fileintel import metrics
from flower_fileintel.handlers.base import ApiHandler

#: ``?wait=`` is capped at this many seconds.
MAX_WAIT_S = 30.0



class StatusApiHandler(ApiHandler):
    """``GET /api/fileintel/task/<id>``: the ``fileintel.task-status/1`` document."""

    route = "api_status"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        status = await self.lookup(self.valid_id(task_id), short_ids=True)
        metrics.OUTCOMES.labels(self.route, status.outcome.value).inc()
        self.write_json(200, status.to_dict())


class ResultApiHandler(ApiHandler):
    """``GET /api/fileintel/task/<id>/result[?wait=S]``: the bare validated return value.

    The status and error code come from ``RESULT_API`` (one row per outcome). ``?wait=S`` (capped at 30)
    waits by push: the request parks on the live hub, not on a thread.
    """

    route = "api_result"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        task_id = self.valid_id(task_id)
        wait = self.query_float("wait", 0.0, MAX_WAIT_S) or 0.0
        status = await self.lookup(task_id)
        if wait > 0 and not status.phase.settled:
            status = await self._wait(task_id, status, wait)
        metrics.OUTCOMES.labels(self.route, status.outcome.value).inc()
        if status.outcome is Outcome.NOT_READY:
            self.set_header("Retry-After", "1")
            self.write_json(202, status.to_dict())
            return
        error = self.status_error(status)
        if error is not None:
            raise error
        body = json.dumps(status.result, allow_nan=False).encode()
        metrics.RESULT_BYTES.labels(self.route).inc(len(body))
        self.set_header("X-FileIntel-Result-Bytes", str(status.result_info.bytes or 0))
        self.set_header("X-FileIntel-Placeholders", str(len(status.result_info.placeholders)))
        self.set_status(200)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
        self.plugin.mark_fetched(status.task_id)

    async def _wait(self, task_id: str, status: TaskStatus, seconds: float) -> TaskStatus:
        """Wait for a final state until a monotonic deadline. Subscribe first, then re-read,
        so nothing published in between is lost; the hub wakes us on each change."""
        deadline = time.monotonic() + seconds
        hub = self.plugin.hub
        with hub.watch_task(task_id, kind="wait") as watcher:
            status = await self.lookup(task_id)
            while not status.phase.settled:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(watcher.event.wait(), timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    if hub.connected:
                        continue
                    # No push: poll, gently, without holding a thread between polls.
                watcher.take()
                if watcher.ready or not hub.connected:
                    status = await self.lookup(task_id)
            if not status.phase.settled:
                # Timed out: answer with what is true now. Pushes only carry the backend's
                # state changes, not the records (an unknown id may be queued by now).
                status = await self.lookup(task_id)
        return status
