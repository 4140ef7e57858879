"""The plugin with a RabbitMQ broker and a Redis result backend (a common production set-up).

Skipped when RabbitMQ is not on 127.0.0.1:5672 (fails instead under CI=true).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from flower_fileintel.testing import FlowerServer, http_get, sse_events

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq, pytest.mark.slow]

AUTH = ("u", "p")


@pytest.fixture
def rabbit_app(rabbitmq_url, redis_server):
    from celery import Celery

    import celery_ext
    from celery_ext.progress import report_progress

    with redis_server.client() as client:
        client.flushdb()
    queue = f"fileintel-test-{uuid.uuid4().hex[:8]}"
    app = Celery("rmq", broker=rabbitmq_url, backend=redis_server.url)
    app.conf.update(
        task_default_queue=queue,
        result_extended=True,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    celery_ext.install(app)

    @app.task(bind=True, name="rmq.steps")
    def steps(self, n, delay):
        for i in range(1, n + 1):
            report_progress(self, i, n, message=f"step {i} of {n}")
            time.sleep(delay)
        return {"steps": n}

    yield app
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


def test_plugin_with_rabbitmq_broker_and_redis_backend(rabbit_app):
    from celery.contrib.testing.worker import start_worker

    with start_worker(rabbit_app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=10), \
            FlowerServer(rabbit_app, basic_auth=["u:p"]) as flower:
        result = rabbit_app.tasks["rmq.steps"].delay(4, 0.3)
        events = sse_events(flower.url(f"/fileintel/task/{result.id}/events"), auth=AUTH, timeout=30)
        docs = [json.loads(d) for e, d in events if e == "status"]
        assert events[-1][0] == "end"
        assert any(d["progress"] and not d["ready"] for d in docs)  # pushed progress
        assert docs[-1]["phase"] == "succeeded"
        assert http_get(flower.url(f"/api/fileintel/task/{result.id}/result"), auth=AUTH).json() == {"steps": 4}
        status = http_get(flower.url(f"/api/fileintel/task/{result.id}"), auth=AUTH).json()
        assert status["name"] == "rmq.steps" and status["worker"]
        board = http_get(flower.url("/fileintel/board.json"), auth=AUTH).json()
        assert result.id in [t["task_id"] for t in board["finished"]]
