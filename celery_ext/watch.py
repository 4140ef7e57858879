"""Waiting for tasks: Redis pub/sub push, a polling fallback, one monotonic deadline.

::

    outcome = celery_ext.wait(app, [id1, id2], timeout=30, on_update=print)
    outcome[id1].phase          # the final status, built from the pushed result
    outcome.timed_out           # True if some task was still unfinished at the deadline
    outcome.raise_for_timeout() # or turn that into a WaitTimeout

Why not ``AsyncResult.get``: it checks its timeout once per 1 s drain loop, never reports the
current state, and leaves the subscription open after a timeout (see DESIGN.md). Here:

- On a Redis result backend, one pub/sub connection is opened for all ids. Each task's meta
  key is also the channel Celery PUBLISHes every state change on. We SUBSCRIBE, wait for
  Redis to confirm, and only then ``describe`` the tasks, so no update between the two reads
  is lost. Each message for a task triggers one more ``describe`` of that task, except the
  final one: it carries the very result Celery has just stored, so the final status is built
  from it and the record already read (``lookup.observe_pushed``), as ``describe`` would
  read it, without another round trip. A final message only a read can interpret (too large,
  not decodable here) is read like the others.
- Pub/sub is at-most-once: after a reconnect every pending task is read again, and a long
  safety re-read (``SAFETY_INTERVAL``) catches a connection that died silently. A healthy
  wait therefore costs a handful of Redis commands per task per minute, not one per poll.
- Other backends are polled with backoff (0.2 s growing to 5 s, with jitter) through the
  same loop: only the "wait for something to happen" step differs.
- One monotonic deadline bounds everything: ``timeout=2`` returns within about 2 s,
  ``timeout=0`` reads once, ``timeout=None`` waits until every task is finished.
- Redis unreachable: retry with backoff until the deadline. If Redis is still unreachable at
  the deadline, raise ``BackendLost`` (a ``BackendUnavailable``); if it came back, the
  outcome simply says which tasks are still unfinished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from celery_ext.errors import BackendLost, BackendUnavailable, WaitTimeout
from celery_ext.push import (
    CONNECT_TIMEOUT,
    Backoff,
    Message,
    parse_message,
    supports_push,
)

if TYPE_CHECKING:
    from celery import Celery

    from celery_ext.classify import Observation
    from celery_ext.status import TaskStatus

__all__ = [
    "wait",
    "WaitResult",
    "WaitTimeout",
    "BackendLost",
    "SAFETY_INTERVAL",
    "POLL_INITIAL",
    "POLL_CAP",
]

logger = logging.getLogger(__name__)

#: Seconds between safety re-reads of every pending task on a healthy pub/sub connection.
#: Long on purpose: pushes carry the news; this only covers a connection that died silently.
#: One re-read is one EVALSHA (plus the 3-4 reads inside the script, which INFO commandstats
#: also counts): at most 5 commands per task per 2 minutes.
SAFETY_INTERVAL = 120.0
#: First delay (seconds) of the polling fallback and of reconnect attempts.
POLL_INITIAL = 0.2
#: Longest delay (seconds) between polls and between reconnect attempts.
POLL_CAP = 5.0

_sleep = time.sleep  # one seam for tests

UpdateCallback = Callable[["TaskStatus"], None]
BackendCallback = Callable[[BackendUnavailable | None], None]


class WaitResult(dict[str, "TaskStatus"]):
    """What ``wait`` returns: ``task_id -> TaskStatus`` (in the order the ids were given).

    Also says how the wait ended: ``timed_out`` is True when the deadline passed while some
    task was not finished (``unfinished`` lists them, in order).
    """

    def __init__(self, statuses: dict[str, TaskStatus], *, timeout: float | None, elapsed_s: float) -> None:
        super().__init__(statuses)
        self.timeout = timeout
        self.elapsed_s = elapsed_s

    @property
    def unfinished(self) -> tuple[str, ...]:
        return tuple(task_id for task_id, status in self.items() if not status.phase.settled)

    @property
    def timed_out(self) -> bool:
        return bool(self.unfinished)

    def raise_for_timeout(self) -> None:
        """Raise ``WaitTimeout`` if some task was not finished at the deadline."""
        if self.timed_out:
            raise WaitTimeout(self)


def wait(
    app: Celery,
    task_ids: str | Iterable[str],
    *,
    timeout: float | None,
    on_update: UpdateCallback | None = None,
    on_backend_change: BackendCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> WaitResult:
    """Wait until every task is settled (succeeded, failed, revoked, or lost with its worker)
    or ``timeout`` passes.

    **Parameters:**

    * **task_ids** - one id or several; duplicates are waited for once.
    * **timeout** - seconds from now; ``0`` reads once, ``None`` waits without limit.
    * **on_update** - called with each task's first status and then with every status that
      differs from the previous one (phase, state, progress, result, error), in order.
    * **on_backend_change** - called with the ``BackendUnavailable`` error when Redis becomes
      unreachable, and with ``None`` when it answers again.
    * **clock** - the monotonic clock every deadline is measured on (tests pass a fake one).

    A worker that dies publishes nothing: running tasks are re-read every
    ``fileintel_lost_after / 2`` seconds, so a lost one ends the wait.

    Unknown ids are waited for like queued ones (a producer without ``install()`` may have
    sent them); they are reported with phase ``unknown`` at the deadline.

    Raises ``InvalidTaskId`` for a malformed id (before any Redis call) and ``BackendLost``
    when Redis is still unreachable at the deadline. A ``KeyboardInterrupt`` closes the
    subscription and propagates.
    """
    ids = _unique([task_ids] if isinstance(task_ids, str) else list(task_ids))
    from celery_ext.ids import validate_task_id
    from celery_ext.lookup import observe_many, observe_pushed, status_of
    from celery_ext.records import store_for
    from celery_ext.status import Phase

    for task_id in ids:
        validate_task_id(task_id)
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")

    started = clock()
    if not ids:
        return WaitResult({}, timeout=timeout, elapsed_s=0.0)
    deadline = None if timeout is None else started + timeout
    # timeout=0 reads once: no subscription to set up and tear down.
    push = timeout != 0 and supports_push(app)
    source = _make_source(app, push, clock)
    recheck_running = store_for(app).settings.lost_after / 2
    last_read = started

    statuses: dict[str, TaskStatus] = {}
    observed: dict[str, Observation] = {}  # each task's facts as last read (or pushed)
    fingerprints: dict[str, tuple[Any, ...]] = {}
    pending = list(ids)
    to_read: set[str] = set(ids)
    retry = _backoff()
    down_since: float | None = None

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - clock())

    def record(fresh: list[TaskStatus]) -> None:
        changed = False
        for status in fresh:
            key = _fingerprint(status)
            if fingerprints.get(status.task_id) != key:
                fingerprints[status.task_id] = key
                changed = True
                if on_update is not None:
                    on_update(status)
            statuses[status.task_id] = status
        if changed:
            source.on_change()

    def went_down(exc: BackendUnavailable) -> None:
        """Drop the connection and plan to read every pending task again once it is back."""
        nonlocal down_since
        source.close()
        to_read.update(pending)
        if down_since is None:
            down_since = clock()
            logger.info("result backend unreachable while waiting: %s", exc)
            if on_backend_change is not None:
                on_backend_change(exc)

    try:
        while True:
            try:
                if not source.connected:
                    left = remaining()
                    source.open(pending, left)
                    to_read.update(pending)  # after any (re)subscribe, read everything again
                if to_read:
                    batch = [task_id for task_id in pending if task_id in to_read]
                    to_read.clear()
                    facts = observe_many(app, batch) if batch else []
                    observed.update((obs.task_id, obs) for obs in facts)
                    record([status_of(app, obs) for obs in facts])
                    last_read = clock()
                if down_since is not None:
                    logger.info("result backend reachable again after %.1f s", clock() - down_since)
                    down_since = None
                    retry.reset()
                    if on_backend_change is not None:
                        on_backend_change(None)
            except BackendUnavailable as exc:
                went_down(exc)
                left = remaining()
                if left is not None and left <= 0:
                    raise BackendLost(
                        exc.url,
                        exc.reason,
                        statuses={i: statuses[i] for i in ids if i in statuses},
                        down_for_s=clock() - (down_since or clock()),
                    ) from exc
                delay = retry.next()
                _sleep(delay if left is None else min(delay, left))
                continue

            pending = [task_id for task_id in pending if not statuses[task_id].phase.settled]
            left = remaining()
            if not pending or (left is not None and left <= 0):
                break
            running = [t for t in pending if statuses[t].phase in (Phase.RUNNING, Phase.RETRYING)]
            if running:
                until_recheck = last_read + recheck_running - clock()
                if until_recheck <= 0:
                    to_read.update(running)
                    continue
                left = until_recheck if left is None else min(left, until_recheck)
            try:
                woke = source.wait(pending, left)
            except BackendUnavailable as exc:
                # Handled like a failed read: the loop reconnects, re-subscribes and re-reads.
                went_down(exc)
                continue
            settled: list[TaskStatus] = []
            unsettled = set(pending)
            for task_id, final in woke.items():
                if task_id not in unsettled:  # settled already: what it said stays
                    continue
                earlier = observed.get(task_id)
                pushed = None if final is None or earlier is None else observe_pushed(app, earlier, final)
                if pushed is None:
                    to_read.add(task_id)
                else:  # the final result, pushed: no read needed (see the module's docstring)
                    observed[task_id] = pushed
                    settled.append(status_of(app, pushed))
            record(settled)
    except BaseException:  # Ctrl-C included: release the connection before propagating
        source.close()
        raise
    source.close(in_background=True)  # the caller has its result now; the socket closes after
    return WaitResult({i: statuses[i] for i in ids}, timeout=timeout, elapsed_s=clock() - started)


# --- sources of "something may have changed" ---------------------------------------------


def _make_source(app: Celery, push: bool, clock: Callable[[], float]) -> _Source:
    return _PushSource(app, clock) if push else _PollSource()


class _Source(Protocol):
    connected: bool

    def open(self, task_ids: list[str], timeout: float | None) -> None:
        """Start listening for ``task_ids``; return once nothing sent from now on is missed."""

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, bytes | None]:
        """Block until something may have changed (at most ``timeout``); return the ids to
        look at again, each with its last pushed payload when it may be final (None: read it)."""

    def on_change(self) -> None:
        """A status changed: a poller looks again soon."""

    def close(self, *, in_background: bool = False) -> None:
        """Release the connection; safe to call twice. ``in_background``: off the caller's path."""


