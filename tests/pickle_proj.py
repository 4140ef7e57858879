"""An app whose results are pickled, and a payload that runs code when it is unpickled.

``celery -A tests.pickle_proj fileintel ...`` reads the same private Redis as tests.proj.
``Canary(path)`` pickles to "call ``touch_canary(path)`` when loaded": a reader that
unpickles it leaves a file behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

import celery_ext
from tests.proj import REDIS_URL

app = Celery("pickle_proj", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
app.conf.update(
    result_serializer="pickle",
    accept_content=["json", "pickle"],
    result_accept_content=["json", "pickle"],
    result_expires=3600,
    broker_connection_retry_on_startup=True,
)
celery_ext.install(app)


def touch_canary(path: str) -> str:
    Path(path).write_text("unpickled by a reader")
    return "the canary's value"


class Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (touch_canary, (self.path,))
