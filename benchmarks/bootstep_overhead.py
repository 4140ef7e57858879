"""Worker throughput with and without ``celery_ext.install(app)``.

2,000 no-op tasks through a real worker subprocess (threads pool, concurrency 4, then
prefork, concurrency 2), with and without the bootstep, alternated round by round in one run.
Prints for each pool the median tasks/s of each, the median of the rounds' paired ratios (a
round's two runs are back to back: their ratio is free of the drift between rounds), CPU per
task of the worker (main process and pool processes apart, each with what its threads beside
the main one spent: with install(), the bootstep's) and of Redis, how long the main threads
and Redis waited for a CPU and how many times they got one, and the Redis commands per task.
Targets: paired ratio >= 0.95, commands <= stock + 3.

The producer is stock (no install()), as in most deployments' hot path; a producer with
install() adds its "sent" write (benchmarks/read_after_send.py measures that).

``--layouts`` says how the worker and Redis share the CPUs (each pool runs in each):

- ``shared`` (the default): every process may run on every CPU, as on a laptop or a small
  all-in-one box. On a 2-core machine the prefork worker's three busy processes and Redis
  then compete for two CPUs, and the worker's main process waits for Redis's replies while
  Redis waits for a CPU: the ratio measures that scheduling as well as the bootstep.
- ``redis-apart``: Redis has a CPU of its own and the worker the others (Linux CPU affinity,
  set on every thread), as when Redis runs on its own host. Skipped where there is a single
  CPU or the affinity cannot be set.

``--control`` runs stock Celery in both arms: what the paired ratio reads when nothing
differs, i.e. the noise of this machine for that many rounds (a ratio to stock is worth
reading only beside it). Each pool also prints the spread of the rounds' ratios.

    .venv/bin/python benchmarks/bootstep_overhead.py [--tasks 2000] [--rounds 5] [--pools threads,prefork]
        [--layouts shared,redis-apart] [--control]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import time
from collections.abc import Iterator

import psutil

from _common import REPO_ROOT, RedisServer, machine_line, median

TASKS = 2000


def redis_commands(client) -> int:
    """Commands the server executed so far, less our own INFO and EXISTS polling."""
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_exists"))


POOLS = {"threads": 4, "prefork": 2}

#: How the worker and Redis share the CPUs (see the module's docstring).
LAYOUTS = ("shared", "redis-apart")


def cpu_layout(layout: str) -> tuple[set[int], set[int]] | None:
    """The CPUs of the worker and of Redis in ``layout``; None where it cannot be made (one CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    if layout == "shared":
        return set(cpus), set(cpus)
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of process ``pid`` on ``cpus`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # the thread has ended
            pass


def one_round(
    redis: RedisServer, pool: str, installed: bool, tasks: int, costs: dict[str, list[float]], prefix: str,
    worker_cpus: set[int], redis_pid: int,
) -> float:
    """Tasks per second the worker completed: from its first to its last ``date_done``.

    All tasks are sent while the worker is stopped (SIGSTOP), so it starts on a full queue:
    never starved, and never sharing the CPU with the producer. Completion is polled gently
    (every 100 ms) so the poll does not load Redis. The worker's processes run on ``worker_cpus``;
    ``redis_pid`` is the server's, for its CPU time and its wait for a CPU.

    Also appends to ``costs`` (names prefixed with ``prefix``, the arm's): per task, the
    ``CPU_COSTS`` of the worker's main process, of its pool processes and of Redis (CPU time,
    steadier than throughput on a shared machine; their main threads' waits for a CPU and
    times on one), Redis commands per task, and (with install) bytes per record."""
    env = {"FILEINTEL_BENCH_REDIS_URL": redis.url, "FILEINTEL_BENCH_INSTALL": "1" if installed else "0",
           "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), str(REPO_ROOT)])}
    client = redis.client()
    client.flushdb()
    from bench_app import app, noop

    with _worker(pool, env) as worker:
        ids = []
        main = psutil.Process(worker.pid)
        pool_processes = main.children(recursive=True)
        for process in (main, *pool_processes):
            pin(process.pid, worker_cpus)
        commands_before = redis_commands(client)
        with _paused([main, *pool_processes]):
            with app.producer_or_acquire() as producer:
                for _ in range(tasks):
                    ids.append(noop.apply_async(producer=producer).id)
            before = _costs(main, pool_processes, client, redis_pid)
        keys = [f"celery-task-meta-{i}" for i in ids]
        while client.exists(*keys) < tasks:
            time.sleep(0.1)
        elapsed = _completion_span(app, client, keys)
        time.sleep(0.5)  # let the last record writes land before counting
        after = _costs(main, pool_processes, client, redis_pid)
        for name, a, b in zip(CPU_COSTS, before, after):
            costs[prefix + name].append((b - a) / tasks)
        costs[prefix + "commands"].append((redis_commands(client) - commands_before) / tasks)
    if installed:
        sample = ids[:: max(1, tasks // 50)]
        sizes = [client.memory_usage(f"fileintel-record-{i}") or 0 for i in sample]
        costs["record_bytes"].append(sum(sizes) / len(sizes))
        records = client.exists(*[f"fileintel-record-{i}" for i in ids])
        if records < tasks:  # the writer lags a little behind; it must catch up
            time.sleep(1)
            records = client.exists(*[f"fileintel-record-{i}" for i in ids])
        assert records == tasks, f"only {records} of {tasks} records were written"
    return (tasks - 1) / elapsed


def _completion_span(app, client, keys: list[str]) -> float:
    """Seconds between the first and the last task completion, from the stored date_done."""
    from datetime import datetime

    done = [datetime.fromisoformat(app.backend.decode(raw)["date_done"]) for raw in client.mget(keys)]
    return (max(done) - min(done)).total_seconds()


#: What ``_costs`` reads, in this order.
CPU_COSTS = (
    "main_cpu", "main_side_cpu", "main_wait", "main_turns", "pool_cpu", "pool_side_cpu", "pool_wait", "pool_turns",
    "redis_cpu", "redis_wait", "redis_turns",
)


def _costs(main: psutil.Process, pool_processes: list[psutil.Process], client, redis_pid: int) -> tuple[float, ...]:
    """So far (``CPU_COSTS``): CPU seconds of the worker's main process, of its threads but the
    main one, its main thread's seconds waiting for a CPU and the times it got one; the same
    for the pool processes; CPU seconds of Redis, its main thread's seconds waiting for a CPU
    and the times it got one."""
    main_side, main_wait, main_turns = _threads_schedstat([main])
    pool_side, pool_wait, pool_turns = _threads_schedstat(pool_processes)
    _, redis_wait, redis_turns = _threads_schedstat([psutil.Process(redis_pid)])
    return (_cpu([main]), main_side, main_wait, main_turns, _cpu(pool_processes), pool_side, pool_wait, pool_turns,
            _redis_cpu(client), redis_wait, redis_turns)


def _threads_schedstat(processes: list[psutil.Process]) -> tuple[float, float, int]:
    """Seconds on a CPU of ``processes``' threads but their main ones (with ``install()``, the
    record writer and the liveness beat; a stock prefork worker has none), seconds their main
    threads spent runnable, waiting for a CPU, and the times the scheduler put their main
    threads on a CPU (after a wait for I/O, or after being preempted). From Linux's
    ``schedstat``, to the nanosecond (``cpu_times`` counts in 10 ms ticks); a thread started
    since the last call counts from zero; (0, 0, 0) where ``schedstat`` is missing."""
    side = wait = 0.0
    turns = 0
    for p in processes:
        try:
            tids = os.listdir(f"/proc/{p.pid}/task")
        except OSError:  # the process is gone
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p.pid}/task/{tid}/schedstat") as f:
                    on_cpu, waiting, times_on = (int(v) for v in f.read().split())
            except OSError:  # the thread is gone, or no schedstat
                continue
            if int(tid) == p.pid:
                wait += waiting / 1e9
                turns += times_on
            else:
                side += on_cpu / 1e9
    return side, wait, turns


def _cpu(processes: list[psutil.Process]) -> float:
    """CPU seconds (user + system) of ``processes``. (The threads pool has none but the main
    process; prefork's pool processes live as long as the worker: no max-tasks-per-child.)"""
    total = 0.0
    for p in processes:
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _redis_cpu(client) -> float:
    cpu = client.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


@contextlib.contextmanager
def _paused(processes: list[psutil.Process]) -> Iterator[None]:
    """Stop ``processes`` (SIGSTOP) for the block, and let them go on."""
    for p in processes:
        p.suspend()
    try:
        yield
    finally:
        for p in processes:
            p.resume()


def _worker(pool: str, env: dict[str, str]):
    from _common import run_subprocess_worker

    return run_subprocess_worker(pool=pool, concurrency=POOLS[pool], app="bench_app", loglevel="INFO", env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pools", default="threads,prefork")
    parser.add_argument("--layouts", default="shared", help=f"how the worker and Redis share the CPUs: {', '.join(LAYOUTS)}")
    parser.add_argument("--control", action="store_true", help="stock Celery in both arms: the noise floor")
    args = parser.parse_args()
    unknown = set(args.layouts.split(",")) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layout {', '.join(sorted(unknown))}: choose from {', '.join(LAYOUTS)}")
    other = "stock again" if args.control else "with install"
    target = "1 when nothing differs" if args.control else "target >= 0.95"
    redis = RedisServer()
    redis.start()
    # The harness's subprocess helpers and bench_app read these.
    os.environ["FILEINTEL_TEST_REDIS_URL"] = os.environ["FILEINTEL_BENCH_REDIS_URL"] = redis.url
    redis_pid = redis.pid
    assert redis_pid is not None  # started just above
    results = {}
    try:
        for layout in args.layouts.split(","):
            cpus = cpu_layout(layout)
            if cpus is None:
                print(f"  layout {layout}: skipped, it needs two CPUs or more", flush=True)
                continue
            worker_cpus, redis_cpus = cpus
            try:
                pin(redis_pid, redis_cpus)
            except OSError as exc:
                print(f"  layout {layout}: skipped, CPU affinity cannot be set here ({exc})", flush=True)
                continue
            for pool in args.pools.split(","):
                without: list[float] = []
                with_: list[float] = []
                costs: dict[str, list[float]] = collections.defaultdict(list)
                for r in range(args.rounds):
                    # Alternate which goes first, so drift on a shared machine hits both alike.
                    order = [False, True] if r % 2 == 0 else [True, False]
                    for second_arm in order:
                        installed = second_arm and not args.control
                        prefix = "" if second_arm else "stock_"
                        rate = one_round(redis, pool, installed, args.tasks, costs, prefix, worker_cpus, redis_pid)
                        (with_ if second_arm else without).append(rate)
                        label = other if second_arm else "stock Celery"
                        print(f"  {pool}, {layout}, round {r + 1}: {label:<12} {rate:7.0f} tasks/s", flush=True)
                results[pool, layout] = (without, with_, costs)
    finally:
        redis.close()
    print()
    print(f"bootstep overhead: {args.tasks} no-op tasks, median of {args.rounds} rounds ({machine_line()})")
    print(f"  {'':<30} {'stock Celery':>14} {other:>14} {'':>10}")
    for (pool, layout), (without, with_, costs) in results.items():
        a, b = median(without), median(with_)
        # A round's pair ran back to back: its ratio is free of the drift between rounds.
        ratios = sorted(w / s for w, s in zip(with_, without))
        where = "worker and Redis share the CPUs" if layout == "shared" else "Redis on a CPU of its own"
        print(f"  {pool} x{POOLS[pool]}, {where}")
        print(f"    {'tasks/s':<28} {a:14.0f} {b:14.0f}   ratio of medians {b / a:.3f}")
        print(f"    {'paired ratio (median)':<28} {'':>14} {median(ratios):14.3f}   {target}")
        print(f"    {'ratio per round':<28} {'':>14} {ratios[0]:8.3f}-{ratios[-1]:.3f}   middle half {quartiles(ratios)}")
        cpu = {name: (median(costs["stock_" + name]), median(costs[name])) for name in CPU_COSTS}
        rows = [("worker", cpu["main_cpu"])] if pool == "threads" else [
            ("worker main process", cpu["main_cpu"]), ("pool processes", cpu["pool_cpu"])
        ]
        print("    CPU per task (us)")
        for label, (cpu_a, cpu_b) in [*rows, ("Redis", cpu["redis_cpu"])]:
            print(f"      {label:<26} {cpu_a * 1e6:14.0f} {cpu_b * 1e6:14.0f}   {(cpu_b / cpu_a - 1) * 100:+.1f} %")
        if pool != "threads":
            # Included in the rows above: what the threads beside each main thread spent.
            for label, (cpu_a, cpu_b) in (("  in main's other threads", cpu["main_side_cpu"]),
                                          ("  in pool's other threads", cpu["pool_side_cpu"])):
                print(f"      {label:<26} {cpu_a * 1e6:14.1f} {cpu_b * 1e6:14.1f}   {(cpu_b - cpu_a) * 1e6:+.1f} us")
        # The main threads whose scheduling is printed: (label, prefix of their CPU_COSTS).
        main_threads = [] if pool == "threads" else [
            ("main process, main thread", "main"), ("pool processes, main threads", "pool")
        ]
        main_threads.append(("Redis, main thread", "redis"))
        print("    waiting for a CPU per task (us): runnable, not running")
        for label, who in main_threads:
            wait_a, wait_b = cpu[who + "_wait"]
            print(f"      {label:<26} {wait_a * 1e6:14.1f} {wait_b * 1e6:14.1f}   {(wait_b - wait_a) * 1e6:+.1f} us")
        # A thread waiting for a reply gets a CPU again when the reply comes: the more often it
        # waits, the less work each turn does, and each turn costs system calls and a loop.
        print("    times on a CPU per task: put on one after a wait for I/O or for a CPU")
        for label, who in main_threads:
            turns_a, turns_b = cpu[who + "_turns"]
            print(f"      {label:<26} {turns_a:14.2f} {turns_b:14.2f}   {turns_b - turns_a:+.2f}")
        cmd_a, cmd_b = median(costs["stock_commands"]), median(costs["commands"])
        print(f"    {'Redis commands per task':<28} {cmd_a:14.1f} {cmd_b:14.1f}   {cmd_b - cmd_a:+.1f} (target <= +3; Lua-internal included)")
        if costs["record_bytes"]:
            print(f"    {'memory per task record':<28} {'':>14} {median(costs['record_bytes']):14.0f}   bytes (MEMORY USAGE)")


def quartiles(values: list[float]) -> str:
    """The first and third quartiles of ``values``: where the middle half of the rounds fell."""
    if len(values) < 2:
        return "(one round)"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.3f}-{q3:.3f}"


if __name__ == "__main__":
    main()
