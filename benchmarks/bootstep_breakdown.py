"""Where ``install()``'s cost per task goes: each hook a successful task passes, timed in one
thread, beside stock Celery.

``bootstep_overhead.py`` measures a real worker's throughput; this one says which part of the
bootstep the difference is made of. A task's path is replayed in one thread, against a
private redis-server, without a broker: the worker's ``task_received`` signal, ``task_prerun``,
Celery's own store of the result (``backend.mark_as_done``, where the record's end rides
along), and ``task_success``. Stock Celery skips a signal that has no receivers, as its
tracer does. Each variant runs in its own process (``install()`` cannot be undone), the
variants alternate, and the figures are medians of the rounds, in microseconds per task.

Also timed: Celery's result transaction alone (``MULTI``, ``SETEX``, ``PUBLISH``, ``EXEC``, a
redis-py pipeline) and the script that writes the result with a short task's record end
(``end_script.py``): wall time, the calling thread's CPU, and Redis's CPU, per task; and the
script built up part by part (``SCRIPT_STEPS``): what each part costs Redis.

    .venv/bin/python benchmarks/bootstep_breakdown.py [--rounds 5] [--tasks 3000]

Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

from _common import REPO_ROOT, RedisServer, machine_line, median  # noqa: E402

PHASES = ("task_received", "task_prerun", "store the result", "task_success")


class Request:
    """What the receivers read of Celery's worker request (which, like this, takes weak references)."""

    def __init__(self, task_id: str, task: Any) -> None:
        self.id, self.name, self.hostname, self.task = task_id, task.name, "bench@host", task
        self.time_start: float | None = None


def replay(tasks: int) -> dict[str, float]:
    """One round: ``tasks`` successful no-op tasks through the hooks; microseconds per task
    spent in each phase (bench_app's app, installed or not by the environment)."""
    from bench_app import noop
    from celery import signals

    spent: Counter[str] = Counter()
    clock = time.perf_counter
    for _ in range(tasks):
        task_id = str(uuid.uuid4())
        request = Request(task_id, noop)
        t0 = clock()
        if signals.task_received.receivers:
            signals.task_received.send(sender=None, request=request)
        t1 = clock()
        request.time_start = time.time()  # a pool process accepted it: no "received" write is due
        noop.push_request(id=task_id, hostname="bench@host", retries=0, delivery_info={}, is_eager=False)
        try:
            t2 = clock()
            if signals.task_prerun.receivers:
                signals.task_prerun.send(sender=noop, task_id=task_id, task=noop, args=(), kwargs={})
            t3 = clock()
            noop.backend.mark_as_done(task_id, None, request=noop.request)
            t4 = clock()
            if signals.task_success.receivers:
                signals.task_success.send(sender=noop, result=None)
            t5 = clock()
        finally:
            noop.pop_request()
        spent["task_received"] += t1 - t0
        spent["task_prerun"] += t3 - t2
        spent["store the result"] += t4 - t3
        spent["task_success"] += t5 - t4
    return {phase: spent[phase] / tasks * 1e6 for phase in PHASES}


def no_op_end_fields(now: float) -> bytes:
    """The end script's fields argument for a no-op task's record (11 fields)."""
    return json.dumps({
        "started_at": repr(now), "name": "bench_app.noop", "worker": "celery@bench", "retries": "0",
        "completed_at": repr(now), "runtime_s": "0.000123",
        "result_expires_s": "86400", "result_bytes": "160", "result_expires_ts": repr(now + 86400),
        "state": "SUCCESS", "rank": "3",
    }).encode()


def result_write(tasks: int, with_record: bool) -> tuple[float, float, float]:
    """Microseconds per task for Celery's write of a success (its ``GET`` of the stored result,
    then its transaction as a redis-py pipeline), or for the end script that makes the same
    check and writes the result with a short task's record end (11 fields, as a no-op task's):
    wall time, this thread's CPU, Redis's CPU."""
    import redis

    from celery_ext.end_script import run_end_script

    client = redis.Redis.from_url(os.environ["FILEINTEL_BENCH_REDIS_URL"])
    now = time.time()
    fields = no_op_end_fields(now)

    def redis_cpu() -> float:
        info = client.info("cpu")
        return float(info["used_cpu_user"] + info["used_cpu_sys"])

    redis_before, cpu_before, started = redis_cpu(), time.thread_time(), time.perf_counter()
    for _ in range(tasks):
        task_id = str(uuid.uuid4())
        key = f"celery-task-meta-{task_id}"
        value = json.dumps({"status": "SUCCESS", "result": None, "task_id": task_id})
        if with_record:
            keys = (key, f"fileintel-record-{task_id}", "fileintel-finished", "fileintel-active")
            run_end_script(client, keys, (value, 86400, fields, 604800, task_id, repr(now), "0", "1"))
        else:
            client.get(key)  # Celery's check of the stored result, before it stores a success
            with client.pipeline() as pipe:
                pipe.setex(key, 86400, value)
                pipe.publish(key, value)
                pipe.execute()
    wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_before
    redis_spent = redis_cpu() - redis_before
    client.close()
    return wall / tasks * 1e6, cpu / tasks * 1e6, redis_spent / tasks * 1e6


