"""``POST /api/fileintel/task/<id>/keep?for=7d``: keep one result longer, from Flower.

Protected exactly like Flower's own task actions (``POST /api/task/revoke/<id>``): an API
handler (Flower's ``BaseApiHandler``: basic auth or an OAuth session, or
``FLOWER_UNAUTHENTICATED_API`` on an instance without either) with
``@tornado.web.authenticated``, and Flower's cross-site checks on POST (same origin; the
``_xsrf`` token with an OAuth session). GET changes nothing: it answers 405.

``celery_ext.keep`` (``celery_ext/keeping.py``) decides what can be kept; this handler only maps its answer to HTTP
with ``KEEP_API``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

from tornado import web

from celery_ext.status import Outcome
from flower_fileintel.handlers.base import ApiError, ApiHandler, id_lookup_errors

__all__ = ["KeepApiHandler", "KEEP_API"]

#: A refused keep's HTTP status and error code, by the task's outcome. Outcomes whose result
#: is stored are not refused (200), unless the result expires in between (410).
KEEP_API: Mapping[Outcome, tuple[int, str]] = {
    **{outcome: (200, "kept") for outcome in (
        Outcome.OK, Outcome.TOO_LARGE, Outcome.NOT_READABLE, Outcome.FAILED, Outcome.REVOKED, Outcome.LOST
    )},
    Outcome.EXPIRED: (410, "result_expired"),
    Outcome.EVICTED: (410, "result_evicted"),
    Outcome.NO_RESULT: (404, "no_result"),
    Outcome.UNKNOWN: (404, "unknown_task"),
    Outcome.NOT_READY: (409, "not_finished"),
}


class KeepApiHandler(ApiHandler):
    """``POST /api/fileintel/task/<id>/keep`` with ``for`` (``90s``, ``30m``, ``12h``,
    ``7d``; query or form field): ``{"task_id", "kept", "verdict", "result_expires_at",
    "requested_s", "message"}``; errors as every plugin API error."""

    route = "api_keep"

    @web.authenticated
    async def get(self, task_id: str) -> None:
        error = ApiError(
            405, "method_not_allowed",
            "keeping a result changes it, so it takes a POST: POST this address with for=7d "
            "(a duration: 90s, 30m, 12h or 7d)",
        )
        self.set_header("Allow", "POST")  # answered here: raising would clear the header
        self.write_json(405, error.body())

    def refuse_cross_site(self) -> None:
        """Flower's own cross-site check on POST (``BaseHandler.check_xsrf_cookie`` from Flower
        2.1), made here as well so a keep is protected alike on Flower 2.0, which has none:
        with authentication on, a page of another site cannot use the browser's login."""
        options = self.application.options
        if not (options.basic_auth or options.auth):
            return
        site = self.request.headers.get("Sec-Fetch-Site")
        origin = self.request.headers.get("Origin")
        if (site and site != "same-origin") or (not site and origin and urlparse(origin).netloc != self.request.host):
            raise ApiError(
                403, "cross_site",
                "a keep must come from Flower's own pages or a client of its API, not from another site",
            )

    @web.authenticated
    async def post(self, task_id: str) -> None:
        from celery_ext.keeping import (
            InvalidDuration,
            KeepRefused,
            keep,
            parse_duration,
        )

        self.refuse_cross_site()
        task_id = self.valid_id(task_id)
        raw = self.get_body_argument("for", None) or self.get_query_argument("for", None)
        if not raw:
            raise ApiError(400, "invalid_argument", "say how long to keep the result: for=7d (90s, 30m, 12h or 7d)")
        try:
            seconds = parse_duration(raw)
        except InvalidDuration as exc:
            raise ApiError(400, "invalid_duration", str(exc)) from exc
        try:
            with id_lookup_errors(f"cannot keep task {task_id}'s result"):
                kept = await self.plugin.run(keep, self.plugin.capp, task_id, seconds)
        except KeepRefused as exc:
            if exc.reason is None:
                raise ApiError(501, "keep_unsupported", str(exc)) from exc
            status_code, code = KEEP_API[exc.reason]
            raise ApiError(status_code, code, str(exc), task=exc.status.to_dict()) from exc
        self.write_json(200, kept.to_dict())
