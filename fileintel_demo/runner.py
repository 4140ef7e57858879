"""The demo runner: Redis, a worker and Flower on 127.0.0.1, a stream of demo tasks, clean stop.

``run(DemoOptions(...))`` starts, in this order: an embedded redis-server (or uses
``--redis URL``), a Celery worker (prefork) on the demo app, and Flower with the
flower-fileintel pages. It then sends one task per demo case, prints where to look at each
(the ``celery fileintel status`` command and the Flower page), and follows them.

- Interactive (default): keeps sending a new progress task and a new short-lived result
  every ``interval`` seconds, printing each change, until Ctrl-C or SIGTERM.
- ``once``: waits until every case has reached what it demonstrates (the expiring case
  until its result has expired), checks Flower shows each one the same, prints a summary
  and stops. Exit status 0 only if every case did.
- ``duration``: the interactive stream for that many seconds, then the summary.

Whatever happens (Ctrl-C, SIGTERM, a child dying), every process it started is stopped,
including the worker's pool processes, and their ports are free again.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from fileintel_demo.cases import CASES, CaseRun, CaseSpec, status_line
from fileintel_demo.processes import (
    Child,
    ChildFailed,
    find_redis_server,
    free_port,
    port_is_free,
    start_redis,
)

__all__ = ["DemoOptions", "run", "EXIT_OK", "EXIT_CASES_FAILED", "EXIT_START_FAILED", "EXIT_INTERRUPTED"]

APP_MODULE = "fileintel_demo.app"
#: Exit statuses.
EXIT_OK = 0
EXIT_CASES_FAILED = 1
EXIT_START_FAILED = 3
EXIT_INTERRUPTED = 130
#: ``result_expires`` in a scripted (``--once``) run: short, so the expiry happens in it.
ONCE_RESULT_EXPIRES = 15
#: Seconds to wait for the worker and Flower to come up.
READY_TIMEOUT = 60.0
SUMMARY_SCHEMA = "fileintel.demo-summary/1"


@dataclass
class DemoOptions:
    port: int = 5555
    redis_url: str | None = None
    once: bool = False
    duration: float | None = None
    result_expires: int | None = None
    concurrency: int = 4
    interval: float = 30.0
    timeout: float = 90.0
    summary_file: Path | None = None
    log_dir: Path | None = None
    keep_data: bool = False


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived: stop everything."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class _Started:
    """What this run started, for the stop and the summary."""

    redis: Child | None = None
    worker: Child | None = None
    flower: Child | None = None
    pids: list[int] = field(default_factory=list)

    def children(self) -> list[Child]:
        return [c for c in (self.flower, self.worker, self.redis) if c is not None]


def run(options: DemoOptions, echo: Callable[[str], None] | None = None) -> int:
    """Run the demo; returns the exit status."""
    return Demo(options, echo).run()


class Demo:
    def __init__(self, options: DemoOptions, echo: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.echo = echo or _print
        self.mode = "once" if options.once else ("duration" if options.duration else "interactive")
        self.quick = options.once
        self.result_expires = options.result_expires or (ONCE_RESULT_EXPIRES if options.once else 120)
        self.run_id = os.environ.get("FILEINTEL_DEMO_RUN_ID") or uuid.uuid4().hex
        self.external_redis = options.redis_url is not None
        # A shared Redis gets a per-run prefix, so the demo's keys (and only those) can be
        # deleted at the end; the embedded one dies with the demo anyway.
        self.key_prefix = f"fileintel-demo:{self.run_id[:8]}:" if self.external_redis else "fileintel-demo:"
        self.redis_url = options.redis_url or ""
        self.redis_where = ""
        self.started = _Started()
        self.workdir = Path(".")
        self.own_workdir = False
        self.flower_port = options.port
        self.flower_url = ""
        self.flower_plugin = True
        self.demo: ModuleType | None = None
        self.runs: list[CaseRun] = []
        self.signal_received: int | None = None
        self.hurry = False
        self.error: str | None = None
        self.flower_answered = False
        self.leftover_pids: list[int] = []
        self.state_written = False

    # -- signals ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_received is not None:
            self.hurry = True  # a second Ctrl-C: stop without waiting for warm shutdowns
        self.signal_received = signum

    def _check_signal(self) -> None:
        if self.signal_received is not None:
            raise Interrupted(self.signal_received)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._check_signal()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.05, left))

    # -- the whole run ------------------------------------------------------------------------
    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = EXIT_OK
        try:
            self._start()
            self._send_cases()
            code = self._follow()
        except Interrupted as exc:
            self.echo(f"\n{exc.args[0]} received: stopping everything the demo started...")
            code = EXIT_OK if self.mode == "interactive" else EXIT_INTERRUPTED
        except ChildFailed as exc:
            self.error = str(exc)
            self.echo(f"\nThe demo cannot go on: {exc}")
            code = EXIT_START_FAILED
        except Exception as exc:  # say what broke, then still stop everything
            self.error = f"{type(exc).__name__}: {exc}"
            self.echo(f"\nThe demo stopped on an unexpected error: {self.error}")
            code = EXIT_START_FAILED
        finally:
            # Keep signals pointed at us until everything is stopped.
            try:
                self._shutdown(failed=code not in (EXIT_OK, EXIT_INTERRUPTED))
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if self.leftover_pids and code == EXIT_OK:
            code = EXIT_START_FAILED
        if self.mode != "interactive" or self.runs:
            self._print_summary(code)
        if self.error:
            self.echo(f"\nThe demo failed: {self.error.splitlines()[0]}")
        self._write_summary(code)
        return code

    # -- start --------------------------------------------------------------------------------
    def _start(self) -> None:
        if self.options.log_dir is not None:
            self.workdir = self.options.log_dir
            self.workdir.mkdir(parents=True, exist_ok=True)
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="fileintel-demo-"))
            self.own_workdir = True
        env = self._child_env()

        if self.external_redis:
            self._check_external_redis()
            self.redis_where = f"your Redis at {_redact(self.redis_url)}"
        else:
            _, where = find_redis_server()
            self.echo(f"Starting an embedded redis-server ({where}) on 127.0.0.1...")
            try:
                child, self.redis_url = start_redis(self.workdir, env, lambda: self.signal_received is not None)
            except ChildFailed:
                self._check_signal()  # interrupted while waiting: that is not a failure
                raise
            self._track(child, "redis")
            self.redis_where = f"embedded redis-server on {self.redis_url.rsplit('/', 1)[0]}"
        self._check_signal()

        env.update(self._demo_env())
        os.environ.update(self._demo_env())  # this process sends the tasks: same app config
        self.demo = _import_demo_app()
        self._write_state()

        hostname = f"fileintel-demo-{self.run_id[:8]}@localhost"
        self.echo(f"Starting a Celery worker ({self.options.concurrency} prefork processes)...")
        worker = Child(
            "Celery worker",
            [
                sys.executable, "-m", "celery", "-A", APP_MODULE, "worker",
                "-P", "prefork",
                "-c", str(self.options.concurrency),
                "-n", hostname,
                "-Q", self.demo.DEMO_QUEUE,
                "-E",
                "--loglevel", "INFO",
                "--without-mingle", "--without-gossip",
            ],
            self.workdir / "worker.log",
            env,
        )
        self._track(worker, "worker")

        if not port_is_free(self.options.port):
            self.flower_port = free_port()
            self.echo(f"Port {self.options.port} is taken: Flower will use port {self.flower_port} instead.")
        self.flower_url = f"http://127.0.0.1:{self.flower_port}"
        flower_args = ["fileintel", "flower"]
        if importlib.util.find_spec("flower_fileintel.command") is None:  # pragma: no cover
            self.flower_plugin = False
            flower_args = ["flower"]
            self.echo("The flower-fileintel Flower command is missing: starting plain Flower.")
        self.echo(f"Starting Flower on {self.flower_url} ...")
        flower = Child(
            "Flower",
            [
                sys.executable, "-m", "celery", "-A", APP_MODULE, *flower_args,
                "--address=127.0.0.1", f"--port={self.flower_port}",
            ],
            self.workdir / "flower.log",
            env,
        )
        self._track(flower, "flower")
        self._wait_ready(worker, flower, hostname)
        self._print_banner(hostname)

    def _track(self, child: Child, role: str) -> None:
        setattr(self.started, role, child)
        self.started.pids.append(child.pid)

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The children import this package: make sure they find this copy of it (a checkout
        # run without installing; an installed copy is found anyway).
        package_root = str(Path(__file__).resolve().parents[1])
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        installed = Path(package_root).name in ("site-packages", "dist-packages")
        if package_root not in paths and not installed:
            env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
        env["PYTHONUNBUFFERED"] = "1"
        env["FILEINTEL_DEMO_RUN_ID"] = self.run_id
        # Flower's JSON API refuses to run without auth unless told: the demo listens on
        # 127.0.0.1 only, so its API is open, as the printed curl examples expect.
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
        return env

    def _demo_env(self) -> dict[str, str]:
        return {
            "FILEINTEL_DEMO_REDIS_URL": self.redis_url,
            "FILEINTEL_DEMO_KEY_PREFIX": self.key_prefix,
            "FILEINTEL_DEMO_RESULT_EXPIRES": str(self.result_expires),
            "FILEINTEL_DEMO_EXPIRY_WARNING": str(max(1, self.result_expires // 2)),
            "FILEINTEL_DEMO_RUN_ID": self.run_id,
        }

    def _check_external_redis(self) -> None:
        import redis

        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=3, socket_connect_timeout=3)
            try:
                client.ping()
            finally:
                client.close()
        except (redis.RedisError, OSError, ValueError) as exc:
            raise ChildFailed(
                f"Cannot reach the Redis given with --redis ({_redact(self.redis_url)}): {exc}. "
                "Check the URL, or leave --redis out to use the embedded one."
            ) from None

    def _wait_ready(self, worker: Child, flower: Child, hostname: str) -> None:
        from fileintel_demo.probe import healthy

        deadline = time.monotonic() + READY_TIMEOUT
        worker_ready = flower_ready = False
        while not (worker_ready and flower_ready):
            self._check_signal()
            self._check_children()
            if not worker_ready:
                with contextlib.suppress(OSError):
                    worker_ready = f"{hostname} ready." in worker.log.read_text(errors="replace")
            if not flower_ready:
                flower_ready = healthy(self.flower_url)
            if time.monotonic() > deadline:
                late = worker if not worker_ready else flower
                raise late.failure(f"was not ready within {READY_TIMEOUT:.0f} s")
            self._sleep(0.1)

    def _check_children(self) -> None:
        for child in self.started.children():
            if not child.alive():
                raise child.failure("exited unexpectedly")

    # -- banner and cases ---------------------------------------------------------------------
    def _print_banner(self, hostname: str) -> None:
        assert self.demo is not None
        warning = max(1, self.result_expires // 2)
        lines = [
            "",
            "flower-fileintel demo is running (everything on 127.0.0.1).",
            f"  Flower, fileintel board : {self.flower_url}/fileintel",
            f"  Flower itself           : {self.flower_url}/",
            f"  JSON API, e.g.          : curl {self.flower_url}/api/fileintel/task/<task id>",
            f"  Redis                   : {self.redis_where}, keys under {self.key_prefix!r}"
            + (" (nothing else is touched; the demo deletes its keys when it stops)" if self.external_redis else ""),
            f"  Worker                  : {hostname}, {self.options.concurrency} prefork processes, "
            f"queue {self.demo.DEMO_QUEUE!r}",
            f"  Results expire after {self.result_expires} s (result_expires); the expiry warning "
            f"shows in their last {warning} s.",
            f"  Terminal view           : {_celery_command()} -A {APP_MODULE} fileintel status <task id>",
            f"  Logs                    : {self.workdir}",
        ]
        if self.mode == "interactive":
            lines.append("  Press Ctrl-C to stop everything.")
        self.echo("\n".join(lines))

    def _send_cases(self) -> None:
        assert self.demo is not None
        self.echo("\nDemo tasks (one per case):")
        for spec in CASES:
            self._send(spec)

    def _send(self, spec: CaseSpec) -> CaseRun:
        assert self.demo is not None
        result = spec.send(self.demo, self.quick)
        run = CaseRun(spec, result.id, wait_for_expiry=self.options.once)
        self.runs.append(run)
        cli = f"{_celery_command()} -A {APP_MODULE} fileintel"
        lines = [f"  {spec.key:<12} {spec.title}", f"  {'':<12} {cli} status {result.id}"]
        if spec.also:
            lines.append(f"  {'':<12} {cli} {spec.also.format(id=result.id)}")
        lines.append(f"  {'':<12} {self.flower_url}/fileintel/task/{result.id}")
        self.echo("\n".join(lines))
        return run

    # -- following the tasks ------------------------------------------------------------------
    def _follow(self) -> int:
        assert self.demo is not None
        self.echo("")
        started = time.monotonic()
        next_batch = started + self.options.interval
        poll = 0.25 if self.mode == "once" else 1.0
        while True:
            self._check_children()
            self._observe()
            now = time.monotonic()
            if self.mode == "once":
                if all(r.done and r.flower is not None for r in self.runs):
                    break
                if now - started > self.options.timeout:
                    self._time_out(now - started)
                    break
            else:
                if self.options.duration is not None and now - started >= self.options.duration:
                    break
                if now >= next_batch:
                    next_batch = now + self.options.interval
                    self.echo(f"[{_clock()}] sending more tasks:")
                    for spec in CASES:
                        if spec.key in ("progress", "expiring"):
                            self._send(spec)
                    self._forget_old_runs()
            self._sleep(poll)
        if self.mode == "once":
            bad = [r for r in self.runs if not (r.done and r.ok and r.flower == "ok")]
        else:  # a case still under way when the time is up is not a failure
            bad = [r for r in self.runs if r.done and not (r.ok and r.flower in (None, "ok"))]
        healthy = self._flower_healthy()
        self.flower_answered = healthy and all(r.flower == "ok" for r in self.runs if r.flower is not None)
        return EXIT_CASES_FAILED if bad or not healthy else EXIT_OK

    def _observe(self) -> None:
        import celery_ext

        assert self.demo is not None
        live = [r for r in self.runs if not (r.done and r.flower is not None) or self.mode != "once"]
        if not live:
            return
        statuses = celery_ext.describe_many(self.demo.app, [r.task_id for r in live])
        warning = float(max(1, self.result_expires // 2))
        for run, status in zip(live, statuses):
            run.observe(status, warning)
            line = status_line(status, warning)
            if line != run.last_line:
                run.last_line = line
                self.echo(f"[{_clock()}] {run.spec.key:<12} {run.task_id[:8]}  {line}")
            if run.wants_revoke():
                run.revoke_sent = True
                self.demo.app.control.revoke(run.task_id, terminate=True, signal="SIGTERM")
                self.echo(f"[{_clock()}] {run.spec.key:<12} {run.task_id[:8]}  revoking it (terminate=True)")
            if run.done and run.flower is None:
                from fileintel_demo.probe import check_case

                run.flower = check_case(self.flower_url, run, status) if self.flower_plugin else "ok"
                if run.flower != "ok" or not run.ok:
                    self.echo(f"[{_clock()}] {run.spec.key:<12} {run.task_id[:8]}  PROBLEM: "
                              f"{run.detail if not run.ok else run.flower}")

    def _forget_old_runs(self) -> None:
        """Keep following the first batch and the latest few; the rest stays in Flower."""
        first = self.runs[: len(CASES)]
        later = self.runs[len(CASES):]
        self.runs = first + later[-12:]

    def _time_out(self, elapsed: float) -> None:
        for run in self.runs:
            if not run.done:
                run.done = True
                run.ok = False
                run.detail = f"did not reach '{run.spec.expected}' within {elapsed:.0f} s (seen: {' -> '.join(run.phases) or 'nothing'})"
            if run.flower is None:
                run.flower = "not checked"

    def _flower_healthy(self) -> bool:
        from fileintel_demo.probe import healthy

        return bool(self.flower_url) and healthy(self.flower_url)

    # -- stop ---------------------------------------------------------------------------------
    def _shutdown(self, failed: bool) -> None:
        started = self.started
        if not started.children():
            self._cleanup_files(failed)
            return
        self.echo("Stopping Flower, the worker" + ("" if self.external_redis else " and Redis") + "...")
        with contextlib.suppress(Exception):
            from celery_ext.writer import flush_all

            flush_all(timeout=2.0)
        # Flower and the worker together: SIGTERM for Flower, SIGQUIT (cold shutdown: do not
        # wait for the running demo tasks) for the worker; whatever is left is killed.
        grace = 0.5 if self.hurry else 5.0
        if started.flower is not None:
            started.flower.send(signal.SIGTERM)
        if started.worker is not None:
            started.worker.send(signal.SIGQUIT)
        for child in (started.flower, started.worker):
            if child is not None:
                child.stop(None, timeout=grace)
        if self.external_redis and not self.options.keep_data:
            self._delete_demo_keys()
        if self.demo is not None:
            with contextlib.suppress(Exception):
                self.demo.app.close()
        if started.redis is not None:
            started.redis.stop(signal.SIGTERM, timeout=grace)
        self.leftover_pids = sorted({pid for c in started.children() for pid in c.group_pids()})
        if self.leftover_pids:
            self.echo(f"Could not stop processes {self.leftover_pids}: stop them by hand.")
        else:
            self.echo("Stopped: no process of the demo is left.")
        self._cleanup_files(failed)

    def _delete_demo_keys(self) -> None:
        """Delete the keys under this run's own prefix in the user's Redis (never FLUSH)."""
        import redis

        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=3)
            with client:
                batch = []
                for key in client.scan_iter(match=self.key_prefix + "*", count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        client.unlink(*batch)
                        batch.clear()
                if batch:
                    client.unlink(*batch)
        except (redis.RedisError, OSError) as exc:
            self.echo(f"Could not delete the demo's keys ({self.key_prefix}*) from your Redis: {exc}")

    def _cleanup_files(self, failed: bool) -> None:
        if self.state_written:
            with contextlib.suppress(Exception):
                from fileintel_demo.app import read_state, state_file

                if read_state().get("pid") == os.getpid():
                    state_file().unlink()
        if self.own_workdir:
            if failed:
                self.echo(f"The logs are kept in {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _write_state(self) -> None:
        """Tell ``celery -A fileintel_demo.app ...`` in other terminals where we are."""
        from fileintel_demo.app import state_file

        data = {
            "pid": os.getpid(),
            "run_id": self.run_id,
            "redis_url": self.redis_url,
            "key_prefix": self.key_prefix,
        }
        path = state_file()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            os.replace(tmp, path)
            self.state_written = True

    # -- summary ------------------------------------------------------------------------------
    def _print_summary(self, code: int) -> None:
        if not self.runs:
            return
        first = self.runs[: len(CASES)]
        rows = [("case", "task id", "expected", "reached", "flower", "ok")]
        for r in first:
            verdict = "yes" if (r.done and r.ok and r.flower == "ok") else ("pending" if not r.done else "NO")
            rows.append((r.spec.key, r.task_id, _expected(r), r.reached, r.flower or "-", verdict))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        lines = ["", "Summary:"]
        for i, row in enumerate(rows):
            lines.append("  " + "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        for r in first:
            if r.detail:
                lines.append(f"  {r.spec.key}: {r.detail}")
        if self.mode != "interactive":
            pending = [r.spec.key for r in first if not r.done]
            if code != EXIT_OK:
                verdict = f"Exit status {code}."
            elif pending:
                verdict = f"No case went wrong; still under way when the time was up: {', '.join(pending)}."
            else:
                verdict = "Every case reached its expected phase."
            lines.append(f"Flower answered: {'yes' if self.flower_answered else 'no'}. {verdict}")
        self.echo("\n".join(lines))

    def _write_summary(self, code: int) -> None:
        path = self.options.summary_file
        if path is None:
            return
        doc: dict[str, Any] = {
            "schema": SUMMARY_SCHEMA,
            "ok": code == EXIT_OK,
            "exit_code": code,
            "mode": self.mode,
            "run_id": self.run_id,
            "flower_url": self.flower_url,
            "flower_plugin": self.flower_plugin,
            "flower_answered": self.flower_answered,
            "redis": "external" if self.external_redis else "embedded",
            "key_prefix": self.key_prefix,
            "result_expires": self.result_expires,
            "started_pids": self.started.pids,
            "leftover_pids": self.leftover_pids,
            "error": self.error,
            "signal": signal.Signals(self.signal_received).name if self.signal_received else None,
            "cases": [
                {
                    "case": r.spec.key,
                    "title": r.spec.title,
                    "task_id": r.task_id,
                    "expected": _expected(r),
                    "reached": r.reached,
                    "phases": r.phases,
                    "done": r.done,
                    "ok": r.ok,
                    "detail": r.detail,
                    "flower": r.flower,
                    "status_command": f"celery -A {APP_MODULE} fileintel status {r.task_id}",
                    "detail_url": f"{self.flower_url}/fileintel/task/{r.task_id}",
                }
                for r in self.runs
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")


# -- helpers ----------------------------------------------------------------------------------


def _print(text: str) -> None:
    print(text, flush=True)


def _expected(run: CaseRun) -> str:
    if run.spec.key == "expiring" and not run.wait_for_expiry:
        return "succeeded (its result expires later)"
    return run.spec.expected


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _redact(url: str) -> str:
    from celery_ext.errors import redact_url

    return redact_url(url)


def _import_demo_app() -> ModuleType:
    """Import the demo app (re-import it if an earlier run configured it differently)."""
    if APP_MODULE in sys.modules:
        return importlib.reload(sys.modules[APP_MODULE])
    return importlib.import_module(APP_MODULE)


def _celery_command() -> str:
    """How the user runs this environment's ``celery``: plain ``celery`` when that is the one on
    PATH, else its path (relative when under the current directory, e.g. ``.venv/bin/celery``)."""
    ours = Path(sys.executable).parent / "celery"
    found = shutil.which("celery")
    if found and Path(found).parent == ours.parent:
        return "celery"
    with contextlib.suppress(ValueError):
        return str(ours.relative_to(Path.cwd()))
    return str(ours)
