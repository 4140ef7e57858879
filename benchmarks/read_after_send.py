"""Read-after-send: does a task just sent read ``queued``, in the sender and in another process?

Sends 200 tasks to a queue no worker consumes, against a private redis-server, and reads each
one: in the sending process right after ``apply_async()`` returns; in a second process the
instant its id arrives there (through a pipe), and 10 ms after it arrives. Stock Celery's
anchor is ``AsyncResult(id).state``, which says ``PENDING`` for a queued task and for an id
that never existed alike. Also prints the Redis commands each send costs, with and without
``install()``. Median of several rounds.

    .venv/bin/python benchmarks/read_after_send.py [--tasks 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from typing import Any

from _common import RedisServer, machine_line, median

QUEUE = "fileintel-bench-nobody"


def make_app(url: str, installed: bool) -> Any:
    from celery import Celery

    import celery_ext

    app = Celery("bench", broker=url, backend=url, set_as_current=True)
    app.conf.update(result_expires=3600, broker_connection_retry_on_startup=True)
    if installed:
        celery_ext.install(app)
    return app


def observer(url: str, delay_s: float, ids: Any, answers: Any) -> None:
    """Another process: describe each id ``delay_s`` after it arrives; report the phases."""
    import celery_ext

    app = make_app(url, installed=True)
    celery_ext.describe(app, "00000000-0000-0000-0000-000000000000")  # connect, load the script
    answers.put("ready")
    phases = []
    while (item := ids.get()) is not None:
        arrived = time.perf_counter()
        if delay_s:
            time.sleep(max(0.0, arrived + delay_s - time.perf_counter()))
        phases.append(celery_ext.describe(app, item).phase.value)
    answers.put(phases)


def other_process_unknowns(url: str, app: Any, tasks: int, delay_s: float) -> int:
    context = multiprocessing.get_context("spawn")
    ids, answers = context.Queue(), context.Queue()
    proc = context.Process(target=observer, args=(url, delay_s, ids, answers))
    proc.start()
    assert answers.get(timeout=60) == "ready"
    for i in range(tasks):
        ids.put(app.send_task("bench.add", (i, i), queue=QUEUE).id)
    ids.put(None)
    phases = answers.get(timeout=120)
    proc.join(timeout=30)
    return sum(1 for p in phases if p == "unknown")


def commands(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")


def cost_per_send(server: RedisServer, installed: bool, tasks: int) -> tuple[float, float]:
    """Redis commands per send, and the median time apply_async() takes."""
    from celery_ext.writer import flush_all

    app = make_app(server.url, installed)
    app.send_task("bench.add", (0, 0), queue=QUEUE)  # connect first
    flush_all()
    times = []
    with server.client() as probe:
        before = commands(probe)
        for i in range(tasks):
            start = time.perf_counter()
            app.send_task("bench.add", (i, i), queue=QUEUE)
            times.append(time.perf_counter() - start)
        flush_all()
        return (commands(probe) - before) / tasks, median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import celery_ext

    server = RedisServer()
    server.start()
    try:
        app = make_app(server.url, installed=True)
        stock = make_app(server.url, installed=False)
        in_process, instant, after_10ms, stock_pending = [], [], [], []
        for _ in range(args.rounds):
            ids = [app.send_task("bench.add", (i, i), queue=QUEUE).id for i in range(args.tasks)]
            in_process.append(sum(1 for i in ids if celery_ext.describe(app, i).phase.value == "unknown"))
            stock_ids = [stock.send_task("bench.add", (i, i), queue=QUEUE).id for i in range(args.tasks)]
            stock_pending.append(sum(1 for i in stock_ids if stock.AsyncResult(i).state == "PENDING"))
            instant.append(other_process_unknowns(server.url, app, args.tasks, 0.0))
            after_10ms.append(other_process_unknowns(server.url, app, args.tasks, 0.010))
        costs, stock_costs = [], []
        for _ in range(args.rounds):  # alternated, so both see the same machine
            costs.append(cost_per_send(server, True, args.tasks))
            stock_costs.append(cost_per_send(server, False, args.tasks))
        per_send, send_time = median([c for c, _ in costs]), median([t for _, t in costs])
        per_send_stock, send_time_stock = median([c for c, _ in stock_costs]), median([t for _, t in stock_costs])
    finally:
        server.close()

    n = args.tasks
    print(f"read-after-send, {n} tasks sent to an unconsumed queue, median of {args.rounds} rounds ({machine_line()})")
    print(f"{'reader':<46} {'flower-fileintel':>18} {'stock Celery':>30}")
    print(f"{'same process, right after apply_async()':<46} {f'{median(in_process):.0f}/{n} unknown':>18} "
          f"{f'{median(stock_pending):.0f}/{n} PENDING (= unknown)':>30}")
    print(f"{'other process, the instant the id arrives':<46} {f'{median(instant):.0f}/{n} unknown':>18} {'same as above':>30}")
    print(f"{'other process, 10 ms after the id arrives':<46} {f'{median(after_10ms):.0f}/{n} unknown':>18} {'same as above':>30}")
    print(f"{'Redis commands per send':<46} {per_send:>18.1f} {per_send_stock:>30.1f}")
    print(f"{'apply_async() median':<46} {f'{send_time * 1e6:.0f} us':>18} {f'{send_time_stock * 1e6:.0f} us':>30}")


if __name__ == "__main__":
    main()