class _PollSource:
    """Backends without pub/sub: re-read every pending task after a growing delay."""

    connected = True

    def __init__(self) -> None:
        self._backoff = _backoff()

    def open(self, task_ids: list[str], timeout: float | None) -> None:
        self.connected = True

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, bytes | None]:
        delay = self._backoff.next()
        # Near the deadline, sleep until it and read a last time rather than give up early.
        _sleep(delay if timeout is None else min(delay, timeout))
        return dict.fromkeys(task_ids)

    def on_change(self) -> None:
        self._backoff.reset()

    def close(self, *, in_background: bool = False) -> None:
        pass


class _PushSource:
    """Redis result backends: one pub/sub connection, SUBSCRIBEd to each task's meta channel."""

    def __init__(self, app: Celery, clock: Callable[[], float] = time.monotonic) -> None:
        from celery_ext.push import Subscriber

        self.app = app
        self._clock = clock
        self.connected = False
        self._subscriber = Subscriber(app)
        self._waited: set[str] = set()
        self._early: dict[str, bytes | None] = {}
        self._next_safety = 0.0

    def open(self, task_ids: list[str], timeout: float | None) -> None:
        from celery_ext.records import meta_key

        self.close()
        self._waited = set(task_ids)
        self._early = {}
        try:
            self._subscriber.connect(timeout)
            self._subscriber.subscribe(meta_key(self.app, task_id) for task_id in task_ids)
            # Only once Redis has confirmed every SUBSCRIBE is a following read race-free.
            confirmed = 0
            deadline = None if timeout is None else self._clock() + max(timeout, 0.05)
            limit = CONNECT_TIMEOUT if timeout is None else min(CONNECT_TIMEOUT, max(timeout, 0.05))
            give_up = self._clock() + limit
            while confirmed < len(task_ids):
                now = self._clock()
                if now >= give_up or (deadline is not None and now >= deadline):
                    raise TimeoutError("Redis did not confirm the subscription in time")
                message = self._subscriber.get_raw(timeout=give_up - now)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    confirmed += 1
                else:
                    # Sent before the first read, which will see it: read, never decode.
                    self._note(parse_message(self.app, message), self._early, keep_data=False)
        except Exception as exc:  # redis ConnectionError/TimeoutError, OSError
            self.close()
            raise _unavailable(self.app, exc) from exc
        self.connected = True
        self._next_safety = self._clock() + SAFETY_INTERVAL

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, bytes | None]:
        woke, self._early = self._early, {}
        if woke:
            return woke
        now = self._clock()
        if now >= self._next_safety:
            self._next_safety = now + SAFETY_INTERVAL
            return dict.fromkeys(task_ids)
        block = self._next_safety - now if timeout is None else min(timeout, self._next_safety - now)
        try:
            message = self._subscriber.get_raw(timeout=block)
            while message is not None:
                self._note(parse_message(self.app, message), woke, keep_data=True)
                message = self._subscriber.get_raw(timeout=0)
        except Exception as exc:
            self.close()
            raise _unavailable(self.app, exc) from exc
        if not woke and self._clock() >= self._next_safety:
            self._next_safety = self._clock() + SAFETY_INTERVAL
            return dict.fromkeys(task_ids)
        return woke

    def on_change(self) -> None:
        pass

    def close(self, *, in_background: bool = False) -> None:
        self.connected = False
        self._subscriber.close(in_background=in_background)

    def _note(self, message: Message | None, into: dict[str, bytes | None], *, keep_data: bool) -> None:
        """Remember a message for a waited task: its payload (the latest wins) when ``keep_data``."""
        if message is not None and message.task_id in self._waited:
            into[message.task_id] = message.data if keep_data else None


# --- helpers -----------------------------------------------------------------------------


def _backoff() -> Backoff:
    """Between polls and reconnect attempts: 0.2 s growing to 5 s."""
    return Backoff(POLL_INITIAL, POLL_CAP)


def _unique(task_ids: list[str]) -> list[str]:
    return list(dict.fromkeys(task_ids))


def _fingerprint(status: TaskStatus) -> tuple[Any, ...]:
    """What makes a status worth reporting again (not ``expires_in_s``, which ticks)."""
    return (
        status.phase,
        status.state,
        status.progress,
        status.completed_at,
        status.result_available,
        status.expired,
        status.error,
        status.worker,
        status.retries,
    )


def _backend_url(app: Celery) -> str:
    backend = app.backend
    url = getattr(backend, "url", None) or app.conf.result_backend or ""
    return str(url)


def _unavailable(app: Celery, exc: BaseException) -> BackendUnavailable:
    if isinstance(exc, BackendUnavailable):
        return exc
    return BackendUnavailable(_backend_url(app), f"{type(exc).__name__}: {exc}")
