"""Prometheus metrics of the plugin, in the default registry so they show on Flower's /metrics.

``/metrics`` is public in Flower, so labels carry only small fixed vocabularies (route names,
phases, outcomes): never a task id, a task name or any payload text.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "LOOKUPS",
    "OUTCOMES",
    "LOOKUP_SECONDS",
    "RESULT_BYTES",
    "PROGRESS_CORRECTIONS",
    "LIVE_SUBSCRIBERS",
    "LIVE_MESSAGES",
    "PUBSUB_CONNECTED",
    "REDIS_ERRORS",
    "OUTCOME_NAMES",
]

#: The outcome label's whole vocabulary.
OUTCOME_NAMES = ("ok", "not_ready", "expired", "unknown", "too_large", "placeholders", "failed", "no_result")

LOOKUPS = Counter(
    "fileintel_flower_lookups",
    "Task lookups served by the flower-fileintel plugin, by route and task phase.",
    ["route", "phase"],
)
OUTCOMES = Counter(
    "fileintel_flower_lookup_outcomes",
    "Outcome of task lookups: ok, not_ready, expired, unknown, too_large, placeholders, failed, no_result.",
    ["route", "outcome"],
)
LOOKUP_SECONDS = Histogram(
    "fileintel_flower_lookup_seconds",
    "Time to read one task's status from Redis (run off the IOLoop).",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RESULT_BYTES = Counter(
    "fileintel_flower_result_bytes_served",
    "Bytes of task results sent to clients (result API and downloads).",
    ["route"],
)
PROGRESS_CORRECTIONS = Counter(
    "fileintel_flower_progress_corrections",
    "Corrections progress normalisation made to progress meta read by the plugin.",
)
LIVE_SUBSCRIBERS = Gauge(
    "fileintel_flower_live_subscribers",
    "Browsers and API waiters currently receiving pushed updates.",
    ["stream"],
)
LIVE_MESSAGES = Counter(
    "fileintel_flower_live_messages",
    "Task state messages received on the plugin's Redis pub/sub connection.",
)
PUBSUB_CONNECTED = Gauge(
    "fileintel_flower_pubsub_connected",
    "1 while the plugin's single Redis pub/sub connection is subscribed, else 0.",
)
REDIS_ERRORS = Counter(
    "fileintel_flower_redis_errors",
    "Redis errors seen by the plugin (lookups, downloads, the pub/sub connection).",
    ["operation"],
)

for _stream in ("task", "board", "wait"):
    LIVE_SUBSCRIBERS.labels(_stream).set(0)
for _operation in ("lookup", "download", "board", "pubsub"):
    REDIS_ERRORS.labels(_operation)
