"""``celery -A tests.proj fileintel ...`` through the real ``celery`` executable.

Every exit code of the issue's table, stdout cleanliness, timeouts, Ctrl-C, outages and a
50 MB result written with bounded memory. The CLI runs in a subprocess against the private
Redis; the tasks run on the in-process worker.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from celery_ext.records import meta_key
from tests import harness, proj
from tests.conftest import run_celery, start_celery
from tests.status_checks import check_document, revoke_confirmed, wait_for

pytestmark = pytest.mark.integration

#: Process start-up of ``celery`` (imports, app loading) on a slow CI machine: generous, and
#: only ever added to an explicit --timeout contract.
STARTUP_MARGIN = 8.0


def fileintel(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return run_celery("fileintel", *args, **kwargs)


def _finished(app, task_id: str) -> None:
    """Wait until the task's record is complete (the worker writes it in the background)."""
    wait_for(app, task_id, lambda s: s.phase.finished and s.runtime_s is not None, timeout=30)


def _queued(app) -> str:
    from celery_ext.writer import flush_all

    task_id = proj.add.apply_async((1, 2), queue=proj.NOBODY_QUEUE).id
    flush_all()
    return task_id


def _json_lines(text: str) -> list[dict]:
    docs = [json.loads(line) for line in text.splitlines()]
    for doc in docs:
        check_document(doc)
    return docs


# --------------------------------------------------------------------------------------------
# status


def test_status_human_and_json(app, worker):
    result = proj.add.delay(2, 3)
    result.get(timeout=30)
    _finished(app, result.id)
    human = fileintel("status", result.id)
    assert human.returncode == 0, human.stderr
    assert re.search(r"^phase\s+succeeded$", human.stdout, re.M)
    assert result.id in human.stdout and "tests.proj.add" in human.stdout
    as_json = fileintel("status", result.id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = check_document(json.loads(as_json.stdout))  # stdout is the document and nothing else
    assert (doc["phase"], doc["result"], doc["task_id"]) == ("succeeded", 5, result.id)


def test_status_exits_0_whatever_the_phase(app):
    queued = _queued(app)
    unknown = str(uuid.uuid4())
    for task_id, phase in ((queued, "queued"), (unknown, "unknown")):
        run = fileintel("status", task_id, "-j")
        assert run.returncode == 0, run.stderr
        assert check_document(json.loads(run.stdout))["phase"] == phase


# --------------------------------------------------------------------------------------------
# result: 0, 1, 3, 4, 5, 124


def test_result_prints_the_bare_value_and_nothing_else(app, worker):
    result = proj.echo.delay({"files": ["a.pdf", "b.pdf"], "count": 2, "note": "[bold]x[/]"})
    result.get(timeout=30)
    _finished(app, result.id)
    run = fileintel("result", result.id)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"files": ["a.pdf", "b.pdf"], "count": 2, "note": "[bold]x[/]"}
    assert run.stderr == ""
    with_json = fileintel("result", result.id, "--json")
    assert with_json.returncode == 0
    assert check_document(json.loads(with_json.stdout))["result"]["count"] == 2


def test_result_of_a_failed_task_exits_1_with_the_error(app, worker):
    result = proj.fail.delay("disk full on /data")
    _finished(app, result.id)
    run = fileintel("result", result.id)
    assert run.returncode == 1
    assert run.stdout == ""
    assert "ValueError" in run.stderr and "disk full on /data" in run.stderr and "failed" in run.stderr
    with_json = fileintel("result", result.id, "-j")
    assert with_json.returncode == 1
    assert check_document(json.loads(with_json.stdout))["error"]["type"] == "ValueError"


def test_result_of_a_revoked_task_exits_1(app, worker):
    task_id = str(uuid.uuid4())
    revoke_confirmed(app, task_id)  # the worker holds the id before the task arrives
    proj.add.apply_async((1, 2), task_id=task_id)
    wait_for(app, task_id, lambda s: s.phase.value == "revoked", timeout=30)
    run = fileintel("result", task_id)
    assert run.returncode == 1
    assert "revoked" in run.stderr


def test_result_expired_or_evicted_exits_3_and_explains(app, worker, redis_client):
    result = proj.add.delay(20, 22)
    result.get(timeout=30)
    _finished(app, result.id)
    redis_client.delete(meta_key(app, result.id))  # evicted (or expired: same for the reader)
    run = fileintel("result", result.id)
    assert run.returncode == 3, run.stderr
    assert run.stdout == ""
    assert "succeeded at" in run.stderr  # when it completed
    assert "result_expires is 1 h" in run.stderr  # what result_expires is
    assert "gone before its expiry" in run.stderr and "maxmemory-policy" in run.stderr
    # status still answers (0) and says so; wait reports the task as succeeded (0).
    status = fileintel("status", result.id)
    assert status.returncode == 0
    assert re.search(r"^result\s+(gone|expired)", status.stdout, re.M), status.stdout
    waited = fileintel("wait", result.id, "-t", "5", "--json")
    assert waited.returncode == 0
    assert _json_lines(waited.stdout)[0]["expired"] is True


