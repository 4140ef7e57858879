"""One board snapshot for the readers that ask while it is being taken.

A snapshot of a busy board takes tens of milliseconds of the lookup pool and the GIL. The
live hub takes one whenever the board changes, and every open page without a live
connection polls ``board.json``: when those overlap, each took its own, and each took twice
as long. A polling page can take a snapshot begun a moment before it asked (it is at most
one snapshot's time older than a fresh one, and the page polls every few seconds), so it
joins one in flight. The live hub never joins: it refreshes because something changed, and
needs a snapshot begun after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["InFlight"]

T = TypeVar("T")


class InFlight(Generic[T]):
    """``take(join=...)``: the result of ``produce()``, shared by the callers that join."""

    def __init__(self, produce: Callable[[], Awaitable[T]]) -> None:
        self._produce = produce
        self._current: asyncio.Future[T] | None = None

    async def take(self, *, join: bool) -> T:
        current = self._current
        if not join or current is None:
            current = self._current = asyncio.ensure_future(self._produce())
            current.add_done_callback(self._done)
        # Shielded: a caller that goes away (a closed page) does not cancel it for the others.
        return await asyncio.shield(current)

    def _done(self, future: asyncio.Future[T]) -> None:
        if self._current is future:
            self._current = None
        if not future.cancelled():
            future.exception()  # retrieved here: every caller may have gone
