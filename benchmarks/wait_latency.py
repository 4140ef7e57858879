"""How fast and how cheaply does waiting notice a finished task? And what does the CLI cost?

Prints, side by side with stock Celery behaviour:

1. Latency from a task's completion (the backend's ``date_done``, written just before Celery's
   SETEX + PUBLISH) to the waiter returning, for 50 tasks each (countdown 0.2 s):
   ``celery_ext.wait`` (in-process), ``AsyncResult.get()``, and a 2 s polling loop (the old
   FileIntel CLI). Median and p95.
2. Redis commands each method issues while waiting on a task that never finishes, from
   ``INFO commandstats`` deltas on the script's own redis-server (worker stopped, so nothing
   else talks to it). Each method waits ``WINDOW`` seconds; figures are extrapolated to one
   minute, and the set-up (first second) is split from the steady state.
3. Whole-process time of ``celery -A tests.proj fileintel status ID`` next to stock
   ``celery -A tests.proj result ID`` and ``celery --help``; and what importing the plugin
   module costs (``python -X importtime``), with and without cached bytecode.

Run from the repository root: ``.venv/bin/python benchmarks/wait_latency.py`` (about 2 min).
``--rounds N`` sets the number of tasks per method in part 1 (default 50); ``--latency-only``
runs part 1 alone (what comparing ``wait`` with ``AsyncResult.get()`` needs).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, RedisServer, machine_line, median, p95, run_subprocess_worker  # noqa: E402

TASKS = 50
COUNTDOWN = 0.2
WINDOW = 30.0  # seconds each method waits on a never-finishing task
CLI_RUNS = 5
IMPORT_RUNS = 7


def _delay_s(done: datetime | None, returned: float) -> float:
    if done is None:
        raise RuntimeError("the task has no date_done: is result_extended on?")
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return returned - done.timestamp()


# --------------------------------------------------------------------------------------------
# 1. latency


def latency(app: Any, proj: Any, rounds: int = TASKS) -> dict[str, list[float]]:
    import celery_ext

    results: dict[str, list[float]] = {"celery_ext.wait": [], "AsyncResult.get": [], "poll every 2 s": []}

    def ours() -> float:
        task_id = proj.add.apply_async((1, 1), countdown=COUNTDOWN).id
        status = celery_ext.wait(app, [task_id], timeout=30)[task_id]
        returned = time.time()
        assert status.successful, status
        return _delay_s(status.completed_at, returned)

    def stock() -> float:
        result = proj.add.apply_async((1, 1), countdown=COUNTDOWN)
        result.get(timeout=30)
        returned = time.time()
        return _delay_s(result.date_done, returned)

    for i in range(rounds):  # alternate, so neither method always runs on a warmer process
        for name, method in ((("celery_ext.wait", ours), ("AsyncResult.get", stock))[:: 1 if i % 2 else -1]):
            results[name].append(method())

    # The old CLI: GET the state every 2 s. Its delay does not depend on the machine, so the
    # 50 loops run side by side (one thread each) to keep the run short. Countdowns spread
    # over one polling period, so completions fall anywhere between two polls (with a fixed
    # 0.2 s countdown every task would be noticed exactly 1.8 s late).
    def poll(out: list[float]) -> None:
        countdown = COUNTDOWN + random.uniform(0.0, 2.0)
        result = proj.add.apply_async((1, 1), countdown=countdown)
        while result.state not in ("SUCCESS", "FAILURE"):
            time.sleep(2.0)
        out.append(_delay_s(result.date_done, time.time()))

    polled: list[float] = []
    threads = [threading.Thread(target=poll, args=(polled,)) for _ in range(rounds)]
    for thread in threads:
        thread.start()
        time.sleep(0.04)  # spread the loops over the 2 s period, as independent users would be
    for thread in threads:
        thread.join()
    results["poll every 2 s"] = polled
    return results


# --------------------------------------------------------------------------------------------
# 2. Redis commands while waiting


def command_counts(app: Any, proj: Any, client: Any) -> list[tuple[str, int, int, dict[str, int]]]:
    import celery_ext
    from celery_ext.writer import flush_all

    def snapshot() -> dict[str, int]:
        stats = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if k != "cmdstat_info"}

    def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}

    def run(name: str, method: Any) -> tuple[str, int, int, dict[str, int]]:
        task_id = proj.add.apply_async((1, 1), queue=proj.NOBODY_QUEUE).id
        flush_all()
        marks: dict[str, dict[str, int]] = {}

        def mark_after_setup() -> None:
            time.sleep(1.0)
            marks["setup"] = snapshot()

        before = snapshot()
        marker = threading.Thread(target=mark_after_setup)
        marker.start()
        method(task_id)
        marker.join()
        after = snapshot()
        total = sum(delta(after, before).values())
        steady = sum(delta(after, marks["setup"]).values())
        return name, total, steady, delta(after, before)

    def ours(task_id: str) -> None:
        celery_ext.wait(app, [task_id], timeout=WINDOW)

    def stock(task_id: str) -> None:
        try:
            proj.add.AsyncResult(task_id).get(timeout=WINDOW)
        except Exception:  # celery.exceptions.TimeoutError
            pass

    def poll(task_id: str) -> None:
        deadline = time.monotonic() + WINDOW
        result = proj.add.AsyncResult(task_id)
        while time.monotonic() < deadline:
            if result.state in ("SUCCESS", "FAILURE"):
                return
            time.sleep(2.0)

    # Warm-up: script load, connection pools, so set-up costs are the ones a CLI run would see
    # on a server that already has our script cached.
    celery_ext.wait(app, [proj.add.AsyncResult("warm-up").id], timeout=0)
    return [run("celery_ext.wait", ours), run("AsyncResult.get", stock), run("poll every 2 s", poll)]


# --------------------------------------------------------------------------------------------
# 3. start-up and import cost


def cli_times(env: dict[str, str], task_id: str) -> list[tuple[str, float]]:
    celery = str(Path(sys.executable).parent / "celery")
    commands = [
        ("celery --help", [celery, "--help"]),
        ("celery -A tests.proj result ID (stock)", [celery, "-A", "tests.proj", "result", task_id]),
        ("celery -A tests.proj fileintel status ID", [celery, "-A", "tests.proj", "fileintel", "status", task_id]),
        ("celery -A tests.proj fileintel wait ID", [celery, "-A", "tests.proj", "fileintel", "wait", task_id]),
        ("celery -A tests.proj fileintel result ID", [celery, "-A", "tests.proj", "fileintel", "result", task_id]),
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in commands}
    for _ in range(CLI_RUNS):
        for name, cmd in commands:
            started = time.perf_counter()
            run = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, timeout=60)
            times[name].append(time.perf_counter() - started)
            if run.returncode != 0:
                raise RuntimeError(f"{name} exited {run.returncode}: {run.stderr.decode()[-2000:]}")
    return [(name, median(values)) for name, values in times.items()]


def import_cost(env: dict[str, str]) -> dict[str, float]:
    """Median ``-X importtime`` cumulative microseconds of celery_ext.cli (and its package)."""
    code = "import celery.bin.base, click; import celery_ext.cli"
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="fileintel-pycache-") as cache:
        variants = {
            "no cached bytecode (PYTHONDONTWRITEBYTECODE, as in this checkout)": {
                **env,
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            "cached bytecode (an installed package)": {
                **{k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"},
                "PYTHONPYCACHEPREFIX": cache,
            },
        }
        for label, variant in variants.items():
            samples = []
            for _ in range(IMPORT_RUNS + 1):
                run = subprocess.run(
                    [sys.executable, "-X", "importtime", "-c", code],
                    env=variant, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                )
                total = 0
                for line in run.stderr.splitlines():
                    match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s?(\s*)(\S+)", line)
                    if match and match.group(3) in ("celery_ext", "celery_ext.cli") and not match.group(2):
                        total += int(match.group(1))
                samples.append(total)
            out[label] = median(samples[1:]) / 1000  # the first run fills the bytecode cache
    return out


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=TASKS, help=f"tasks per method in part 1 (default {TASKS})")
    parser.add_argument("--latency-only", action="store_true", help="run part 1 only")
    args = parser.parse_args()
    started = time.monotonic()
    server = RedisServer()
    server.start()
    os.environ["FILEINTEL_TEST_REDIS_URL"] = server.url
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        from tests import proj

        app = proj.app
        print(f"wait latency and cost -- {machine_line()}")
        print(f"private redis-server at {server.url}\n")

        with run_subprocess_worker(pool="prefork", concurrency=2):
            lat = latency(app, proj, args.rounds)
            done_id = proj.echo.delay({"ok": True}).id
            proj.echo.AsyncResult(done_id).get(timeout=30)
            time.sleep(0.5)  # the record's completion write is asynchronous

        print(f"1. Delay from task completion (date_done) to the waiter returning, {args.rounds} tasks each")
        print(f"   {'method':<22}{'median':>12}{'p95':>12}{'max':>12}")
        for name, values in lat.items():
            print(f"   {name:<22}{median(values) * 1000:>10.2f} ms{p95(values) * 1000:>9.2f} ms{max(values) * 1000:>9.2f} ms")
        ours, anchor = median(lat["celery_ext.wait"]), median(lat["AsyncResult.get"])
        verdict = "at or under" if ours <= anchor else "OVER"
        print(f"   wait median {ours * 1000:.2f} ms vs AsyncResult.get() median {anchor * 1000:.2f} ms "
              f"in this run: {verdict} its anchor; wait p95 {p95(lat['celery_ext.wait']) * 1000:.2f} ms")
        if args.latency_only:
            print(f"\nTotal benchmark time: {time.monotonic() - started:.0f} s")
            return

        with server.client() as client:
            counts = command_counts(app, proj, client)
        print(f"\n2. Redis commands while waiting {WINDOW:g} s on a task that never finishes (one task)")
        print(f"   {'method':<22}{'in window':>10}{'per min':>10}{'steady/min':>12}   by command")
        for name, total, steady, by_command in counts:
            per_min = total * 60 / WINDOW
            steady_min = steady * 60 / (WINDOW - 1)
            detail = ", ".join(f"{k} {v}" for k, v in sorted(by_command.items()))
            print(f"   {name:<22}{total:>10}{per_min:>10.1f}{steady_min:>12.1f}   {detail}")
        print(
            "   (per min: the window's count x 60/window, set-up included; steady/min: after the first\n"
            "    second. INFO commandstats also counts the reads inside our Lua script (strlen, pttl,\n"
            "    get, hgetall). celery_ext.wait re-reads each task every 120 s as a safety net: at\n"
            "    most 5 commands per task per 2 min (2.5/min), which a 30 s window does not show.)"
        )

        print(f"\n3. Whole-process time, median of {CLI_RUNS} runs (finished task)")
        for name, seconds in cli_times(env, done_id):
            print(f"   {name:<44}{seconds * 1000:>9.0f} ms")
        print("\n   Importing the plugin module (celery imports it on every invocation), median of "
              f"{IMPORT_RUNS} runs:")
        for label, millis in import_cost(env).items():
            print(f"   {label:<70}{millis:>7.2f} ms")
        print(f"\nTotal benchmark time: {time.monotonic() - started:.0f} s")
    finally:
        server.close()


if __name__ == "__main__":
    main()
