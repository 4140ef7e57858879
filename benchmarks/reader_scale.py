"""The readers at scale: the board, ``describe_many`` and the live fan-out with up to 100,000
records and 1,000 running tasks, beside stock Flower.

Run:  .venv/bin/python benchmarks/reader_scale.py [--minutes 3] [--quick]

Starts its own private redis-server, a real worker (threads pool), a Flower with the plugin
(``celery fileintel flower``) and a stock Flower (``celery flower``) as separate processes.

Records are not made by running 100,000 tasks (that would take an hour on a small machine):
the worker runs one task that succeeds, one that fails and one that stays running, and their
record hashes and Celery result values, exactly as the worker wrote them, are cloned under
new ids with times shifted (record, its TTL, Celery's result key and the indexes, trimmed as
the worker trims them). The 1,000 running tasks name the live worker's incarnation, so they
read ``running``, not ``lost``. While measuring, a thread publishes 100 progress updates per
second on the running tasks' result channels the way ``update_state`` does (Celery's
``store_result``: SET + PUBLISH, plus the record's live ``progress`` field), and 10 browsers
hold the board's live endpoint open.

Per size (1,000 / 10,000 / 100,000 finished records) it prints, side by side:
- ``/fileintel/board.json`` latency (median, p95) and stock Flower's ``/api/task/result/<id>``
  and ``/api/tasks`` latency (stock's anchors: its result API reads the same Redis);
- ``describe_many`` of 1,000 ids: latency, network round trips (writes to a Redis socket; a
  pipeline is one) and Redis commands (``INFO commandstats``; Lua-internal ones count),
  beside stock ``AsyncResult(id).state`` for the same 1,000 ids, and as the board calls it
  (metadata only: results over 64 KiB are not loaded, 50 tasks per call of the read script);
- the plugin Flower's CPU (% of one core, psutil) over a window with the SSE viewers and the
  progress stream, and the number of board snapshots the live hub took in that window.
Then the plugin Flower's RSS over ``--minutes`` at the largest size (start, every 30 s, end)
and Redis memory per million finished tasks from ``MEMORY USAGE`` samples. Asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import psutil  # noqa: E402
from _common import machine_line, p95  # noqa: E402
from flower_plugin import AUTH_HEADER, cpu_seconds, request, start_flower  # noqa: E402

from tests import harness  # noqa: E402

MB = 1024 * 1024
RUNNING = 1000
PROGRESS_PER_S = 100
VIEWERS = 10
TIME_FIELDS = ("queued_at", "received_at", "started_at", "completed_at")


# --------------------------------------------------------------------------------------------
# records, cloned from what the worker wrote


class Templates:
    """One succeeded, one failed and one running task as the real worker recorded them."""

    def __init__(self, app: Any, client: Any) -> None:
        from celery_ext.records import store_for
        from celery_ext.task_record import text_of
        from tests import proj

        self.app, self.client, self.store = app, client, store_for(app)
        self.release_key = f"bench-release-{uuid.uuid4().hex}"
        ok = proj.add.delay(1, 2)
        failed = proj.fail.delay("boom")
        self.running = proj.progress_until.delay(self.release_key, 3600)
        ok.get(timeout=30)
        failed.get(timeout=30, propagate=False)

        def record(task_id: str, state: str) -> dict[str, str]:
            def ready() -> dict[str, str] | None:
                raw = client.hgetall(self.store.record_key(task_id))
                fields = {text_of(k): text_of(v) for k, v in raw.items()}
                return fields if fields.get("state") == state else None

            return harness.wait_for(ready, timeout=30, what=f"the worker's {state} record")

        self.ok = (record(ok.id, "SUCCESS"), client.get(self.store.meta_key(ok.id)), ok.id)
        self.failed = (record(failed.id, "FAILURE"), client.get(self.store.meta_key(failed.id)), failed.id)
        self.run = (record(self.running.id, "STARTED"), client.get(self.store.meta_key(self.running.id)), self.running.id)

    def release(self) -> None:
        self.client.set(self.release_key, "1", ex=60)


def clone_record(fields: dict[str, str], template_id: str, task_id: str, at: float) -> dict[str, str]:
    """The template record as if its task had ended (or started) at ``at``."""
    anchor = float(fields.get("completed_at") or fields["started_at"])
    out = dict(fields)
    for name in TIME_FIELDS:
        if name in out:
            out[name] = repr(float(out[name]) - anchor + at)
    if out.get("result_expires_ts") not in (None, "never"):
        out["result_expires_ts"] = repr(float(out["result_expires_ts"]) - anchor + at)
    if "progress" in out:
        out["progress"] = out["progress"].replace(template_id, task_id)
    return out


def populate_finished(t: Templates, count: int, failed_every: int = 50) -> None:
    """``count`` finished tasks, newest last, 1 in ``failed_every`` failed: records, Celery's
    result keys and the indexes, in pipelines of 1,000 tasks."""
    from celery_ext.settings import result_expires_seconds

    ttl, expires = t.store.record_ttl, result_expires_seconds(t.app) or 86400
    now = time.time()
    for start in range(0, count, 1000):
        pipe = t.client.pipeline(transaction=False)
        for i in range(start, min(count, start + 1000)):
            at = now - (count - i) * 0.01
            fields, meta, template_id = t.failed if i % failed_every == 0 else t.ok
            task_id = str(uuid.uuid4())
            key = t.store.record_key(task_id)
            pipe.hset(key, mapping=clone_record(fields, template_id, task_id, at))
            pipe.expire(key, ttl)
            pipe.set(t.store.meta_key(task_id), meta.replace(template_id.encode(), task_id.encode()), ex=expires)
            pipe.zadd(t.store.finished_key, {task_id: at})
            if i % failed_every == 0:
                pipe.zadd(t.store.failed_key, {task_id: at})
        # The worker trims its indexes once a second; the same bounds.
        pipe.zremrangebyrank(t.store.finished_key, 0, -1001)
        pipe.zremrangebyrank(t.store.failed_key, 0, -1001)
        pipe.execute()


def populate_running(t: Templates, count: int) -> list[str]:
    """``count`` started, unfinished tasks of the live worker (active index, record, PROGRESS meta)."""
    fields, meta, template_id = t.run
    ids = []
    now = time.time()
    pipe = t.client.pipeline(transaction=False)
    for i in range(count):
        task_id = str(uuid.uuid4())
        at = now - 3600 + i * 3.0
        key = t.store.record_key(task_id)
        pipe.hset(key, mapping=clone_record(fields, template_id, task_id, at))
        pipe.expire(key, t.store.record_ttl)
        pipe.set(t.store.meta_key(task_id), meta.replace(template_id.encode(), task_id.encode()), ex=86400)
        pipe.zadd(t.store.active_key, {task_id: at})
        ids.append(task_id)
    pipe.execute()
    return ids


class ProgressStream(threading.Thread):
    """``rate`` progress updates per second over ``ids``, as ``report_progress`` makes them:
    Celery's ``store_result`` (SET + PUBLISH on the result channel) and the record's live
    ``progress`` field."""

    def __init__(self, app: Any, ids: list[str], rate: int) -> None:
        super().__init__(daemon=True)
        self.app, self.ids, self.rate = app, ids, rate
        self.stop_event = threading.Event()
        self.paused = threading.Event()  # set while Redis commands are being counted
        self.sent = 0

    def run(self) -> None:
        from celery_ext.progress import PROGRESS_STATE, progress_meta
        from celery_ext.records import store_for

        backend, store = self.app.backend, store_for(self.app)
        started = time.monotonic()
        while not self.stop_event.is_set():
            if self.paused.is_set():
                time.sleep(0.01)
                started = time.monotonic() - self.sent / self.rate
                continue
            task_id = self.ids[self.sent % len(self.ids)]
            step = self.sent // len(self.ids) % 100 + 1
            meta = progress_meta(step, 100, f"step {step} of 100")
            try:
                backend.store_result(task_id, meta, PROGRESS_STATE)
                backend.client.hset(store.record_key(task_id), "progress", json.dumps(meta))
            except Exception as exc:  # Redis went away: the run is over or broken
                if not self.stop_event.is_set():
                    print(f"  progress stream stopped: {exc}")
                return
            self.sent += 1
            ahead = started + self.sent / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


# --------------------------------------------------------------------------------------------
# measuring


def redis_commands(client: Any, fn: Callable[[], object], tries: int = 3) -> int:
    """Commands the Redis server ran for one call of ``fn`` (``INFO commandstats``; commands
    inside Lua scripts count): the fewest over ``tries`` calls, so that a board refresh the
    plugin's Flower makes meanwhile is not counted."""

    def total() -> int:
        stats = client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

    counts = []
    for _ in range(tries):
        before = total()
        fn()
        counts.append(total() - before)
    return min(counts)