@pytest.mark.slow
def test_status_of_an_expired_result_says_when_once(app, subprocess_worker):
    """One expiry note, in the summary's own time format: the result row says it expired,
    the note says when (no second date in another format, no warning repeating it)."""
    from celery_ext.cli.text import when_text

    subprocess_worker(pool="prefork", concurrency=1, env={"FILEINTEL_TEST_RESULT_EXPIRES": "2"})
    result = proj.add.delay(1, 1)
    assert result.get(timeout=30) == 2
    expired = wait_for(app, result.id, lambda s: s.expired and s.runtime_s is not None, timeout=15)
    run = fileintel("status", result.id)
    assert run.returncode == 0, run.stderr
    at = when_text(expired.result_expires_at)
    shown = run.stdout + run.stderr
    assert shown.count(at) == 1, shown
    assert re.search(rf"^note\s+It finished at .*; its result expired at {re.escape(at)} \(result_expires=2 s\)", run.stdout, re.M)
    assert re.search(r"^result\s+expired, \d+ bytes$", run.stdout, re.M), run.stdout
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", shown), shown  # no ISO times beside the summary's


def test_result_expiring_soon_is_warned_about(app, worker, redis_client):
    result = proj.add.delay(1, 1)
    result.get(timeout=30)
    _finished(app, result.id)
    redis_client.pexpire(meta_key(app, result.id), 300_000)  # 5 min < fileintel_expiry_warning
    run = fileintel("result", result.id)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == 2
    assert "warning" in run.stderr and "expires in" in run.stderr and "--output" in run.stderr


def test_result_of_an_unknown_id_exits_4_at_once_even_with_wait(app):
    task_id = str(uuid.uuid4())
    run = fileintel("result", task_id)
    assert run.returncode == 4
    assert "unknown" in run.stderr and run.stdout == ""
    started = time.monotonic()
    waited = fileintel("result", task_id, "--wait", "--timeout", "60")
    assert waited.returncode == 4
    assert time.monotonic() - started < 60 / 2  # did not wait for the deadline


def test_result_not_ready_exits_124_at_once_or_after_wait(app):
    task_id = _queued(app)
    run = fileintel("result", task_id)
    assert run.returncode == 124
    assert "not ready" in run.stderr and "--wait" in run.stderr and run.stdout == ""
    started = time.monotonic()
    waited = fileintel("result", task_id, "--wait", "-t", "1")
    elapsed = time.monotonic() - started
    assert waited.returncode == 124
    assert "timed out after 1 s" in waited.stderr and "queued" in waited.stderr
    assert 1 <= elapsed <= 1 + STARTUP_MARGIN


def test_result_wait_prints_the_result_once_done(app, worker):
    result = proj.progress_steps.delay(3, 0.2)
    run = fileintel("result", result.id, "--wait", "-t", "30")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"steps": 3}


@pytest.mark.slow
def test_large_result_exits_5_and_output_streams_50mb_with_bounded_memory(app, worker, tmp_path):
    size = 50 * 1024 * 1024
    result = proj.big_result.delay(size)
    _finished(app, result.id)

    too_large = fileintel("result", result.id)
    assert too_large.returncode == 5
    assert "--output" in too_large.stderr and too_large.stdout == ""

    target = tmp_path / "big.json"
    baseline_kib = _peak_rss_kib("status", result.id)
    download_kib = _peak_rss_kib("result", result.id, "--output", str(target))
    assert json.loads(target.read_bytes()) == "x" * size
    assert not list(tmp_path.glob(".*.part"))  # the partial file was renamed into place
    growth_mib = (download_kib - baseline_kib) / 1024
    # A memory contract, not a timing one: the 50 MB result is never held in memory.
    assert growth_mib < 20, f"peak RSS grew by {growth_mib:.1f} MiB while streaming 50 MiB"


_RSS_WRAPPER = """
import atexit, resource, sys
report_to = sys.argv.pop(1)

def report():
    with open(report_to, "w") as fh:
        fh.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))

atexit.register(report)
sys.argv[0] = "celery"
from celery.__main__ import main
main()
"""


