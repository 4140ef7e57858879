"""Starting and stopping what the demo runs: Redis, the worker, Flower, and their files.

``start`` brings them up in order and waits until each is ready; ``shutdown`` stops them in
the reverse order whatever happened before (Ctrl-C, a child dying, an error), deletes the
demo's keys from a Redis given with ``--redis`` and removes its temporary files. The demo
talks to Redis only through its Celery app and ``celery_ext``.
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
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from fileintel_demo import report
from fileintel_demo.options import APP_MODULE, READY_TIMEOUT
from fileintel_demo.processes import (
    Child,
    ChildFailed,
    find_redis_server,
    free_port,
    port_is_free,
    start_redis,
)

if TYPE_CHECKING:
    from fileintel_demo.runner import Demo

__all__ = ["shutdown", "start"]


def start(demo: Demo) -> None:
    """Start (or reach) Redis, then the worker and Flower; return once both are ready."""
    if demo.options.log_dir is not None:
        demo.workdir = demo.options.log_dir
        demo.workdir.mkdir(parents=True, exist_ok=True)
    else:
        demo.workdir = Path(tempfile.mkdtemp(prefix="fileintel-demo-"))
        demo.own_workdir = True
    env = _child_env(demo)

    if not demo.external_redis:
        _, where = find_redis_server()
        demo.echo(f"Starting an embedded redis-server ({where}) on 127.0.0.1...")
        try:
            child, demo.redis_url = start_redis(demo.workdir, env, lambda: demo.signal_received is not None)
        except ChildFailed:
            demo.check_signal()  # interrupted while waiting: that is not a failure
            raise
        _track(demo, child, "redis")
        demo.redis_where = f"embedded redis-server on {demo.redis_url.rsplit('/', 1)[0]}"
    demo.check_signal()

    env.update(_demo_env(demo))
    os.environ.update(_demo_env(demo))  # this process sends the tasks: same app config
    demo.demo = _import_demo_app()
    if demo.external_redis:
        _check_external_redis(demo, demo.demo)
        demo.redis_where = f"your Redis at {report.redact(demo.redis_url)}"
    _write_state(demo)

    hostname = f"fileintel-demo-{demo.run_id[:8]}@localhost"
    demo.echo(f"Starting a Celery worker ({demo.options.concurrency} prefork processes)...")
    worker = Child(
        "Celery worker",
        [
            sys.executable, "-m", "celery", "-A", APP_MODULE, "worker",
            "-P", "prefork",
            "-c", str(demo.options.concurrency),
            "-n", hostname,
            "-Q", demo.demo.DEMO_QUEUE,
            "-E",
            "--loglevel", "INFO",
            "--without-mingle", "--without-gossip",
        ],
        demo.workdir / "worker.log",
        env,
    )
    _track(demo, worker, "worker")

    if not port_is_free(demo.options.port):
        demo.flower_port = free_port()
        demo.echo(f"Port {demo.options.port} is taken: Flower will use port {demo.flower_port} instead.")
    demo.flower_url = f"http://127.0.0.1:{demo.flower_port}"
    flower_args = ["fileintel", "flower"]
    if importlib.util.find_spec("flower_fileintel.command") is None:  # pragma: no cover
        demo.flower_plugin = False
        flower_args = ["flower"]
        demo.echo("The flower-fileintel Flower command is missing: starting plain Flower.")
    demo.echo(f"Starting Flower on {demo.flower_url} ...")
    flower = Child(
        "Flower",
        [
            sys.executable, "-m", "celery", "-A", APP_MODULE, *flower_args,
            "--address=127.0.0.1", f"--port={demo.flower_port}",
        ],
        demo.workdir / "flower.log",
        env,
    )
    _track(demo, flower, "flower")
    _wait_ready(demo, worker, flower, hostname)
    report.print_banner(demo, hostname)


def check_children(demo: Demo) -> None:
    """Raise ``ChildFailed`` (with the end of its log) if a started process has exited."""
    for child in demo.started.children():
        if not child.alive():
            raise child.failure("exited unexpectedly")


def _track(demo: Demo, child: Child, role: str) -> None:
    setattr(demo.started, role, child)
    demo.started.pids.append(child.pid)


def _child_env(demo: Demo) -> dict[str, str]:
    env = dict(os.environ)
    # The children import this package: make sure they find this copy of it (a checkout
    # run without installing; an installed copy is found anyway).
    package_root = str(Path(__file__).resolve().parents[1])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    installed = Path(package_root).name in ("site-packages", "dist-packages")
    if package_root not in paths and not installed:
        env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    env["PYTHONUNBUFFERED"] = "1"
    env["FILEINTEL_DEMO_RUN_ID"] = demo.run_id
    # Flower's JSON API refuses to run without auth unless told: the demo listens on
    # 127.0.0.1 only, so its API is open, as the printed curl examples expect.
    env["FLOWER_UNAUTHENTICATED_API"] = "true"
    return env


def _demo_env(demo: Demo) -> dict[str, str]:
    return {
        "FILEINTEL_DEMO_REDIS_URL": demo.redis_url,
        "FILEINTEL_DEMO_KEY_PREFIX": demo.key_prefix,
        "FILEINTEL_DEMO_RESULT_EXPIRES": str(demo.result_expires),
        "FILEINTEL_DEMO_EXPIRY_WARNING": str(max(1, demo.result_expires // 2)),
        "FILEINTEL_DEMO_RUN_ID": demo.run_id,
    }


def _import_demo_app() -> ModuleType:
    """Import the demo app (re-import it if an earlier run configured it differently)."""
    if APP_MODULE in sys.modules:
        return importlib.reload(sys.modules[APP_MODULE])
    return importlib.import_module(APP_MODULE)


def _check_external_redis(demo: Demo, app_module: ModuleType) -> None:
    """PING the Redis given with ``--redis`` through the demo app's own client (its timeouts
    fail a dead Redis in seconds), before starting anything on it."""
    from celery_ext.records import redis_client

    try:
        # The library's reading client (fileintel_read_timeout, no retries); it stays open
        # for the run, so it is not closed here.
        redis_client(app_module.app).ping()
    except Exception as exc:  # whatever the URL or the server got wrong, the advice is the same
        raise ChildFailed(
            f"Cannot reach the Redis given with --redis ({report.redact(demo.redis_url)}): {exc}. "
            "Check the URL, or leave --redis out to use the embedded one."
        ) from None


def _wait_ready(demo: Demo, worker: Child, flower: Child, hostname: str) -> None:
    from fileintel_demo.probe import healthy

    deadline = time.monotonic() + READY_TIMEOUT
    worker_ready = flower_ready = False
    while not (worker_ready and flower_ready):
        demo.check_signal()
        check_children(demo)
        if not worker_ready:
            with contextlib.suppress(OSError):
                worker_ready = f"{hostname} ready." in worker.log.read_text(errors="replace")
        if not flower_ready:
            flower_ready = healthy(demo.flower_url)
        if time.monotonic() > deadline:
            late = worker if not worker_ready else flower
            raise late.failure(f"was not ready within {READY_TIMEOUT:.0f} s")
        demo.sleep(0.1)


def _write_state(demo: Demo) -> None:
    """Tell ``celery -A fileintel_demo.app ...`` in other terminals where we are."""
    from fileintel_demo.app import state_file

    data = {
        "pid": os.getpid(),
        "run_id": demo.run_id,
        "redis_url": demo.redis_url,
        "key_prefix": demo.key_prefix,
    }
    path = state_file()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
        demo.state_written = True


# -- stop -------------------------------------------------------------------------------------


def shutdown(demo: Demo, failed: bool) -> None:
    """Stop everything ``start`` started (Flower and the worker first, Redis last) and say
    whether any process is left; ``failed`` keeps the logs for the user to read."""
    started = demo.started
    if not started.children():
        _cleanup_files(demo, failed)
        return
    demo.echo("Stopping Flower, the worker" + ("" if demo.external_redis else " and Redis") + "...")
    with contextlib.suppress(Exception):
        from celery_ext.writer import flush_all

        flush_all(timeout=2.0)
    # Flower and the worker together: SIGTERM for Flower, SIGQUIT (cold shutdown: do not
    # wait for the running demo tasks) for the worker; whatever is left is killed.
    grace = 0.5 if demo.hurry else 5.0
    if started.flower is not None:
        started.flower.send(signal.SIGTERM)
    if started.worker is not None:
        started.worker.send(signal.SIGQUIT)
    for child in (started.flower, started.worker):
        if child is not None:
            child.stop(None, timeout=grace)
    if demo.external_redis and not demo.options.keep_data:
        _delete_demo_keys(demo)
    if demo.demo is not None:
        with contextlib.suppress(Exception):
            demo.demo.app.close()
    if started.redis is not None:
        started.redis.stop(signal.SIGTERM, timeout=grace)
    demo.leftover_pids = sorted({pid for c in started.children() for pid in c.group_pids()})
    if demo.leftover_pids:
        demo.echo(f"Could not stop processes {demo.leftover_pids}: stop them by hand.")
    else:
        demo.echo("Stopped: no process of the demo is left.")
    _cleanup_files(demo, failed)


def _delete_demo_keys(demo: Demo) -> None:
    """Delete the keys under this run's own prefix in the user's Redis (never FLUSH)."""
    if demo.demo is None:  # never got as far as configuring the app: it wrote nothing
        return
    from celery_ext.records import redis_client

    try:
        # A raw client (keys as stored): the pattern already carries the demo's prefix.
        client = redis_client(demo.demo.app)
        batch = []
        for key in client.scan_iter(match=demo.key_prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
    except Exception as exc:  # a Redis gone by now: say so, the stop goes on
        demo.echo(f"Could not delete the demo's keys ({demo.key_prefix}*) from your Redis: {exc}")


def _cleanup_files(demo: Demo, failed: bool) -> None:
    if demo.state_written:
        with contextlib.suppress(Exception):
            from fileintel_demo.app import read_state, state_file

            if read_state().get("pid") == os.getpid():
                state_file().unlink()
    if demo.own_workdir:
        if failed:
            demo.echo(f"The logs are kept in {demo.workdir}")
        else:
            shutil.rmtree(demo.workdir, ignore_errors=True)