def latencies(port: int, path: str | list[str], n: int) -> list[float]:
    out = []
    for i in range(n):
        p = path if isinstance(path, str) else path[i % len(path)]
        started = time.perf_counter()
        status, _ = request(port, p)
        out.append((time.perf_counter() - started) * 1000)
        if status != 200 and i == 0:
            print(f"   (note: GET {p.split('?')[0][:40]} answers {status})")
    return out


class BoardViewer(threading.Thread):
    """One browser on the board's live endpoint: counts the events it receives by kind
    (``board``: a full snapshot the live hub took; ``progress``: a batch of updates)."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop_event = port, stop
        self.events: dict[str, int] = {}

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/fileintel/events", headers=AUTH_HEADER)
        resp = conn.getresponse()
        while not self.stop_event.is_set():
            try:
                line = resp.readline()
            except OSError:
                continue
            if not line:
                break
            if line.startswith(b"event: "):
                kind = line[7:].strip().decode()
                self.events[kind] = self.events.get(kind, 0) + 1
        conn.close()


def snapshots_seen(viewers: list[BoardViewer]) -> int:
    """Board snapshots the live hub pushed (as the first viewer saw them)."""
    return viewers[0].events.get("board", 0)


def median_ms(call, rounds: int = 5) -> float:
    """The median wall time of ``call()`` over ``rounds`` runs, in milliseconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure_size(app: Any, client: Any, ports: dict[str, int], pids: dict[str, int], running_ids: list[str],
                 stream: ProgressStream, window: float, requests_n: int) -> dict[str, Any]:
    from celery.result import AsyncResult

    import celery_ext
    from celery_ext.lookup import METADATA_ONLY_BYTES
    from celery_ext.records import recent_task_ids, store_for

    store = store_for(app)
    finished = [i.decode() for i in client.zrevrange(store.finished_key, 0, -1)]
    sample = (running_ids + finished)[: 1000]
    row: dict[str, Any] = {}

    # The plugin Flower with the SSE viewers and the progress stream, nothing else asking.
    cpu0, t0 = cpu_seconds(pids["plugin"]), time.monotonic()
    time.sleep(window)
    row["cpu"] = 100.0 * (cpu_seconds(pids["plugin"]) - cpu0) / (time.monotonic() - t0)

    board = latencies(ports["plugin"], "/fileintel/board.json", requests_n)
    row["board"] = (statistics.median(board), p95(board), min(board))
    row["load"] = os.getloadavg()[0]
    _, body = request(ports["plugin"], "/fileintel/board.json")
    snap = json.loads(body)
    row["board_counts"] = (len(snap["running"]), len(snap["finished"]), len(snap.get("failures", [])))

    paths = [f"/api/task/result/{i}" for i in random.sample(finished, min(len(finished), requests_n))]
    stock = latencies(ports["stock"], paths, requests_n)
    row["stock_result"] = (statistics.median(stock), p95(stock))
    stock_tasks = latencies(ports["stock"], "/api/tasks?limit=25", requests_n)
    row["stock_tasks"] = (statistics.median(stock_tasks), p95(stock_tasks))

    def ours() -> None:
        celery_ext.describe_many(app, sample)

    def stock_many() -> None:
        for task_id in sample:
            result = AsyncResult(task_id, app=app)
            result.backend._cache.pop(task_id, None)
            result.state  # noqa: B018

    row["many"] = median_ms(ours)
    row["many_metadata"] = median_ms(lambda: celery_ext.describe_many(app, sample, max_result_bytes=METADATA_ONLY_BYTES))
    row["many_trips"] = harness.round_trips(ours)
    stream.paused.set()
    try:
        row["many_cmds"] = redis_commands(client, ours)
    finally:
        stream.paused.clear()
    row["stock_many"] = median_ms(stock_many)
    row["stock_many_trips"] = harness.round_trips(stock_many)
    row["active_read"] = len(recent_task_ids(app, "active", 10_000))
    return row


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def redis_memory(client: Any, app: Any) -> dict[str, float]:
    """Average ``MEMORY USAGE`` of records and Celery result keys (1,000 newest finished), and
    the indexes' totals."""
    from celery_ext.records import store_for

    store = store_for(app)
    ids = [i.decode() for i in client.zrevrange(store.finished_key, 0, 999)]
    failed = {i.decode() for i in client.zrange(store.failed_key, 0, -1)}
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.memory_usage(store.record_key(task_id), samples=0)
        pipe.memory_usage(store.meta_key(task_id), samples=0)
    sizes = pipe.execute()
    records = sizes[0::2]
    return {
        "record": statistics.mean(records),
        "record_ok": statistics.mean(r for i, r in zip(ids, records) if i not in failed),
        "record_failed": statistics.mean(r for i, r in zip(ids, records) if i in failed),
        "meta": statistics.mean(sizes[1::2]),
        "finished_index": client.memory_usage(store.finished_key, samples=0) or 0,
        "failed_index": client.memory_usage(store.failed_key, samples=0) or 0,
        "active_index": client.memory_usage(store.active_key, samples=0) or 0,
        "used_memory": client.info("memory")["used_memory"],
    }


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="how long to watch the plugin Flower's RSS at the largest size (default 3)")
    parser.add_argument("--window", type=float, default=20.0, help="CPU window per size, seconds (default 20)")
    parser.add_argument("--quick", action="store_true", help="sizes 1,000 and 10,000, short windows (a smoke run)")
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    window, requests_n = (5.0, 20) if args.quick else (args.window, 100)
    minutes = 0.25 if args.quick else args.minutes

    server = harness.RedisServer()
    server.start()
    os.environ[harness.REDIS_URL_ENV] = server.url
    from tests.proj import app

    client = server.client(socket_timeout=60)
    ports = {"plugin": harness.free_port(), "stock": harness.free_port()}
    procs: dict[str, Any] = {}
    stream: ProgressStream | None = None
    started = time.monotonic()
    print(f"flower-fileintel readers at scale, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{machine_line()}; a machine shared with other jobs")
    try:
        with harness.run_subprocess_worker(pool="threads", concurrency=4, loglevel="INFO"):
            templates = Templates(app, client)
            running_ids = populate_running(templates, RUNNING)
            procs["plugin"] = start_flower(True, ports["plugin"])
            procs["stock"] = start_flower(False, ports["stock"])
            pids = {k: p.pid for k, p in procs.items()}
            stream = ProgressStream(app, running_ids, PROGRESS_PER_S)
            stream.start()
            stop = threading.Event()
            viewers = [BoardViewer(ports["plugin"], stop) for _ in range(VIEWERS)]
            for v in viewers:
                v.start()
            # Let the live hub see every running task once (1,000 tasks at 100 updates/s): it
            # learns which ones a full board leaves out, and the windows measure it steady.
            time.sleep(3 if args.quick else 12)
            rows = {}
            have = 0
            for size in sizes:
                t0 = time.monotonic()
                populate_finished(templates, size - have)
                have = size
                print(f"  populated {size:,} finished records in {time.monotonic() - t0:.1f} s "
                      f"(+{RUNNING:,} running, {stream.sent / (time.monotonic() - started):.0f} progress updates/s so far)",
                      flush=True)
                snaps0 = snapshots_seen(viewers)
                sent0, w0 = stream.sent, time.monotonic()
                rows[size] = measure_size(app, client, ports, pids, running_ids, stream, window, requests_n)
                rows[size]["rate"] = (stream.sent - sent0) / (time.monotonic() - w0)
                rows[size]["snapshots"] = snapshots_seen(viewers) - snaps0
                rows[size]["seconds"] = time.monotonic() - w0
            print_table(rows, window)
            # Before the RSS window: a window longer than result_expires (an hour in tests.proj)
            # would let the Celery results this samples expire.
            mem = redis_memory(client, app)

            print(f"\nPlugin Flower RSS over {minutes:g} min at {sizes[-1]:,} records, {RUNNING:,} running, "
                  f"{PROGRESS_PER_S} progress updates/s, {VIEWERS} SSE viewers, board.json polled every 2 s:")
            samples = [(0.0, rss_mb(pids["plugin"]))]
            cpu0, t0 = cpu_seconds(pids["plugin"]), time.monotonic()
            while time.monotonic() - t0 < minutes * 60:
                request(ports["plugin"], "/fileintel/board.json")
                time.sleep(2)
                elapsed = time.monotonic() - t0
                if elapsed - samples[-1][0] >= 30:
                    samples.append((elapsed, rss_mb(pids["plugin"])))
            samples.append((time.monotonic() - t0, rss_mb(pids["plugin"])))
            cpu = 100.0 * (cpu_seconds(pids["plugin"]) - cpu0) / (time.monotonic() - t0)
            print("  " + ", ".join(f"{t:.0f} s: {mb:.1f} MB" for t, mb in samples))
            print(f"  growth {samples[-1][1] - samples[0][1]:+.1f} MB; CPU over the window {cpu:.1f} % of a core; "
                  f"SSE events per viewer: {viewers[0].events}")
            stop.set()
            stream.stop_event.set()
            print_memory(mem)
            templates.release()
    finally:
        if stream is not None:
            stream.stop_event.set()
            stream.join(5)
        for proc in procs.values():
            harness.kill_process_tree(proc, term_timeout=5)
        server.close()
    print(f"\n(total {time.monotonic() - started:.0f} s)")


