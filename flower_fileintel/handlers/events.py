"""Server-Sent Events for the pages: a task's status documents, the board's snapshots and
progress."""

from __future__ import annotations

import asyncio
import json
import time

from tornado import web
from tornado.iostream import StreamClosedError

from flower_fileintel.handlers.base import JsonHandler

#: SSE keep-alive comment interval.
KEEPALIVE_S = 15.0



class EventStreamHandler(JsonHandler):
    """Server-Sent Events plumbing: headers, events, keep-alives, disconnect detection."""

    _closed: asyncio.Event | None = None

    def start_stream(self) -> None:
        self._closed = asyncio.Event()
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        self.write("retry: 3000\n\n")

    def on_connection_close(self) -> None:
        if self._closed is not None:
            self._closed.set()

    async def send(self, event: str, data: str) -> None:
        self.write(f"event: {event}\ndata: {data}\n\n")
        await self.flush()

    async def next_wakeup(self, event: asyncio.Event) -> bool:
        """Wait for ``event``; send a keep-alive every 15 s. False once the client is gone."""
        assert self._closed is not None
        while not event.is_set():
            if self._closed.is_set():
                return False
            closed = asyncio.ensure_future(self._closed.wait())
            woke = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({closed, woke}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                woke.cancel()
            if self._closed.is_set():
                return False
            if not event.is_set():
                self.write(": keep-alive\n\n")
                await self.flush()
        return True


class TaskEventsHandler(EventStreamHandler):
    """``/fileintel/task/<id>/events``: SSE ``status`` events (full documents), then ``end``."""

    route = "page_task_events"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        task_id = self.valid_id(task_id)
        hub = self.plugin.hub
        self.start_stream()
        try:
            with hub.watch_task(task_id) as watcher:
                await hub.wait_connected(1.0)
                await self.send("hello", json.dumps({"push": hub.connected}))
                while await self.next_wakeup(watcher.event):
                    text = watcher.take()
                    if text is not None:
                        await self.send("status", text)
                    if watcher.ready:
                        await self.send("end", "{}")
                        break
        except StreamClosedError:
            return
        self.finish()


class BoardEventsHandler(EventStreamHandler):
    """``/fileintel/events``: SSE ``board`` snapshots, coalesced ``progress`` batches, and a
    ``problem`` event when the board cannot be refreshed (it keeps retrying)."""

    route = "page_board_events"

    @web.authenticated
    async def get(self) -> None:
        hub = self.plugin.hub
        self.start_stream()
        try:
            with hub.watch_board() as watcher:
                await hub.wait_connected(1.0)
                await self.send("hello", json.dumps({"push": hub.connected}))
                while await self.next_wakeup(watcher.event):
                    problem = watcher.take_problem()
                    if problem is not None:
                        await self.send("problem", json.dumps({"message": problem, "retrying": True}))
                    snapshot, updates = watcher.take()
                    if snapshot is not None:
                        await self.send("board", snapshot)
                    if updates:
                        await self.send(
                            "progress",
                            json.dumps({"tasks": list(updates.values()), "sent_at": time.time()}, allow_nan=False),
                        )
        except StreamClosedError:
            return
        self.finish()