#: The end script built up part by part: step k runs parts 1..k; the last step is the end
#: script itself (``END_SCRIPT``: the same parts, and "finished" and "active").
SCRIPT_PARTS = (
    ("SET + PUBLISH, in a script",
     "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) redis.call('PUBLISH', KEYS[1], ARGV[1])"),
    ("+ Celery's check (GET: none stored)", "local stored = redis.call('GET', KEYS[1])"),
    ("+ decode the fields (cjson)", "local fields = cjson.decode(ARGV[3])"),
    ("+ HSET the record",
     "local flat = {} for k, v in pairs(fields) do flat[#flat + 1] = k flat[#flat + 1] = v end "
     "redis.pcall('HSET', KEYS[2], unpack(flat))"),
    ("+ EXPIRE it", "redis.pcall('EXPIRE', KEYS[2], ARGV[4])"),
)
SCRIPT_STEPS: tuple[tuple[str, str | None], ...] = (
    *((label, " ".join(lua for _, lua in SCRIPT_PARTS[: k + 1]) + " return 1")
      for k, (label, _) in enumerate(SCRIPT_PARTS)),
    ("+ ZADD finished (the end script)", None),
)


def script_parts(tasks: int) -> list[float]:
    """Redis's CPU per call, in microseconds, for each of ``SCRIPT_STEPS`` (same keys and
    arguments as ``result_write``'s), one round trip per call."""
    import redis

    from celery_ext.end_script import END_SCRIPT

    client = redis.Redis.from_url(os.environ["FILEINTEL_BENCH_REDIS_URL"])
    fields = no_op_end_fields(time.time())
    costs = []
    for _, script in SCRIPT_STEPS:
        sha = client.script_load(script or END_SCRIPT)
        before = client.info("cpu")
        for _ in range(tasks):
            task_id = str(uuid.uuid4())
            client.evalsha(sha, 4, f"celery-task-meta-{task_id}", f"fileintel-record-{task_id}", "fileintel-finished",
                           "fileintel-active", json.dumps({"status": "SUCCESS", "result": None, "task_id": task_id}),
                           86400, fields, 604800, task_id, repr(time.time()), "0", "1")
        after = client.info("cpu")
        spent = sum(after[k] - before[k] for k in ("used_cpu_user", "used_cpu_sys"))
        costs.append(spent / tasks * 1e6)
    client.close()
    return costs


def child(tasks: int) -> None:
    """A variant's round, in this process (``--child``): its phases as one JSON line."""
    if os.environ.get("FILEINTEL_BENCH_INSTALL") == "1":
        from bench_app import app

        from celery_ext.writer import writer_for

        writer_for(app)  # started before timing, as a worker's is
    replay(min(tasks, 300))  # warm up: imports, connections, the read script
    print(json.dumps(replay(tasks)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.tasks)
        return
    redis = RedisServer()
    redis.start()
    os.environ["FILEINTEL_BENCH_REDIS_URL"] = redis.url
    runs: dict[str, list[dict[str, float]]] = {"stock": [], "install": []}
    writes: dict[str, list[tuple[float, float, float]]] = {"stock": [], "install": []}
    parts: list[list[float]] = []
    try:
        for round_no in range(args.rounds):
            order = ("stock", "install") if round_no % 2 == 0 else ("install", "stock")
            for variant in order:
                env = {
                    **os.environ,
                    "FILEINTEL_BENCH_INSTALL": "1" if variant == "install" else "0",
                    "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), str(REPO_ROOT)]),
                }
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--tasks", str(args.tasks)],
                    env=env, capture_output=True, text=True, check=True,
                ).stdout
                runs[variant].append(json.loads(out.strip().splitlines()[-1]))
                writes[variant].append(result_write(args.tasks, with_record=variant == "install"))
            parts.append(script_parts(args.tasks))
    finally:
        redis.close()

    print(f"install() per task, phase by phase: {args.tasks} no-op tasks replayed in one thread, "
          f"median of {args.rounds} rounds ({machine_line()})")
    print(f"  {'phase':28s} {'stock':>9s} {'install':>9s} {'added':>9s}   (microseconds per task)")
    totals = {"stock": 0.0, "install": 0.0}
    for phase in PHASES:
        stock = median([r[phase] for r in runs["stock"]])
        ours = median([r[phase] for r in runs["install"]])
        totals["stock"] += stock
        totals["install"] += ours
        print(f"  {phase:28s} {stock:9.1f} {ours:9.1f} {ours - stock:+9.1f}")
    print(f"  {'all four':28s} {totals['stock']:9.1f} {totals['install']:9.1f} "
          f"{totals['install'] - totals['stock']:+9.1f}")
    print(f"  {'the result write alone':42s} {'wall':>7s} {'thread CPU':>12s} {'Redis CPU':>12s}   (microseconds per task)")
    for variant, label in (("stock", "Celery's GET, MULTI/SETEX/PUBLISH/EXEC"), ("install", "the end script, with the record")):
        wall, cpu, redis_cpu = (median([r[n] for r in writes[variant]]) for n in range(3))
        print(f"    {label:40s} {wall:7.1f} {cpu:12.1f} {redis_cpu:12.1f}")
    print(f"  {'Redis CPU of the end script, part by part':42s} {'':>7s} {'':>12s} {'Redis CPU':>12s}")
    for step, (label, _) in enumerate(SCRIPT_STEPS):
        print(f"    {label:40s} {'':>7s} {'':>12s} {median([r[step] for r in parts]):12.1f}")
    print("  ('store the result' includes Celery's read of the old result, its encoding and its "
          "write; the worker's event loop, pool and broker are not in this replay)")


if __name__ == "__main__":
    main()
