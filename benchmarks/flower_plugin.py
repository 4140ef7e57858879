"""The Flower plugin beside stock Flower: big results, downloads, and a live board.

Run:  .venv/bin/python benchmarks/flower_plugin.py [--quick]

Starts its own private redis-server, a Flower with the plugin (``celery fileintel flower``)
and a stock Flower (``celery flower``) as separate processes, so their RSS and CPU are
measured apart from this script. Prints figures side by side; asserts nothing.

1. A task whose stored result is 200 MB (the meta key is written directly with the
   backend's encoder): response time and Flower RSS growth of our status API and detail
   page, beside stock Flower's ``/api/task/result/<id>`` for the same task.
2. Download of that result through the plugin: time and peak Flower RSS growth.
3. A board with 100 running tasks each reporting progress twice a second (a real threads
   worker), watched by 20 live viewers: Flower CPU and update delay (median), Redis pub/sub
   connections; beside the same 20 viewers polling stock Flower's API for the same tasks.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

from tests import harness  # noqa: E402

USER, PASSWORD = "bench", "bench"
AUTH_HEADER = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
MB = 1024 * 1024


# --------------------------------------------------------------------------------------------
# processes and measuring


def start_flower(plugin: bool, port: int) -> subprocess.Popen[str]:
    args = ["fileintel", "flower"] if plugin else ["flower"]
    proc = harness.start_celery(
        *args, f"--port={port}", "--address=127.0.0.1", f"--basic_auth={USER}:{PASSWORD}",
        "--logging=error", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _ = request(port, "/healthcheck")
            if status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"Flower on port {port} did not start")


def request(port: int, path: str, sink: bool = False, timeout: float = 300) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=AUTH_HEADER)
        resp = conn.getresponse()
        if sink:  # read and drop, like a client saving to disk
            total = 0
            while chunk := resp.read(1024 * 1024):
                total += len(chunk)
            return resp.status, str(total).encode()
        return resp.status, resp.read()
    finally:
        conn.close()


class PeakRss:
    """Samples a process's RSS every 5 ms while active; ``growth`` = peak - baseline."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.baseline = self.proc.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


def timed(port: int, path: str, pid: int, runs: int, sink: bool = False) -> tuple[float, float, int]:
    """Median ms over ``runs`` requests, peak RSS growth (MB) over all of them, last status."""
    times = []
    status = 0
    with PeakRss(pid) as rss:
        for _ in range(runs):
            started = time.perf_counter()
            status, _ = request(port, path, sink=sink)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), rss.growth_mb, status


# --------------------------------------------------------------------------------------------
# 1 + 2: the 200 MB result


def write_big_result(app: object, size: int) -> str:
    from celery_ext.records import meta_key

    task_id = str(uuid.uuid4())
    backend = app.backend  # type: ignore[attr-defined]
    meta = {
        "status": "SUCCESS", "result": "x" * size, "traceback": None, "children": [],
        "date_done": datetime.utcnow().isoformat(), "task_id": task_id, "name": "bench.big",
    }
    payload = backend.encode(meta)
    del meta
    backend.client.set(meta_key(app, task_id), payload, ex=3600)
    return task_id


