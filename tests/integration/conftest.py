"""The integration layer: every test here may rely on the private redis-server running (the
CLI and worker subprocesses find it through ``FILEINTEL_TEST_REDIS_URL``), so it is started
before the first of them."""

from __future__ import annotations

import pytest

from tests.harness import RedisServer


@pytest.fixture(autouse=True)
def _private_redis_running(redis_server: RedisServer) -> None:
    """Started once (the fixture is session-scoped), restarted after a test's outage."""