def print_table(rows: dict[int, dict[str, Any]], window: float) -> None:
    print(f"\n{'finished records':>16} | {'board.json p50/p95/min ms':>25} | {'stock /api/task/result p50/p95':>30} | "
          f"{'stock /api/tasks p50/p95':>24} | {'describe_many(1,000) ms, trips, cmds':>36} | {'metadata only ms':>16} | "
          f"{'stock 1,000 x AsyncResult.state ms, trips':>41} | {'Flower CPU %':>12} | {'snapshots':>9}")
    for size, r in rows.items():
        print(f"{size:>16,} | {r['board'][0]:>7.1f} / {r['board'][1]:>6.1f} / {r['board'][2]:>6.1f} | "
              f"{r['stock_result'][0]:>14.1f} / {r['stock_result'][1]:>13.1f} | "
              f"{r['stock_tasks'][0]:>11.1f} / {r['stock_tasks'][1]:>10.1f} | "
              f"{r['many']:>18.1f}, {r['many_trips']:>5.1f}, {r['many_cmds']:>8.0f} | {r['many_metadata']:>16.1f} | "
              f"{r['stock_many']:>31.1f}, {r['stock_many_trips']:>7.0f} | {r['cpu']:>12.1f} | {r['snapshots']:>9} | "
              f"load {r['load']:.1f}")
    first = next(iter(rows.values()))
    print(f"(board shows {first['board_counts'][0]} running / {first['board_counts'][1]} finished / "
          f"{first['board_counts'][2]} failures; {RUNNING:,} running tasks in the active index; "
          f"'metadata only': describe_many as the board calls it, results over 64 KiB not loaded, 50 tasks per "
          f"call of the read script instead of one; "
          f"progress {first['rate']:.0f} updates/s; {VIEWERS} SSE viewers on /fileintel/events; "
          f"CPU over a {window:.0f} s window with only the viewers and the progress stream; "
          f"stock /api/tasks lists Flower's in-memory events state (this worker sends no events), so it "
          f"does not grow with Redis; "
          f"'snapshots' = board snapshots the live hub pushed to a viewer during the size's measurement, {first['seconds']:.0f} s)")


