"""The demo's cases: send one task per case, then follow each until it shows what it is for.

``follow`` reads every case's status through ``celery_ext.describe_many`` (as the CLI and
Flower do), prints each change, revokes the case that demonstrates revoking once it runs,
and checks Flower shows a finished case the same way. In a ``--once`` run it ends when every
case is done (or the timeout passes); otherwise it keeps sending fresh tasks every interval.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fileintel_demo import report
from fileintel_demo.cases import CASES, CaseRun, CaseSpec, status_line
from fileintel_demo.lifecycle import check_children
from fileintel_demo.options import APP_MODULE, EXIT_CASES_FAILED, EXIT_OK

if TYPE_CHECKING:
    from fileintel_demo.runner import Demo

__all__ = ["follow", "send_cases"]

#: The cases sent again every interval in an interactive run: the ones that move on screen.
RESENT_CASES = ("progress", "expiring")
#: Later batches followed beyond the first one (older ones stay visible in Flower).
LATER_RUNS_KEPT = 12


def send_cases(demo: Demo) -> None:
    """Send one task per case and print where to look at each."""
    assert demo.demo is not None
    demo.echo("\nDemo tasks (one per case):")
    for spec in CASES:
        _send(demo, spec)


def _send(demo: Demo, spec: CaseSpec) -> CaseRun:
    assert demo.demo is not None
    result = spec.send(demo.demo, demo.quick)
    run = CaseRun(spec, result.id, wait_for_expiry=demo.options.once)
    demo.runs.append(run)
    cli = f"{report.celery_command()} -A {APP_MODULE} fileintel"
    lines = [f"  {spec.key:<12} {spec.title}", f"  {'':<12} {cli} status {result.id}"]
    if spec.also:
        lines.append(f"  {'':<12} {cli} {spec.also.format(id=result.id)}")
    lines.append(f"  {'':<12} {demo.flower_url}/fileintel/task/{result.id}")
    demo.echo("\n".join(lines))
    return run


def follow(demo: Demo) -> int:
    """Follow the cases until the run's end (mode dependent); returns the exit status."""
    assert demo.demo is not None
    demo.echo("")
    started = time.monotonic()
    next_batch = started + demo.options.interval
    poll = 0.25 if demo.mode == "once" else 1.0
    while True:
        check_children(demo)
        _observe(demo)
        now = time.monotonic()
        if demo.mode == "once":
            if all(r.done and r.flower is not None for r in demo.runs):
                break
            if now - started > demo.options.timeout:
                _time_out(demo, now - started)
                break
        else:
            if demo.options.duration is not None and now - started >= demo.options.duration:
                break
            if now >= next_batch:
                next_batch = now + demo.options.interval
                demo.echo(f"[{report.clock()}] sending more tasks:")
                for spec in CASES:
                    if spec.key in RESENT_CASES:
                        _send(demo, spec)
                _forget_old_runs(demo)
        demo.sleep(poll)
    if demo.mode == "once":
        bad = [r for r in demo.runs if not (r.done and r.ok and r.flower == "ok")]
    else:  # a case still under way when the time is up is not a failure
        bad = [r for r in demo.runs if r.done and not (r.ok and r.flower in (None, "ok"))]
    healthy = _flower_healthy(demo)
    demo.flower_answered = healthy and all(r.flower == "ok" for r in demo.runs if r.flower is not None)
    return EXIT_CASES_FAILED if bad or not healthy else EXIT_OK


def _observe(demo: Demo) -> None:
    import celery_ext

    assert demo.demo is not None
    live = [r for r in demo.runs if not (r.done and r.flower is not None) or demo.mode != "once"]
    if not live:
        return
    statuses = celery_ext.describe_many(demo.demo.app, [r.task_id for r in live])
    warning = float(max(1, demo.result_expires // 2))
    for run, status in zip(live, statuses):
        run.observe(status, warning)
        line = status_line(status, warning)
        if line != run.last_line:
            run.last_line = line
            demo.echo(f"[{report.clock()}] {run.spec.key:<12} {run.task_id[:8]}  {line}")
        if run.wants_revoke():
            run.revoke_sent = True
            demo.demo.app.control.revoke(run.task_id, terminate=True, signal="SIGTERM")
            demo.echo(f"[{report.clock()}] {run.spec.key:<12} {run.task_id[:8]}  revoking it (terminate=True)")
        if run.done and run.flower is None:
            from fileintel_demo.probe import check_case

            run.flower = check_case(demo.flower_url, run, status) if demo.flower_plugin else "ok"
            if run.flower != "ok" or not run.ok:
                demo.echo(f"[{report.clock()}] {run.spec.key:<12} {run.task_id[:8]}  PROBLEM: "
                          f"{run.detail if not run.ok else run.flower}")


def _forget_old_runs(demo: Demo) -> None:
    """Keep following the first batch and the latest few; the rest stays in Flower."""
    first = demo.runs[: len(CASES)]
    later = demo.runs[len(CASES):]
    demo.runs = first + later[-LATER_RUNS_KEPT:]


def _time_out(demo: Demo, elapsed: float) -> None:
    for run in demo.runs:
        if not run.done:
            run.done = True
            run.ok = False
            run.detail = (f"did not reach '{run.spec.expected}' within {elapsed:.0f} s "
                          f"(seen: {' -> '.join(run.phases) or 'nothing'})")
        if run.flower is None:
            run.flower = "not checked"


def _flower_healthy(demo: Demo) -> bool:
    from fileintel_demo.probe import healthy

    return bool(demo.flower_url) and healthy(demo.flower_url)