def _peak_rss_kib(*args: str) -> int:
    """Run ``celery -A tests.proj fileintel *args`` in a process that reports its peak RSS."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        run = subprocess.run(
            [sys.executable, "-c", _RSS_WRAPPER, report.name, "-A", "tests.proj", "fileintel", *args],
            cwd=harness.REPO_ROOT,
            env=harness.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return int(Path(report.name).read_text())


# --------------------------------------------------------------------------------------------
# wait: several ids, JSON Lines, progress, timeouts


def test_wait_several_ids_json_lines_in_argument_order(app, worker):
    ok = proj.add.delay(1, 1).id
    ok2 = proj.echo.delay("two").id
    run = fileintel("wait", ok, ok2, "-t", "30", "--json")
    assert run.returncode == 0, run.stderr
    docs = _json_lines(run.stdout)
    assert [d["task_id"] for d in docs] == [ok, ok2]
    assert [d["result"] for d in docs] == [2, "two"]


@pytest.mark.slow
def test_wait_exit_code_is_the_first_non_success_in_argument_order(app, worker):
    ok = proj.add.delay(1, 1).id
    failed = proj.fail.delay("boom").id
    queued = _queued(app)
    unknown = str(uuid.uuid4())
    _finished(app, failed)

    run = fileintel("wait", ok, failed, unknown, "-t", "1", "--json")
    assert run.returncode == 1
    assert [d["phase"] for d in _json_lines(run.stdout)] == ["succeeded", "failed", "unknown"]
    assert "boom" in run.stderr

    run = fileintel("wait", ok, queued, failed, "-t", "1")
    assert run.returncode == 124
    lines = run.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [[ok, "succeeded"], [queued, "queued"], [failed, "failed"]]

    run = fileintel("wait", unknown, failed, "-t", "1")
    assert run.returncode == 4
    assert "unknown after waiting 1 s" in run.stderr


def test_wait_timeout_precision_and_last_known_progress(app):
    # The progress is written by hand and nothing ever finishes the task: a worker's task
    # that "ends soon after the CLI gives up" raced the CLI's start-up on a loaded machine.
    task_id = str(uuid.uuid4())
    app.backend.store_result(task_id, {"current": 2, "total": 2, "message": "step 2 of 2"}, "PROGRESS")
    started = time.monotonic()
    run = fileintel("wait", task_id, "--timeout", "2")
    elapsed = time.monotonic() - started
    assert run.returncode == 124, run.stderr
    assert 2 <= elapsed <= 2 + STARTUP_MARGIN
    assert "timed out after 2 s" in run.stderr
    assert "100% (2/2) step 2 of 2" in run.stderr  # the last known progress
    assert run.stdout.split("\t")[:2] == [task_id, "running"]


def test_wait_unknown_waits_until_the_deadline_then_exits_4(app):
    task_id = str(uuid.uuid4())
    started = time.monotonic()
    run = fileintel("wait", task_id, "-t", "1.5")
    assert run.returncode == 4
    assert time.monotonic() - started >= 1.5
    assert "unknown after waiting 1.5 s" in run.stderr


def test_wait_timeout_zero_checks_once(app):
    run = fileintel("wait", _queued(app), "-t", "0", "--json")
    assert run.returncode == 124
    assert _json_lines(run.stdout)[0]["phase"] == "queued"


def test_wait_reports_progress_in_order_on_stderr(app):
    """Each update is written once the CLI has printed the one before: a worker's task racing
    the CLI's start-up could finish before the CLI saw any progress on a loaded machine."""
    task_id = str(uuid.uuid4())

    def write(step: int) -> None:
        app.backend.store_result(task_id, {"current": step, "total": 5, "message": f"step {step} of 5"}, "PROGRESS")

    write(1)
    proc = start_celery("fileintel", "wait", task_id, "-t", "30", "--no-progress")
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(proc.stderr), daemon=True)
    try:
        reader.start()
        for step in (2, 3, 4):
            harness.wait_for(lambda: sum(task_id in line for line in list(printed)) >= step - 1,
                             what=lambda: f"the CLI to print update {step - 1}: {printed}")
            write(step)
        harness.wait_for(lambda: sum(task_id in line for line in list(printed)) >= 4,
                         what=lambda: f"the CLI to print update 4: {printed}")
        app.backend.store_result(task_id, {"steps": 5}, "SUCCESS")
        proc.wait(timeout=30)
        reader.join(10)  # the reader owns stderr: communicate() would take its last lines
        out = proc.stdout.read()
    finally:
        harness.kill_process_tree(proc)
    assert proc.returncode == 0, printed
    lines = [line.rstrip("\n") for line in printed if task_id in line]
    percents = [int(m.group(1)) for m in (re.search(r" (\d+)% ", line) for line in lines) if m]
    assert percents == [20, 40, 60, 80], lines
    assert lines[-1].split(" ")[2] == "succeeded", lines
    assert out.split("\t")[:2] == [task_id, "succeeded"]


