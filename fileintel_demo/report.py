"""What the demo prints and writes: the banner once everything runs, the summary at the end
(a table on the terminal, and JSON for ``--summary-file``), and the small formatting helpers
both use."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fileintel_demo.cases import CASES, CaseRun
from fileintel_demo.options import APP_MODULE, EXIT_OK, SUMMARY_SCHEMA

if TYPE_CHECKING:
    from fileintel_demo.runner import Demo

__all__ = [
    "celery_command", "clock", "print_banner", "print_line", "print_stopped", "print_summary", "redact", "write_summary",
]


def print_banner(demo: Demo, hostname: str) -> None:
    """Where everything is: Flower's pages, the API, Redis, the worker, the logs."""
    assert demo.demo is not None
    warning = max(1, demo.result_expires // 2)
    showcase = demo.demo.SHOWCASE_RESULT_EXPIRES
    lines = [
        "",
        "flower-fileintel demo is running (everything on 127.0.0.1).",
        f"  Flower, fileintel board : {demo.flower_url}/fileintel",
        f"  Flower itself           : {demo.flower_url}/",
        f"  JSON API, e.g.          : curl {demo.flower_url}/api/fileintel/task/<task id>",
        f"  Redis                   : {demo.redis_where}, keys under {demo.key_prefix!r}"
        + (" (nothing else is touched; the demo deletes its keys when it stops)" if demo.external_redis else ""),
        f"  Worker                  : {hostname}, {demo.options.concurrency} prefork processes, "
        f"queue {demo.demo.DEMO_QUEUE!r}",
        f"  Results                 : kept {showcase // 60} minutes; the expiring case's only "
        f"{demo.result_expires} s (expiry warning in its last {warning} s).",
        f"  Terminal view           : {celery_command()} -A {APP_MODULE} fileintel status <task id>",
        f"  Logs                    : {demo.workdir}",
    ]
    if demo.mode == "interactive":
        lines.append("  Press Ctrl-C to stop everything.")
    demo.echo("\n".join(lines))


def print_summary(demo: Demo, code: int) -> None:
    """One row per case of the first batch, its problems, and the verdict."""
    if not demo.runs:
        return
    first = demo.runs[: len(CASES)]
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
    if demo.mode != "interactive":
        pending = [r.spec.key for r in first if not r.done]
        if code != EXIT_OK:
            verdict = f"Exit status {code}."
        elif pending:
            verdict = f"No case went wrong; still under way when the time was up: {', '.join(pending)}."
        else:
            verdict = "Every case reached its expected phase."
        lines.append(f"Flower answered: {'yes' if demo.flower_answered else 'no'}. {verdict}")
    demo.echo("\n".join(lines))


def print_stopped(demo: Demo) -> None:
    """Once everything is stopped: the commands and pages printed above no longer answer."""
    if not demo.flower_url:
        return  # nothing was started, so nothing was printed to try
    kept = (
        f" Its keys are still in {demo.redis_where} (--keep-data): to read them, set "
        f"FILEINTEL_DEMO_REDIS_URL to its URL and FILEINTEL_DEMO_KEY_PREFIX={demo.key_prefix}."
        if demo.external_redis and demo.options.keep_data
        else ""
    )
    demo.echo(
        "\nThe demo is not running any more: Flower's pages above no longer load, and the "
        f"`celery -A {APP_MODULE} fileintel ...` commands above say the demo has stopped. "
        f"Run it again to explore.{kept}"
    )


def write_summary(demo: Demo, code: int) -> None:
    """The summary as JSON (schema ``SUMMARY_SCHEMA``) in ``--summary-file``, if given."""
    path = demo.options.summary_file
    if path is None:
        return
    doc: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "ok": code == EXIT_OK,
        "exit_code": code,
        "mode": demo.mode,
        "run_id": demo.run_id,
        "flower_url": demo.flower_url,
        "flower_plugin": demo.flower_plugin,
        "flower_answered": demo.flower_answered,
        "redis": "external" if demo.external_redis else "embedded",
        "key_prefix": demo.key_prefix,
        "result_expires": demo.result_expires,
        "started_pids": demo.started.pids,
        "leftover_pids": demo.leftover_pids,
        "error": demo.error,
        "signal": signal.Signals(demo.signal_received).name if demo.signal_received else None,
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
                "detail_url": f"{demo.flower_url}/fileintel/task/{r.task_id}",
            }
            for r in demo.runs
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def print_line(text: str) -> None:
    """The default output: flushed at once, so a piped log shows progress as it happens."""
    print(text, flush=True)


def _expected(run: CaseRun) -> str:
    if run.spec.key == "expiring" and not run.wait_for_expiry:
        return "succeeded (its result expires later)"
    return run.spec.expected


def clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


def redact(url: str) -> str:
    from celery_ext.errors import redact_url

    return redact_url(url)


def celery_command() -> str:
    """How the user runs this environment's ``celery``: plain ``celery`` when that is the one on
    PATH, else its path (relative when under the current directory, e.g. ``.venv/bin/celery``)."""
    ours = Path(sys.executable).parent / "celery"
    found = shutil.which("celery")
    if found and Path(found).parent == ours.parent:
        return "celery"
    with contextlib.suppress(ValueError):
        return str(ours.relative_to(Path.cwd()))
    return str(ours)
