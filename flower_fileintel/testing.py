"""Run Flower with the plugin in a background thread: for tests and benchmarks.

Flower's own test harness is not shipped in its wheel, so this builds the same application
``celery fileintel flower`` builds (``flower.app.Flower`` + ``install``), with per-instance
options instead of Tornado's process-wide ``options`` object, on a free loopback port::

    with FlowerServer(app, basic_auth=["user:pass"], url_prefix="flower") as server:
        requests.get(server.url("/fileintel"), auth=("user", "pass"))
"""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any

__all__ = ["FlowerServer", "flower_options"]


def flower_options(**overrides: Any) -> types.SimpleNamespace:
    """A copy of Flower's option values with ``overrides`` applied (Flower reads options only
    by attribute, so a namespace per instance keeps tests independent)."""
    from flower.options import options

    values = options.as_dict()
    unknown = set(overrides) - set(values)
    if unknown:
        raise TypeError(f"unknown Flower option(s): {', '.join(sorted(unknown))}")
    values.update(overrides)
    return types.SimpleNamespace(**values)


class FlowerServer:
    """Flower + flower-fileintel on 127.0.0.1:<free port>, its IOLoop in a daemon thread."""

    def __init__(self, capp: Any, *, install_plugin: bool = True, **options: Any) -> None:
        self.capp = capp
        self.install_plugin = install_plugin
        self.options = flower_options(**options)
        self.port: int | None = None
        self.flower_app: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        prefix = (self.options.url_prefix or "").strip("/")
        return f"http://127.0.0.1:{self.port}" + (f"/{prefix}" if prefix else "")

    def url(self, path: str) -> str:
        return self.base_url + path

    def _settings(self) -> dict[str, Any]:
        from flower.urls import settings as flower_settings
        from flower.utils import prepend_url

        settings = dict(flower_settings)
        settings.pop("template_loader", None)
        settings["debug"] = False
        settings["cookie_secret"] = self.options.cookie_secret
        if self.options.url_prefix:
            for name in ("login_url", "static_url_prefix"):
                settings[name] = prepend_url(settings[name], self.options.url_prefix)
        if self.options.auth:
            settings["oauth"] = {
                "key": self.options.oauth2_key,
                "secret": self.options.oauth2_secret,
                "redirect_uri": self.options.oauth2_redirect_uri,
            }
        return settings

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._teardown())
        loop.close()

    async def _setup(self) -> None:
        from flower.app import Flower
        from tornado.httpserver import HTTPServer
        from tornado.ioloop import IOLoop
        from tornado.netutil import bind_sockets

        from flower_fileintel.plugin import install

        self.flower_app = Flower(
            capp=self.capp, options=self.options, io_loop=IOLoop.current(), **self._settings()
        )
        if self.install_plugin:
            install(self.flower_app)
        sockets = bind_sockets(0, address="127.0.0.1")
        self._server = HTTPServer(self.flower_app)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    async def _teardown(self) -> None:
        state = getattr(self.flower_app, "fileintel_state", None)
        if state is not None:
            await state.hub.stop()
            state.close()
        if self._server is not None:
            self._server.stop()
        self.flower_app.executor.shutdown(wait=False)

    def start(self) -> FlowerServer:
        self._thread = threading.Thread(target=self._run, name="flower-test-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def call(self, func: Any, *args: Any) -> Any:
        """Run ``func(*args)`` on the server's loop (a coroutine function is awaited)."""
        assert self._loop is not None

        async def runner() -> Any:
            result = func(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(30)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> FlowerServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Response:
    """A finished HTTP response (status, headers, body) from ``http_get``."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def _auth_header(auth: tuple[str, str] | None, headers: dict[str, str]) -> dict[str, str]:
    import base64

    headers = dict(headers)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def http_get(
    url: str,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """GET without following redirects (the auth tests look at them)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path or "/", headers=_auth_header(auth, headers or {}))
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def sse_events(
    url: str,
    auth: tuple[str, str] | None = None,
    timeout: float = 30.0,
    until: Any = None,
) -> list[tuple[str, str]]:
    """Read a Server-Sent Events stream; return ``(event, data)`` pairs until the server
    ends it, ``until((event, data))`` is true, or ``timeout`` passes."""
    import http.client
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.monotonic() + timeout
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    events: list[tuple[str, str]] = []
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path, headers=_auth_header(auth, {"Accept": "text/event-stream"}))
        resp = conn.getresponse()
        if resp.status != 200:
            raise AssertionError(f"SSE stream {url} answered {resp.status}: {resp.read()[:500]!r}")
        event, data = "message", list[str]()
        while time.monotonic() < deadline:
            try:
                line = resp.readline()
            except (TimeoutError, OSError):  # the deadline passed while the stream idled
                break
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    item = (event, "\n".join(data))
                    events.append(item)
                    if until is not None and until(item):
                        break
                event, data = "message", list[str]()
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.decode().partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
        return events
    finally:
        conn.close()