def test_quiet_silences_progress_but_not_errors(app, worker):
    failed = proj.fail.delay("quietly").id
    _finished(app, failed)
    run = run_celery("-q", "fileintel", "wait", failed, "-t", "5")
    assert run.returncode == 1
    assert run.stderr.count(failed) == 1 and "quietly" in run.stderr


# --------------------------------------------------------------------------------------------
# usage errors (2), backend down (69), Ctrl-C (130), outage mid-wait


def test_malformed_ids_exit_2_without_touching_redis():
    # Redis at a closed port: a Redis call would be 69, not 2. (Every malformed shape is
    # covered in tests/unit/test_ids.py; here each command once, through the real executable.)
    closed = f"redis://127.0.0.1:{harness.free_port()}/0"
    for command in (["status", "a*b"], ["result", "x" * 300], ["wait", "fine-id", "has space"], ["status", ""]):
        run = fileintel(*command, env={harness.REDIS_URL_ENV: closed})
        assert run.returncode == 2, (command, run.stderr)
        assert "task id" in run.stderr.lower() and "Traceback" not in run.stderr


def test_bad_timeouts_exit_2(app):
    run = fileintel("wait", "some-id", "--timeout", "-1")  # the other shapes: test_cli_format
    assert run.returncode == 2
    assert "timeout" in run.stderr.lower() or "seconds" in run.stderr.lower()


def test_backend_down_exits_69_naming_the_url_without_password(redis_server):
    url = f"redis://:hunter2@127.0.0.1:{harness.free_port()}/0"
    env = {harness.REDIS_URL_ENV: url}
    for command in (["status", "some-id"], ["result", "some-id"], ["wait", "some-id", "-t", "0.5"]):
        run = fileintel(*command, env=env)
        assert run.returncode == 69, (command, run.stderr)
        assert "hunter2" not in run.stderr and "hunter2" not in run.stdout
        assert "***@127.0.0.1" in run.stderr
        assert "Traceback" not in run.stderr


def test_ctrl_c_exits_130_without_traceback_and_closes_the_subscription(app, redis_client):
    task_id = _queued(app)
    proc = start_celery("fileintel", "wait", task_id, "-t", "60", "--no-progress")
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first status line: the wait is subscribed
        assert task_id in first, first
        channel = meta_key(app, task_id)
        assert redis_client.pubsub_numsub(channel)[0][1] == 1
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        harness.kill_process_tree(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert out == ""
    assert redis_client.pubsub_numsub(channel)[0][1] == 0


@pytest.mark.slow
def test_redis_killed_mid_wait_exits_69_at_the_deadline(app, redis_server):
    task_id = _queued(app)
    proc = start_celery("fileintel", "wait", task_id, "-t", "3", "--no-progress")
    started = time.monotonic()
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert task_id in first, first
        redis_server.stop()
        out, err = proc.communicate(timeout=60)
    finally:
        harness.kill_process_tree(proc)
        redis_server.start()
    assert proc.returncode == 69, err
    assert time.monotonic() - started <= 3 + STARTUP_MARGIN
    assert "gave up at the deadline" in err and redis_server.url in err
    assert "Retrying until the deadline" in err  # said at once, not only at the end
    assert "last known" in err and "queued" in err
    assert "Traceback" not in err and out == ""


def test_help_documents_the_exit_codes():
    for args in (["--help"], ["wait", "--help"]):  # the others share the epilog (test_cli_format)
        run = run_celery("fileintel", *args, app=None)
        assert run.returncode == 0, run.stderr
        assert "Exit codes:" in run.stdout
        for code in ("0", "1", "2", "3", "4", "5", "69", "124", "130"):
            assert re.search(rf"^\s+{code}\s+\S", run.stdout, re.M), (args, code)


def test_help_describes_each_commands_arguments():
    for command, argument in (("status", "TASK_ID"), ("result", "TASK_ID"), ("wait", "TASK_ID...")):
        run = run_celery("fileintel", command, "--help", app=None)
        assert run.returncode == 0, run.stderr
        section = run.stdout.split("Arguments:\n", 1)[1].split("\n\n", 1)[0]
        assert section.split()[0] == argument and "short id" in section, run.stdout
        assert len(re.findall(rf"^\s+{re.escape(argument)}\s", run.stdout, re.M)) == 1, run.stdout
        # Only wait prints one document per task, per line.
        assert ("JSON Lines" in run.stdout) is (command == "wait"), run.stdout


def test_a_closed_stdout_ends_quietly(app):
    """``celery ... fileintel wait A B | head -1``: no BrokenPipeError traceback."""
    proc = start_celery("fileintel", "wait", str(uuid.uuid4()), str(uuid.uuid4()), "-t", "0", "--json")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before anything is written
        err = proc.stderr.read()
        proc.wait(30)
    finally:
        harness.kill_process_tree(proc)
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
