"""The embedded demo, run for real: its own redis-server, a prefork worker and Flower.

Each test starts ``python -m fileintel_demo`` in a subprocess, exactly as
``scripts/demo`` does, and checks what a newcomer relies on: every case reaches its
expected phase and Flower shows it the same (``--once``), and Ctrl-C / SIGTERM / a child
dying leave no process and no listening port behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from fileintel_demo.processes import port_is_free
from tests.harness import (
    REPO_ROOT,
    _register,
    free_port,
    kill_process_tree,
    spawn,
    wait_for,
)

CASES = {"progress", "failure", "placeholders", "download", "expiring", "queued", "revoked", "html"}


class DemoProcess:
    """``python -m fileintel_demo ...`` with its output in a file and a known run id."""

    def __init__(self, tmp_path: Path, *args: str, port: int | None = None) -> None:
        self.run_id = uuid.uuid4().hex
        self.port = port or free_port()
        self.output = tmp_path / f"demo-{self.run_id[:8]}.out"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        env["FILEINTEL_DEMO_RUN_ID"] = self.run_id
        env["FILEINTEL_DEMO_STATE_FILE"] = str(tmp_path / "demo-state.json")
        cmd = [sys.executable, "-m", "fileintel_demo", "--port", str(self.port), *args]
        with open(self.output, "wb") as out:
            # Its own session, like a terminal's job: signals go to the demo only.
            self.proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        _register(self.proc)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 90.0) -> None:
        def printed() -> bool:
            if self.proc.poll() is not None and needle not in self.text():
                raise AssertionError(f"the demo exited ({self.proc.returncode}) before {needle!r}:\n{self.text()}")
            return needle in self.text()

        wait_for(printed, timeout, what=lambda: f"the demo to print {needle!r}:\n{self.text()}")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the demo did not exit within {timeout} s:\n{self.text()}") from None

    def processes(self) -> list[psutil.Process]:
        """Every live process carrying this run's id (the demo passes it to all it starts)."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get("FILEINTEL_DEMO_RUN_ID") == self.run_id:
                    found.append(proc)
        return found

    def cleanup(self) -> None:
        kill_process_tree(self.proc)
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _assert_all_gone(demo: DemoProcess, summary: dict[str, Any] | None = None) -> None:
    left = demo.processes()
    assert not left, "processes the demo started are still running: " + ", ".join(
        f"{p.pid} {' '.join(p.cmdline())}" for p in left
    )
    if summary is not None:
        assert summary["leftover_pids"] == []
        for pid in summary["started_pids"]:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert port_is_free(demo.port), f"something still listens on Flower's port {demo.port}"


def _printed_task_ids(output: str) -> dict[str, str]:
    """Each case's task id, from the ``status`` command the demo printed under its title."""
    found = re.findall(r"^  (\w+) +.*\n +\S+ -A fileintel_demo\.app fileintel status (\S+)$", output, re.M)
    return dict(found)


