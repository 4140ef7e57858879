"""The ops assets in ``ops/`` (alert rules, Grafana dashboard) and the metrics they rely on.

- ``promtool check rules`` passes on the shipped rules (Debian's prometheus package; CI
  installs it, elsewhere the check skips with its reason);
- every metric name the rules and the dashboard use is served on a real Flower's /metrics;
- the metric names follow Prometheus' conventions and carry no task ids;
- the inventory gauges count what the indexes in a real Redis hold.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid

import pytest
from celery import Celery

from celery_ext.inventory import WINDOWS, take_inventory
from celery_ext.records import store_for
from celery_ext.status import Phase
from flower_fileintel.testing import FlowerServer, http_get
from tests.harness import REPO_ROOT, unavailable

RULES = REPO_ROOT / "ops" / "prometheus" / "fileintel-rules.yml"
DASHBOARD = REPO_ROOT / "ops" / "grafana" / "fileintel-dashboard.json"
METRIC_NAME = re.compile(r"\b((?:fileintel|flower)_[a-z0-9_]+)\b")


def _rule_expressions() -> list[str]:
    """Each rule's ``expr:``, inline or as a ``|`` block (the rules file uses only these two
    forms; promtool checks the YAML itself)."""
    expressions: list[str] = []
    lines = RULES.read_text().splitlines()
    for index, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key != "expr":
            continue
        if value.strip() != "|":
            expressions.append(value.strip())
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for following in lines[index + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        expressions.append(" ".join(block))
    return expressions


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC_NAME.findall(expr)}


def _served_names(exposition: str) -> set[str]:
    """Every series name a scrape can return, including those of labelled metrics that have
    no sample yet (declared by their ``# TYPE`` line only)."""
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"],
                "gauge": [""], "summary": ["_count", "_sum", "_created"]}
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, base, kind = line.split(" ", 3)
            names.add(base)
            names.update(base + suffix for suffix in suffixes.get(kind, []))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_promtool_accepts_the_alert_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian's prometheus package provides it)")
    run = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_the_assets_use_metrics_at_all():
    """The name scan finds what is there (an empty scan would pass the check below)."""
    assert {"fileintel_active_tasks", "flower_events_total"} <= _names(_rule_expressions())
    assert {"fileintel_build_info", "fileintel_flower_lookup_seconds_bucket"} <= _names(_dashboard_expressions())


@pytest.mark.integration
def test_every_metric_the_rules_and_dashboard_use_is_served(app):
    with FlowerServer(app) as flower:
        text = http_get(flower.url("/metrics")).text
    served = _served_names(text)
    wanted = _names(_rule_expressions()) | _names(_dashboard_expressions())
    assert wanted - served == set()


@pytest.mark.integration
def test_metric_names_follow_the_conventions_and_build_info_is_one(app):
    with FlowerServer(app) as flower:
        text = http_get(flower.url("/metrics")).text
    ours = {line.split(" ", 3)[2]: line.split(" ", 3)[3] for line in text.splitlines()
            if line.startswith("# TYPE fileintel_")}
    assert ours, "no fileintel metric is served"
    for name, kind in ours.items():
        if kind == "histogram":
            assert name.endswith("_seconds") or name.endswith("_bytes"), name
        if name.endswith("bytes") and kind == "counter":
            assert name.endswith("_bytes"), name
        assert not re.search(r"task_id|[0-9a-f]{8}-[0-9a-f]{4}", name), name
    import celery_ext

    assert re.search(rf'^fileintel_build_info\{{.*version="{re.escape(celery_ext.__version__)}".*\}} 1\.0$', text, re.M)


@pytest.mark.integration
def test_the_inventory_counts_what_the_indexes_hold(redis_server):
    """Hand-built indexes on a key prefix of their own in the private Redis."""
    isolated = Celery("inventory", broker=redis_server.url, backend=redis_server.url, set_as_current=False)
    isolated.conf.result_backend_transport_options = {"global_keyprefix": f"inv-{uuid.uuid4().hex[:8]}-"}
    isolated.conf.result_expires = 7200
    store = store_for(isolated)
    client = redis_server.client()
    now = time.time()
    ttl = 7200
    finished = {
        "gone": now - ttl - 10,  # its result expired 10 s ago
        "in-30-min": now - ttl + 1800,
        "in-5-hours": now - ttl + 5 * 3600,
        "in-2-days": now,  # 2 h left of a 2 h TTL: within a day
    }
    client.zadd(store.finished_key, finished)
    client.zadd(store.active_key, {str(uuid.uuid4()): now})
    try:
        inventory = take_inventory(isolated, now=now)
    finally:
        client.delete(store.finished_key, store.active_key)
        isolated.close()
    assert set(inventory.results_expiring) == {"expired", *WINDOWS}
    assert inventory.results_expiring == {"expired": 1, "1h": 1, "1d": 3}
    assert inventory.finished_indexed == 4
    # Records live at least a day longer than results: none is near its end.
    assert inventory.records_expiring == {"expired": 0, "1h": 0, "1d": 0}
    # An active id with no record nor result reads as Celery would read it: unknown.
    assert inventory.active_by_phase == {Phase.UNKNOWN: 1}