def print_memory(mem: dict[str, float]) -> None:
    per_million = mem["record"] * 1_000_000 / 1e9
    indexes = (mem["finished_index"] + mem["failed_index"]) / 1e3
    print("\nRedis memory (MEMORY USAGE, 1,000 newest finished tasks sampled):")
    print(f"  record {mem['record']:.0f} B each on average (succeeded {mem['record_ok']:.0f} B, failed "
          f"{mem['record_failed']:.0f} B with its traceback; 1 in 50 failed) -> {per_million:.2f} GB per million "
          f"finished tasks (lives fileintel_record_ttl, 7 days by default)")
    print(f"  indexes: finished {mem['finished_index'] / 1e3:.0f} kB + failed {mem['failed_index'] / 1e3:.0f} kB "
          f"= {indexes:.0f} kB, whatever the volume (1,000 ids each); active {mem['active_index'] / 1e3:.0f} kB "
          f"for {RUNNING:,} running")
    print(f"  stock anchor: Celery's own result key {mem['meta']:.0f} B each -> "
          f"{mem['meta'] * 1_000_000 / 1e9:.2f} GB per million (lives result_expires, 1 day by default)")
    print(f"  server used_memory now: {mem['used_memory'] / MB:.0f} MB")


if __name__ == "__main__":
    main()
