"""``install(app)``: the worker bootstep, and the app's settings and signal receivers.

``install`` registers the ``fileintel_*`` setting defaults, the bootstep (``FileIntelStep``:
the record writer and the liveness beat of the worker's main process), the signal receivers
that write task records (``receivers.py``, also in spawned pool children) and the measure of
Celery's result writes (``measure.py``), with which a successful task's end rides along.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps

from celery_ext.installed import RECEIVERS_MODULE, install_ran, mark_installed
from celery_ext.measure import wrap_redis_backend
from celery_ext.receivers import end_riding_along  # the import connects them
from celery_ext.records import store_for
from celery_ext.settings import DEFAULTS, get_settings
from celery_ext.writer import flush_all, writer_for

__all__ = ["install", "FileIntelStep"]

logger = logging.getLogger(__name__)


def install(app: Celery) -> Celery:
    """Make ``app`` record task lifecycles for ``celery_ext.describe``.

    Registers the ``fileintel_*`` setting defaults, the worker bootstep, and the signal
    receivers (also in spawned pool children). Safe to call more than once, before or after
    the app is configured. Returns ``app``.
    """
    if install_ran(app):
        return app
    app.add_defaults(DEFAULTS)
    wrap_redis_backend(end_riding_along)
    _on_configured(app)
    # config_from_object() after install() reloads the configuration: apply ours again then.
    app.on_after_configure.connect(_on_configured, weak=False)
    app.steps["worker"].add(FileIntelStep)
    mark_installed(app)
    return app


def _on_configured(sender: Celery, **_: Any) -> None:
    get_settings(sender)  # fail early on a bad setting value, at import, not in a task
    imports = tuple(sender.conf.imports or ())
    if RECEIVERS_MODULE not in imports:
        # Spawned pool children import conf.imports: that connects our receivers there too.
        sender.conf.imports = imports + (RECEIVERS_MODULE,)


class FileIntelStep(bootsteps.StartStopStep):
    """Owns the record writer and the liveness beat of the worker's main process."""

    label = "fileintel"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        from celery_ext.liveness import new_incarnation

        super().__init__(parent, **kwargs)
        # Before any step starts, so pool children (forked or spawned later) inherit it.
        self.incarnation = new_incarnation()
        self.heartbeat: Any = None

    def start(self, parent: Any) -> None:
        from celery_ext.liveness import Heartbeat

        store = store_for(parent.app)
        if store.enabled:
            writer_for(parent.app)
            self.heartbeat = Heartbeat(parent.app, self.incarnation)
            self.heartbeat.start()
            logger.info("fileintel: task records go to %s", store.display_url)
        else:
            logger.warning(
                "fileintel: task records are off: the result backend is not Redis and no "
                "Redis URL was found (set fileintel_redis_url)."
            )

    def stop(self, parent: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        flush_all(timeout=5.0)

    terminate = stop
