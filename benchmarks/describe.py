"""``celery_ext.describe()`` latency and memory, beside stock Celery's ``AsyncResult``.

Latency: median and p95 of 300 calls per common case, against a private redis-server, next
to ``AsyncResult(id).state`` + ``.result`` (Celery's own one-GET read). Round trips: Redis
commands per call from ``INFO commandstats``. Memory: RSS growth and Python peak allocation
reading the status of a task with a 100 MB stored result, beside ``AsyncResult.result``
(which loads it).

    .venv/bin/python benchmarks/describe.py [--calls 300] [--mb 100]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import psutil
from _common import RedisServer, machine_line, median, ms, p95

from tests.harness import round_trips


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    fn()  # warm up (script load, connection)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def commands_per_call(client, fn: Callable[[], object], calls: int = 50) -> float:
    """Commands the Redis server executed per call (commands inside a Lua script count)."""

    def total() -> int:
        stats = client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

    fn()
    before = total()
    for _ in range(calls):
        fn()
    return (total() - before) / calls


def round_trips_per_call(fn: Callable[[], object], calls: int = 50) -> float:
    """Network round trips per call: writes to a Redis socket (a pipeline is one), from this
    thread only (the in-process worker's are not counted)."""
    fn()  # warm up (script load, connection)
    return round_trips(lambda: [fn() for _ in range(calls)]) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()

    redis = RedisServer()
    redis.start()
    os.environ["FILEINTEL_TEST_REDIS_URL"] = redis.url
    try:
        run(redis, args)
    finally:
        redis.close()


def run(redis: RedisServer, args: argparse.Namespace) -> None:
    from celery.contrib.testing.worker import start_worker
    from celery.result import AsyncResult

    import celery_ext
    from celery_ext.records import store_for
    from tests import proj

    app = proj.app
    client = redis.client()
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING",
                      queues=[app.conf.task_default_queue]):
        ok = proj.add.delay(1, 2)
        ok.get(timeout=10)
        failed = proj.fail.delay("boom")
        running = proj.progress_steps.delay(1, 0.01, hold=8)
        queued = proj.add.apply_async((1, 1), queue=proj.NOBODY_QUEUE)
        expired = proj.add.delay(3, 4)
        expired.get(timeout=10)
        time.sleep(0.5)  # let the records land
        client.delete(store_for(app).meta_key(expired.id))
        cases = {
            "succeeded": ok.id,
            "failed": failed.id,
            "running + progress": running.id,
            "queued": queued.id,
            "expired (record only)": expired.id,
            "unknown": str(uuid.uuid4()),
        }
        for name, task_id in cases.items():
            assert celery_ext.describe(app, task_id).phase.value in name or name.startswith("expired"), name

        print(f"describe() latency, {args.calls} calls per case ({machine_line()})")
        print(f"  {'case':<22} {'describe median':>15} {'p95':>9} {'trips':>5} {'cmds':>5}   "
              f"{'stock AsyncResult median':>24} {'p95':>9} {'trips':>5} {'cmds':>5}")
        for name, task_id in cases.items():
            ours = timed(lambda: celery_ext.describe(app, task_id), args.calls)

            def stock() -> None:
                result = AsyncResult(task_id, app=app)
                result.backend._cache.pop(task_id, None)
                result.state, result.result  # noqa: B018

            theirs = timed(stock, args.calls)
            print(
                f"  {name:<22} {ms(median(ours)):>15} {ms(p95(ours)):>9} "
                f"{round_trips_per_call(lambda: celery_ext.describe(app, task_id)):>5.1f} "
                f"{commands_per_call(client, lambda: celery_ext.describe(app, task_id)):>5.1f}   "
                f"{ms(median(theirs)):>24} {ms(p95(theirs)):>9} {round_trips_per_call(stock):>5.1f} "
                f"{commands_per_call(client, stock):>5.1f}"
            )
        print("  (trips: network round trips per call; cmds: commands Redis executed, Lua included)")
        running.get(timeout=60)  # let it finish before the worker stops

    # Memory: a task whose stored result is args.mb MB.
    task_id = str(uuid.uuid4())
    payload = app.backend.encode({"status": "SUCCESS", "result": "x" * (args.mb * 1_000_000), "traceback": None,
                                  "children": [], "date_done": datetime.now(timezone.utc).isoformat(),
                                  "task_id": task_id})
    client.set(store_for(app).meta_key(task_id), payload, ex=600)
    del payload
    gc.collect()
    print()
    print(f"memory reading the status of a task with a {args.mb} MB stored result")
    print(f"  {'reader':<34} {'RSS growth':>12} {'Python peak':>12}")
    for name, fn in (
        ("celery_ext.describe()", lambda: celery_ext.describe(app, task_id)),
        ("stock AsyncResult(id).result", lambda: AsyncResult(task_id, app=app).result),
    ):
        gc.collect()
        rss_before = psutil.Process().memory_info().rss
        tracemalloc.start()
        value = fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = psutil.Process().memory_info().rss
        del value
        print(f"  {name:<34} {(rss_after - rss_before) / 1e6:>9.1f} MB {peak / 1e6:>9.1f} MB")


if __name__ == "__main__":
    main()
