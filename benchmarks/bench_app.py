"""The app the benchmarks run workers with. ``FILEINTEL_BENCH_INSTALL=1`` applies install()."""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ["FILEINTEL_BENCH_REDIS_URL"]
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    worker_prefetch_multiplier=4,
    broker_transport_options={"polling_interval": 0.1},
    worker_hijack_root_logger=False,
)
if os.environ.get("FILEINTEL_BENCH_INSTALL") == "1":
    import celery_ext

    celery_ext.install(app)


@app.task
def noop() -> None:
    return None
