"""The unit layer: pure logic, in well under 10 s. A test here that asks for a server, a
worker or a subprocess belongs in tests/integration/: this guard says so instead of letting
the unit layer quietly start a redis-server."""

from __future__ import annotations

import pytest

#: Fixtures that start a process (the private Redis, workers, Sentinel).
_SERVER_FIXTURES = {"redis_server", "redis_client", "worker", "subprocess_worker", "sentinel_url"}


@pytest.fixture(autouse=True)
def _no_servers_in_unit_tests(request: pytest.FixtureRequest) -> None:
    used = _SERVER_FIXTURES.intersection(request.fixturenames)
    if used:
        pytest.fail(
            f"{request.node.nodeid} uses {sorted(used)}: a unit test runs no server; move it to "
            "tests/integration/.",
            pytrace=False,
        )
