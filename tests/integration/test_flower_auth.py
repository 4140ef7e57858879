"""Auth matrix: EVERY route the plugin registers refuses unauthenticated requests.

The routes are read from the running application's router, not from a list kept here, so
a route added later without ``@web.authenticated`` (or outside Flower's handler classes)
fails this test.
"""

from __future__ import annotations

import pytest
from tornado.web import create_signed_value

from flower_fileintel.testing import FlowerServer, http_get, sse_events

pytestmark = pytest.mark.integration

TASK_ID = "0b6e3a4c-1111-4c5e-9a57-2d1f0c6b7e10"


def plugin_routes(flower_app):
    """(name, path) for every rule whose handler comes from flower_fileintel."""
    found = []

    def walk(router):
        for rule in getattr(router, "rules", []):
            target = rule.target
            if hasattr(target, "rules"):
                walk(target)
            elif isinstance(target, type) and target.__module__.startswith("flower_fileintel"):
                groups = rule.matcher.regex.groups
                args = ["fileintel.js"] if "static" in rule.matcher.regex.pattern else [TASK_ID] * groups
                found.append((rule.name, rule.matcher.reverse(*args), target))

    walk(flower_app.default_router)
    return found


def is_stream(path):
    return path.endswith("/events")


def test_every_route_in_the_route_table_is_registered(app):
    from flower_fileintel.urls import ROUTE_NAMES

    with FlowerServer(app, basic_auth=["u:p"]) as server:
        names = {name for name, _, _ in plugin_routes(server.flower_app)}
    assert names == set(ROUTE_NAMES)


def test_every_plugin_handler_is_a_flower_handler(app):
    from flower.api import BaseApiHandler
    from flower.views import BaseHandler

    with FlowerServer(app, basic_auth=["u:p"]) as server:
        routes = plugin_routes(server.flower_app)
    for name, path, handler in routes:
        assert issubclass(handler, BaseHandler), name
        if path.startswith("/api/"):
            assert issubclass(handler, BaseApiHandler), name


def test_basic_auth_every_route_is_401_without_or_with_wrong_credentials(app):
    with FlowerServer(app, basic_auth=["user:right"]) as server:
        routes = plugin_routes(server.flower_app)
        assert len(routes) >= 10
        for name, path, _ in routes:
            for auth in (None, ("user", "wrong"), ("other", "right")):
                resp = http_get(server.url(path), auth=auth, timeout=10)
                assert resp.status == 401, (name, path, auth, resp.status)
                assert resp.headers.get("WWW-Authenticate") == 'Basic realm="flower"', (name, path)
        # and with the right credentials they answer
        for name, path, _ in routes:
            if is_stream(path):
                events = sse_events(server.url(path), auth=("user", "right"), timeout=5, until=lambda e: True)
                assert events and events[0][0] == "hello", name
            else:
                resp = http_get(server.url(path), auth=("user", "right"), timeout=10)
                assert resp.status not in (401, 403, 500), (name, path, resp.status)


def test_oauth_every_route_redirects_to_login_without_a_session(app):
    secret = "test-cookie-secret"
    with FlowerServer(app, auth=".*@example.com", cookie_secret=secret) as server:
        routes = plugin_routes(server.flower_app)
        for name, path, _ in routes:
            resp = http_get(server.url(path), timeout=10)
            assert resp.status == 302, (name, path, resp.status)
            assert resp.headers["Location"].startswith("/login?next="), (name, resp.headers["Location"])
        # a session cookie for a user outside the allowed pattern is refused too
        outsider = create_signed_value(secret, "user", "mallory@evil.test").decode()
        for name, path, _ in routes:
            resp = http_get(server.url(path), headers={"Cookie": f"user={outsider}"}, timeout=10)
            assert resp.status == 302, (name, path, resp.status)
        # a valid session gets in
        cookie = create_signed_value(secret, "user", "alice@example.com").decode()
        for name, path, _ in routes:
            if is_stream(path):
                continue
            resp = http_get(server.url(path), headers={"Cookie": f"user={cookie}"}, timeout=10)
            assert resp.status not in (302, 401, 403, 500), (name, path, resp.status)


def test_without_auth_the_api_needs_flowers_unauthenticated_api_switch(app, monkeypatch):
    """Flower's own rule for its API applies to ours: no auth configured -> API 401 unless
    FLOWER_UNAUTHENTICATED_API is set. Pages follow Flower's pages (open)."""
    monkeypatch.delenv("FLOWER_UNAUTHENTICATED_API", raising=False)
    with FlowerServer(app) as server:
        for name, path, _ in plugin_routes(server.flower_app):
            if path.startswith("/api/"):
                assert http_get(server.url(path), timeout=10).status == 401, name
        assert http_get(server.url("/fileintel")).status == 200
        monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")
        assert http_get(server.url(f"/api/fileintel/task/{TASK_ID}")).status == 200


def test_url_prefix_applies_to_every_route(app):
    with FlowerServer(app, basic_auth=["u:p"], url_prefix="flower") as server:
        routes = plugin_routes(server.flower_app)
        assert routes and all(path.startswith("/flower/") for _, path, _ in routes)
        root = f"http://127.0.0.1:{server.port}"
        assert http_get(root + "/flower/fileintel", auth=("u", "p")).status == 200
        assert http_get(root + "/fileintel", auth=("u", "p")).status == 404
        page = http_get(root + f"/flower/fileintel/task/{TASK_ID}", auth=("u", "p")).text
        assert f'data-poll-url="/flower/fileintel/task/{TASK_ID}/status.json"' in page
        assert 'href="/flower/fileintel"' in page  # navbar link
        assert "/flower/fileintel/static/fileintel.js" in page
        assert http_get(root + "/flower/fileintel/static/fileintel.js", auth=("u", "p")).status == 200
        for name, path, _ in routes:
            assert http_get(root + path, timeout=10).status == 401, name
