"""Which apps ``bootstep.install`` set up: the receivers write records only for them."""

from __future__ import annotations

import weakref

from celery import Celery

__all__ = ["RECEIVERS_MODULE", "mark_installed", "install_ran", "is_installed", "installed_apps"]

#: The module whose import connects the receivers: ``install`` adds it to ``conf.imports``.
RECEIVERS_MODULE = "celery_ext.receivers"

_installed: weakref.WeakSet[Celery] = weakref.WeakSet()


def mark_installed(app: Celery) -> None:
    _installed.add(app)


def install_ran(app: Celery) -> bool:
    """True once ``install`` has set ``app`` up in this process."""
    return app in _installed


def is_installed(app: Celery) -> bool:
    """True for an app ``install`` was called on, and for its copy in a spawned pool child
    (a new object, unpickled from the parent's configuration, which keeps the receivers in
    ``conf.imports``)."""
    if app in _installed:
        return True
    if RECEIVERS_MODULE in (app.conf.get("imports") or ()):
        _installed.add(app)  # asked on every task: read the configuration once
        return True
    return False


def installed_apps() -> list[Celery]:
    """The apps ``is_installed`` has found so far in this process."""
    return list(_installed)