def big_result_section(app: object, ports: dict[str, int], pids: dict[str, int], runs: int) -> None:
    size = 200 * MB
    task_id = write_big_result(app, size)
    print(f"\n== 1. A task with a {size // MB} MB stored result ==")
    rows = []
    for label, key, path, n in (
        ("plugin  GET /api/fileintel/task/<id>", "plugin", f"/api/fileintel/task/{task_id}", runs),
        ("plugin  GET /fileintel/task/<id> (page)", "plugin", f"/fileintel/task/{task_id}", runs),
        ("plugin  GET /api/fileintel/task/<id>/result", "plugin", f"/api/fileintel/task/{task_id}/result", runs),
        ("stock   GET /api/task/result/<id>", "stock", f"/api/task/result/{task_id}", max(1, runs // 2)),
        ("stock   GET /task/<id> (page)", "stock", f"/task/{task_id}", runs),
    ):
        ms, growth, status = timed(ports[key], path, pids[key], n)
        rows.append((label, status, ms, growth, n))
    print(f"{'request':48} {'status':>6} {'median ms':>10} {'RSS growth MB':>14} {'runs':>5}")
    for label, status, ms, growth, n in rows:
        print(f"{label:48} {status:>6} {ms:>10.1f} {growth:>14.1f} {n:>5}")
    print("(stock /task/<id> answers 404: Flower's task page only knows tasks its in-memory "
          "events state has seen)")

    print(f"\n== 2. Download of the {size // MB} MB result through the plugin ==")
    ms, growth, status = timed(ports["plugin"], f"/api/fileintel/task/{task_id}/result/download",
                               pids["plugin"], max(1, runs // 2), sink=True)
    print(f"download: status {status}, median {ms / 1000:.2f} s ({size / MB / (ms / 1000):.0f} MB/s), "
          f"peak Flower RSS growth {growth:.1f} MB (target < 32 MB)")
    app.backend.client.delete(f"celery-task-meta-{task_id}")  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# 3: the live board


class SseViewer(threading.Thread):
    """One browser on the board: records the delay of every pushed progress update."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop_event = port, stop
        self.delays: list[float] = []
        self.recording = False

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/fileintel/events", headers=AUTH_HEADER)
        resp = conn.getresponse()
        event = None
        while not self.stop_event.is_set():
            try:
                line = resp.readline()
            except OSError:
                continue
            if not line:
                break
            line = line.rstrip(b"\n")
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: ") and event == "progress" and self.recording:
                now = time.time()
                for t in json.loads(line[6:])["tasks"]:
                    p = t.get("progress") or {}
                    if p.get("updated_at"):
                        self.delays.append(now - datetime.fromisoformat(p["updated_at"]).timestamp())
        conn.close()


class PollingViewer(threading.Thread):
    """The same viewer without push: polls stock Flower's result API for every task, in a
    loop, and records the delay at which each new progress value is first seen."""

    def __init__(self, port: int, task_ids: list[str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.task_ids, self.stop_event = port, task_ids, stop
        self.delays: list[float] = []
        self.requests = 0
        self.recording = False

    def run(self) -> None:
        seen: dict[str, str] = {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop_event.is_set():
            for task_id in self.task_ids:
                if self.stop_event.is_set():
                    break
                try:
                    conn.request("GET", f"/api/task/result/{task_id}", headers=AUTH_HEADER)
                    body = json.loads(conn.getresponse().read())
                except (OSError, http.client.HTTPException, ValueError):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    continue
                now = time.time()
                self.requests += self.recording
                result = body.get("result")
                stamp = result.get("updated_at") if isinstance(result, dict) else None
                if stamp and seen.get(task_id) != stamp:
                    seen[task_id] = stamp
                    if self.recording:
                        self.delays.append(now - datetime.fromisoformat(stamp).timestamp())
        conn.close()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def pubsub_connections(client: object, pid: int) -> int:
    """Pattern-subscribed connections the plugin's Flower process holds (named by live.py)."""
    from flower_fileintel.live import CLIENT_NAME_PREFIX

    return sum(
        1 for c in client.client_list()  # type: ignore[attr-defined]
        if c.get("name") == f"{CLIENT_NAME_PREFIX}{pid}" and int(c.get("psub", 0)) > 0
    )


def measure(viewers: list, pid: int, window: float) -> tuple[float, float]:
    for v in viewers:
        v.delays.clear()
        v.recording = True
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(window)
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    for v in viewers:
        v.recording = False
    delays = [d for v in viewers for d in v.delays]
    return 100.0 * (cpu1 - cpu0) / (t1 - t0), (statistics.median(delays) * 1000 if delays else float("nan"))


def board_section(app: object, ports: dict[str, int], pids: dict[str, int], rounds: int, window: float) -> None:
    n_tasks, n_viewers = 100, 20
    print(f"\n== 3. Board: {n_tasks} running tasks x 2 progress updates/s, {n_viewers} live viewers ==")
    duration_steps = int((rounds * 2 * (window + 3) + 30) / 0.5)
    with harness.run_subprocess_worker(pool="threads", concurrency=n_tasks, loglevel="INFO") as _worker:
        results = [app.tasks["tests.proj.progress_steps"].delay(duration_steps, 0.5) for _ in range(n_tasks)]  # type: ignore[attr-defined]
        ids = [r.id for r in results]
        time.sleep(3)  # all started and reporting
        client = app.backend.client  # type: ignore[attr-defined]

        stop = threading.Event()
        sse = [SseViewer(ports["plugin"], stop) for _ in range(n_viewers)]
        for v in sse:
            v.start()
        time.sleep(2)
        idle_stop = threading.Event()
        rows = []
        for _ in range(rounds):
            cpu, delay = measure(sse, pids["plugin"], window)
            rows.append(("push", cpu, delay, sum(len(v.delays) for v in sse) / window))
        subs = pubsub_connections(client, pids["plugin"])
        total_psub = sum(1 for c in client.client_list() if int(c.get("psub", 0)) > 0)
        stop.set()

        stop2 = threading.Event()
        pollers = [PollingViewer(ports["stock"], ids, stop2) for _ in range(n_viewers)]
        for v in pollers:
            v.start()
        time.sleep(2)
        _, sample = request(ports["stock"], f"/api/task/result/{ids[0]}")
        for _ in range(rounds):
            for v in pollers:
                v.requests = 0
            cpu, delay = measure(pollers, pids["stock"], window)
            rows.append(("poll", cpu, delay, sum(v.requests for v in pollers) / window))
        stop2.set()
        idle_stop.set()
        for r in results:
            r.revoke()
        for v in sse + pollers:
            v.join(5)

    def med(kind: str, i: int) -> float:
        return statistics.median(r[i] for r in rows if r[0] == kind)

    def delay(kind: str) -> str:
        value = med(kind, 2)
        return "n/a" if value != value else f"{value:.1f}"

    print(f"{'':40} {'Flower CPU %':>13} {'median delay ms':>16} {'rate /s':>10}")
    print(f"{'plugin, 20 SSE viewers (push)':40} {med('push', 1):>13.1f} {delay('push'):>16} "
          f"{med('push', 3):>10.0f}  (task updates delivered)")
    print(f"{'stock, 20 viewers polling /api/task/result':40} {med('poll', 1):>13.1f} {delay('poll'):>16} "
          f"{med('poll', 3):>10.0f}  (HTTP requests)")
    print(f"Redis pub/sub connections held by the plugin's Flower for live updates: {subs} (target: 1); "
          f"all pattern-subscribed connections on the server (workers', both Flowers' event "
          f"receivers included): {total_psub}")
    print(f"stock /api/task/result for a running task answers {sample.decode()[:160]}: the "
          "progress meta is not there, so a polling viewer never sees progress (delay: n/a)")
    print(f"(median of {rounds} rounds of {window:.0f} s each; CPU % of one core)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the script)")
    args = parser.parse_args()
    runs, rounds, window = (2, 1, 4.0) if args.quick else (5, 3, 10.0)

    server = harness.RedisServer()
    server.start()
    os.environ[harness.REDIS_URL_ENV] = server.url
    from tests.proj import app

    ports = {"plugin": harness.free_port(), "stock": harness.free_port()}
    procs = {}
    started = time.monotonic()
    try:
        procs["plugin"] = start_flower(True, ports["plugin"])
        procs["stock"] = start_flower(False, ports["stock"])
        pids = {k: p.pid for k, p in procs.items()}
        print(f"flower-fileintel benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        big_result_section(app, ports, pids, runs)
        board_section(app, ports, pids, rounds, window)
    finally:
        for proc in procs.values():
            harness.kill_process_tree(proc, term_timeout=5)
        server.close()
    print(f"\n(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
