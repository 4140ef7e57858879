"""The board's "recently finished" with filters and paging over the whole finished index.

Without a filter a page is one range read of the index (cost: the page size). With filters
the index is read in chunks, newest first, until the page is full: by id prefix on the ids
alone, by phase and task name on two record fields fetched per chunk in one round trip. The
index holds at most ``FINISHED_INDEX_SIZE`` ids, so a filtered page never reads more than
that, whatever the number of tasks in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from celery_ext.status import Phase, classify

__all__ = ["FinishedQuery", "FinishedPage", "find_finished", "FINISHED_PHASES", "SCAN_CHUNK", "MAX_PAGE"]

#: The phases a finished task can have (what the phase filter offers).
FINISHED_PHASES = (Phase.SUCCEEDED, Phase.FAILED, Phase.REVOKED)
#: Ids read per round trip while filtering.
SCAN_CHUNK = 200
#: Pages beyond this are refused (the index holds about 1,000 ids: 40 pages of 25).
MAX_PAGE = 1000


class FinishedIndex(Protocol):
    """What find_finished reads (``celery_ext.records.RecordStore`` provides it)."""

    def finished_count(self) -> int: ...

    def finished_ids(self, start: int, count: int) -> list[str]: ...

    def states_and_names(self, task_ids: list[str]) -> list[tuple[str | None, str | None]]: ...


@dataclass(frozen=True)
class FinishedQuery:
    """Filters (None: any) and a 1-based page."""

    phase: Phase | None = None
    name: str | None = None  # a case-insensitive part of the task name
    id_prefix: str | None = None
    page: int = 1
    page_size: int = 25

    @property
    def filtered(self) -> bool:
        return bool(self.phase or self.name or self.id_prefix)


@dataclass(frozen=True)
class FinishedPage:
    task_ids: list[str]
    page: int
    page_size: int
    has_next: bool
    index_size: int
    scanned: int  # ids read to build this page (bounded by the index size)


def _matches(query: FinishedQuery, state: str | None, name: str | None) -> bool:
    if query.phase is not None and classify(state) is not query.phase:
        return False
    if query.name and query.name.casefold() not in (name or "").casefold():
        return False
    return True


def find_finished(index: FinishedIndex, query: FinishedQuery, chunk: int = SCAN_CHUNK) -> FinishedPage:
    """The ids on ``query``'s page, newest first, and whether there is a next page."""
    size = index.finished_count()
    skip = (query.page - 1) * query.page_size
    want = skip + query.page_size + 1  # one more than the page: is there a next one?
    if not query.filtered:
        ids = index.finished_ids(skip, query.page_size + 1)
        return FinishedPage(ids[: query.page_size], query.page, query.page_size,
                            len(ids) > query.page_size, size, len(ids))
    found: list[str] = []
    start = scanned = 0
    while len(found) < want and start < size:
        ids = index.finished_ids(start, chunk)
        if not ids:
            break
        start += chunk
        scanned += len(ids)
        if query.id_prefix:
            ids = [i for i in ids if i.startswith(query.id_prefix)]
        if ids and (query.phase is not None or query.name):
            fields = index.states_and_names(ids)
            ids = [i for i, (state, name) in zip(ids, fields) if _matches(query, state, name)]
        found.extend(ids)
    page = found[skip: skip + query.page_size]
    return FinishedPage(page, query.page, query.page_size, len(found) > skip + query.page_size, size, scanned)