def _status_command(tmp_path: Path, task_id: str) -> subprocess.CompletedProcess[str]:
    """The printed ``status`` command, typed in another terminal (it finds the demo through
    its state file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEINTEL_DEMO_")}
    env["FILEINTEL_DEMO_STATE_FILE"] = str(tmp_path / "demo-state.json")
    env["PYTHONPATH"] = str(REPO_ROOT)
    celery = str(Path(sys.executable).parent / "celery")
    cmd = [celery, "-A", "fileintel_demo.app", "fileintel", "status", task_id, "--json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)


def _finished_status(tmp_path: Path, task_id: str) -> dict[str, Any] | None:
    proc = _status_command(tmp_path, task_id)
    doc: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return doc if doc.get("phase") in ("succeeded", "failed") and doc.get("expires_in_s") is not None else None


@pytest.mark.slow
@pytest.mark.integration
def test_once_every_case_reaches_its_phase_and_flower_answers(tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    demo = DemoProcess(tmp_path, "--once", "--summary-file", str(summary_file))
    try:
        code = demo.wait(150)
        output = demo.text()
        assert code == 0, output
        summary = json.loads(summary_file.read_text())
        assert summary["schema"] == "fileintel.demo-summary/1"
        assert summary["ok"] is True and summary["mode"] == "once"
        assert summary["flower_plugin"] is True
        assert summary["flower_answered"] is True
        assert summary["redis"] == "embedded"
        by_case = {c["case"]: c for c in summary["cases"]}
        assert set(by_case) == CASES
        for name, case in by_case.items():
            assert case["done"] and case["ok"], (name, case)
            assert case["flower"] == "ok", (name, case)
            # The terminal command for each case is printed.
            assert f"fileintel status {case['task_id']}" in output
            assert f"/fileintel/task/{case['task_id']}" in output
        assert by_case["progress"]["phases"][-1] == "succeeded" and "running" in by_case["progress"]["phases"]
        assert by_case["failure"]["reached"] == "failed"
        assert by_case["expiring"]["reached"] == "succeeded (expired)"
        assert by_case["queued"]["reached"] == "queued"
        assert by_case["revoked"]["reached"] == "revoked"
        assert "Every case reached its expected phase." in output
        assert "no process of the demo is left" in output
        _assert_all_gone(demo, summary)
        assert len(summary["started_pids"]) == 3  # redis-server, worker, Flower
    finally:
        demo.cleanup()


@pytest.mark.slow
@pytest.mark.integration
def test_sigint_stops_everything_and_a_second_start_works_at_once(tmp_path: Path) -> None:
    port = free_port()
    first = DemoProcess(tmp_path, "--interval", "5", port=port)
    try:
        first.wait_for("Press Ctrl-C to stop everything.")
        first.wait_for("] progress ")  # following the tasks
        assert first.processes(), "the demo's children should carry its run id"
        # The printed commands work while it runs; showcase results live 30 minutes, the
        # expiring case's 120 s, and each record says its own.
        ids = _printed_task_ids(first.text())
        failure = wait_for(lambda: _finished_status(tmp_path, ids["failure"]), 60, what="the failure case to fail", interval=0.5)
        expiring = wait_for(lambda: _finished_status(tmp_path, ids["expiring"]), 60, what="the expiring case to end", interval=0.5)
        assert failure["phase"] == "failed" and failure["expires_in_s"] > 29 * 60, failure
        assert expiring["phase"] == "succeeded" and 0 < expiring["expires_in_s"] <= 120, expiring
        first.proc.send_signal(signal.SIGINT)
        assert first.wait(30) == 0, first.text()
        assert "SIGINT received" in first.text()
        assert "no process of the demo is left" in first.text()
        assert "The demo is not running any more" in first.text()
        _assert_all_gone(first)
        # The same command now says the demo stopped, instead of reading another Redis.
        after = _status_command(tmp_path, ids["failure"])
        assert after.returncode == 69, after
        assert "demo is not running (any more)" in after.stderr and "Traceback" not in after.stderr
    finally:
        first.cleanup()

    # Same port, right away: nothing of the first run holds it. Stopped with SIGTERM this time.
    second = DemoProcess(tmp_path, port=port)
    try:
        second.wait_for("Press Ctrl-C to stop everything.")
        assert f"Port {port} is taken" not in second.text()
        assert f"http://127.0.0.1:{port}/fileintel" in second.text()
        second.proc.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.text()
        assert "SIGTERM received" in second.text()
        _assert_all_gone(second)
    finally:
        second.cleanup()


@pytest.mark.slow
@pytest.mark.integration
def test_a_child_dying_stops_the_demo_with_its_log(tmp_path: Path) -> None:
    demo = DemoProcess(tmp_path, "--log-dir", str(tmp_path / "logs"))
    try:
        demo.wait_for("Press Ctrl-C to stop everything.")
        workers = [
            p for p in demo.processes()
            if "worker" in p.cmdline() and p.ppid() == demo.proc.pid
        ]
        assert len(workers) == 1, [p.cmdline() for p in demo.processes()]
        workers[0].kill()
        code = demo.wait(30)
        output = demo.text()
        assert code == 3, output
        assert "The Celery worker exited unexpectedly" in output
        assert "The end of its log" in output
        _assert_all_gone(demo)
    finally:
        demo.cleanup()


def test_once_and_duration_together_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fileintel_demo", "--once", "--duration", "5"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
    )
    assert proc.returncode == 2
    assert "--once and --duration" in proc.stderr


def test_celery_fileintel_demo_is_the_same_command() -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "celery"), "fileintel", "demo", "--help"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--once" in proc.stdout and "--redis" in proc.stdout
