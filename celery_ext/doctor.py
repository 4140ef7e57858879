"""``celery fileintel doctor``: check a deployment and say what to fix.

Each check returns a ``Finding``: ``ok``, ``warn`` (works, but something will mislead or cost
you) or ``problem`` (something the product relies on is missing). The checks are small
functions of what they read, so they are unit-tested on hand-built inputs; ``run_checks``
does the reading. Exit codes: 0 all ok, 1 warnings only, 3 a problem, 69 Redis unreachable.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click
from celery import Celery
from celery.bin.base import CeleryCommand, handle_preload_options

__all__ = ["Level", "Finding", "run_checks", "doctor", "exit_code_for"]

#: Redis policies that delete keys with a TTL (results) when memory runs out.
_EVICTING = {"allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}
#: Clock difference (seconds) between this machine and Redis above which times mislead.
SKEW_WARN_S = 2.0
#: Flower versions the plugin is built and tested for.
FLOWER_SUPPORTED = ((2, 0), (3, 0))  # [from, until)
_MAX_WORKER_KEYS = 1000


class Level(str, enum.Enum):
    OK = "ok"
    WARN = "warn"
    PROBLEM = "problem"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    message: str
    fix: str | None = None


def exit_code_for(findings: Sequence[Finding]) -> int:
    levels = {f.level for f in findings}
    if Level.UNAVAILABLE in levels:
        return 69
    if Level.PROBLEM in levels:
        return 3
    return 1 if Level.WARN in levels else 0


# -- the checks: pure functions of what was read ---------------------------------------------


def check_installed(installed: bool) -> Finding:
    if installed:
        return Finding("install", Level.OK, "this app calls celery_ext.install(): it records what it sends")
    return Finding(
        "install", Level.PROBLEM, "this app does not call celery_ext.install()",
        "call celery_ext.install(app) where the app is defined, so producers and workers record tasks",
    )


def check_backend(kind: str, push: bool, records: bool) -> Finding:
    if not records:
        return Finding(
            "backend", Level.PROBLEM, f"result backend {kind}: task records are off (no Redis for them)",
            "set fileintel_redis_url to a Redis URL, or use a Redis broker or result backend",
        )
    if not push:
        return Finding(
            "backend", Level.WARN, f"result backend {kind}: no push; waits and pages poll",
            "a Redis result backend pushes state changes (waits return at once, pages update live)",
        )
    return Finding("backend", Level.OK, f"result backend {kind}: records on, push available")


def check_expiry(result_expires: int | None, record_ttl: int) -> Finding:
    if result_expires is None:
        return Finding(
            "expiry", Level.WARN, "result_expires is off: results are kept until deleted, Redis memory only grows",
            "set result_expires (Celery's default is 1 day)",
        )
    return Finding(
        "expiry", Level.OK,
        f"results expire after {result_expires} s; records outlive them ({record_ttl} s), so expiry is explained",
    )


def check_maxmemory(policy: str | None, maxmemory: int | None) -> Finding:
    if policy is None:
        return Finding(
            "maxmemory", Level.WARN, "could not read Redis's maxmemory-policy (CONFIG GET refused?)",
            "check it by hand: 'noeviction' or no maxmemory keeps results until they expire",
        )
    if policy in _EVICTING and maxmemory:
        return Finding(
            "maxmemory", Level.WARN,
            f"Redis evicts keys under memory pressure (maxmemory-policy {policy}, maxmemory {maxmemory} bytes): "
            "results can vanish before they expire (read as 'evicted')",
            "use maxmemory-policy noeviction for the result backend, or give it more memory",
        )
    return Finding("maxmemory", Level.OK, f"maxmemory-policy {policy}: results are not evicted early")


def check_clock(skew_s: float) -> Finding:
    if abs(skew_s) > SKEW_WARN_S:
        return Finding(
            "clock", Level.WARN, f"this machine's clock is {skew_s:+.1f} s off Redis's: times and countdowns shown here are off by that much",
            "run NTP (chrony, systemd-timesyncd) on the workers, Flower and Redis hosts",
        )
    return Finding("clock", Level.OK, f"clock within {abs(skew_s):.2f} s of Redis's")


def check_workers(silences_s: Sequence[float], lost_after: float) -> Finding:
    alive = [s for s in silences_s if s <= lost_after]
    if alive:
        return Finding("workers", Level.OK, f"{len(alive)} worker(s) with install() beating (of {len(silences_s)} seen)")
    return Finding(
        "workers", Level.WARN, f"no worker with install() has beaten in the last {lost_after:g} s",
        "start a worker with -A on this app (install() must run in the worker too), or check its logs",
    )


def check_pubsub(received: bool | None) -> Finding:
    if received is None:
        return Finding("pubsub", Level.OK, "not a Redis result backend: nothing to check")
    if received:
        return Finding("pubsub", Level.OK, "pub/sub works: a message published was received")
    return Finding(
        "pubsub", Level.PROBLEM, "a message published on Redis was not received within 2 s",
        "a proxy in front of Redis may not pass pub/sub (twemproxy, some cloud gateways): point the result backend at Redis itself",
    )


def check_flower(version: str | None) -> Finding:
    if version is None:
        return Finding("flower", Level.OK, "Flower is not installed here (needed only for the web plugin)")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    low, high = FLOWER_SUPPORTED
    if low <= parts < high:
        return Finding("flower", Level.OK, f"Flower {version} is supported")
    return Finding("flower", Level.WARN, f"Flower {version} is not a version the plugin is tested with (2.x)", "use Flower 2.x")


# -- reading ----------------------------------------------------------------------------------


def run_checks(app: Celery, clock: Callable[[], float] = time.time) -> list[Finding]:
    """Read the deployment and run every check. Redis unreachable: one ``unavailable``."""
    from celery_ext.installed import is_installed
    from celery_ext.records import backend_errors, store_for
    from celery_ext.settings import result_expires_seconds

    store = store_for(app)
    backend = app.backend
    kind = type(backend).__name__
    push = _push(app)
    findings = [
        check_installed(is_installed(app)),
        check_backend(kind, push, store.enabled),
        check_expiry(result_expires_seconds(app), store.record_ttl),
        check_flower(_version("flower")),
    ]
    if not store.enabled:
        return findings
    try:
        client: Any = store.client()
        before = clock()
        seconds, micros = client.time()
        after = clock()
        findings.append(check_clock((before + after) / 2 - (seconds + micros / 1e6)))
        findings.append(check_maxmemory(*_maxmemory(client)))
        findings.append(check_workers(_worker_silences(client, store, seconds + micros / 1e6), store.settings.lost_after))
        findings.append(check_pubsub(_pubsub_round_trip(client) if push else None))
    except backend_errors() as exc:
        findings.append(Finding("redis", Level.UNAVAILABLE, f"{store.display_url} did not answer: {exc}", "start Redis, or fix the URL"))
    return findings


def _push(app: Celery) -> bool:
    from celery.backends.redis import RedisBackend

    return isinstance(app.backend, RedisBackend)


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _maxmemory(client: Any) -> tuple[str | None, int | None]:
    from redis.exceptions import ResponseError

    try:
        config = client.config_get("maxmemory*")
    except ResponseError:  # CONFIG is often disabled on managed Redis
        return None, None
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in config.items()}
    policy = text.get("maxmemory-policy")
    return policy, int(text.get("maxmemory") or 0)


def _worker_silences(client: Any, store: Any, redis_now: float) -> list[float]:
    """Seconds since each worker incarnation's last beat (the newest 1,000 keys at most)."""
    keys = []
    for key in client.scan_iter(match=store.worker_key_prefix + b"*", count=500):
        keys.append(key)
        if len(keys) >= _MAX_WORKER_KEYS:
            break
    beats = client.mget(keys) if keys else []
    return [redis_now - float(b) for b in beats if b is not None]


def _pubsub_round_trip(client: Any) -> bool:
    import uuid

    channel = f"fileintel-doctor-{uuid.uuid4().hex}"
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        deadline = time.monotonic() + 2.0
        confirmed = False
        while time.monotonic() < deadline and not confirmed:  # publish only once subscribed
            message = pubsub.get_message(timeout=0.1)
            confirmed = bool(message and message["type"] == "subscribe")
        client.publish(channel, b"ping")
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                return True
        return False
    finally:
        pubsub.close()


# -- the command ------------------------------------------------------------------------------

_SYMBOL = {Level.OK: "ok  ", Level.WARN: "warn", Level.PROBLEM: "FIX ", Level.UNAVAILABLE: "DOWN"}


@click.command(
    name="doctor",
    cls=CeleryCommand,
    epilog="\b\nExit codes:\n    0  every check passed\n    1  warnings only\n    3  a problem to fix\n   69  Redis unreachable",
)
@click.option("-j", "--json", "as_json", is_flag=True, help="Print the findings as one JSON document.")
@click.pass_context
@handle_preload_options
def doctor(ctx: click.Context, as_json: bool, **kwargs: Any) -> None:
    """Check this deployment (install(), backend, expiry, Redis memory policy, clocks,
    workers, pub/sub, Flower) and say what to fix."""
    app = getattr(ctx.obj, "app", None)
    if app is None or not app.conf.result_backend:
        raise click.UsageError("no app: pass -A/--app naming the Celery app (celery -A proj fileintel doctor)")
    findings = run_checks(app)
    code = exit_code_for(findings)
    if as_json:
        doc = {"findings": [{**asdict(f), "level": f.level.value} for f in findings], "exit_code": code}
        click.echo(json.dumps(doc, indent=2))
    else:
        for f in findings:
            click.echo(f"{_SYMBOL[f.level]}  {f.check:<9}  {f.message}")
            if f.fix and f.level is not Level.OK:
                click.echo(f"{'':17}fix: {f.fix}")
    ctx.exit(code)
