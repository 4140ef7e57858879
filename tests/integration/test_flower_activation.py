"""Both ways to turn the plugin on, run for real, and the start-up self-check.

- ``celery -A proj fileintel flower [celery flower options]``
- ``celery -A proj flower`` with ``import flower_fileintel.activate`` in flowerconfig.py
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess

import pytest

from flower_fileintel.testing import http_get
from tests.harness import free_port, kill_process_tree, start_celery, wait_listening

pytestmark = [pytest.mark.integration]


@pytest.fixture
def finished_task(app, worker):
    result = app.tasks["tests.proj.add"].delay(20, 22)
    assert result.get(timeout=10) == 42
    return result


@pytest.mark.slow
def test_fileintel_flower_command_with_env_vars_url_prefix_and_basic_auth(app, finished_task):
    port = free_port()
    proc = start_celery(
        "fileintel", "flower", f"--port={port}", "--address=127.0.0.1", "--url_prefix=fl",
        env={"FLOWER_BASIC_AUTH": "ops:pw"},  # Flower's own env var, honoured as in `celery flower`
    )
    try:
        wait_listening(proc, port)
        base = f"http://127.0.0.1:{port}/fl"
        assert http_get(base + "/fileintel").status == 401
        assert http_get(base + "/fileintel", auth=("ops", "pw")).status == 200
        doc = http_get(base + f"/api/fileintel/task/{finished_task.id}", auth=("ops", "pw")).json()
        assert doc["phase"] == "succeeded" and doc["result"] == 42
        assert http_get(base + f"/api/fileintel/task/{finished_task.id}/result", auth=("ops", "pw")).json() == 42
        flower_page = http_get(base + "/tasks", auth=("ops", "pw")).text
        assert 'href="/fl/fileintel">File intel</a>' in flower_page
    finally:
        kill_process_tree(proc, term_timeout=10)


@pytest.mark.slow
def test_fileintel_flower_command_serves_tls(app, tmp_path, finished_task):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    port = free_port()
    proc = start_celery(
        "fileintel", "flower", f"--port={port}", "--address=127.0.0.1",
        f"--certfile={cert}", f"--keyfile={key}", "--basic_auth=ops:pw",
    )
    try:
        wait_listening(proc, port)
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
        conn.request("GET", f"/api/fileintel/task/{finished_task.id}/result",
                     headers={"Authorization": "Basic b3BzOnB3"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"42"
    finally:
        kill_process_tree(proc, term_timeout=10)


@pytest.mark.slow
def test_celery_flower_with_the_flowerconfig_import_line(app, tmp_path, finished_task):
    port = free_port()
    conf = tmp_path / "flowerconfig.py"
    conf.write_text(
        "import flower_fileintel.activate  # noqa: F401\n"
        f"port = {port}\n"
        "address = '127.0.0.1'\n"
        "basic_auth = ['ops:pw']\n"
        "url_prefix = 'mon'\n"
    )
    proc = start_celery("flower", f"--conf={conf}")
    try:
        wait_listening(proc, port)
        base = f"http://127.0.0.1:{port}/mon"
        assert http_get(base + "/fileintel").status == 401
        assert http_get(base + "/fileintel", auth=("ops", "pw")).status == 200
        result = http_get(base + f"/api/fileintel/task/{finished_task.id}/result", auth=("ops", "pw"))
        assert result.status == 200 and result.json() == 42
        assert 'href="/mon/fileintel">File intel</a>' in http_get(base + "/workers", auth=("ops", "pw")).text
    finally:
        kill_process_tree(proc, term_timeout=10)


# --------------------------------------------------------------------------------------------
# the self-check


def test_self_check_passes_on_the_installed_flower():
    from flower_fileintel import check_flower

    check_flower()


def test_self_check_names_what_is_missing(monkeypatch):
    import flower.app
    import flower.urls

    from flower_fileintel import FlowerIncompatible, check_flower

    monkeypatch.setattr(flower.urls, "handlers", flower.urls.handlers[:-1])  # no catch-all
    monkeypatch.delattr(flower.app, "rewrite_handler")
    with pytest.raises(FlowerIncompatible) as info:
        check_flower()
    message = str(info.value)
    assert "catch-all" in message and "rewrite_handler" in message
    assert "--url_prefix" in message
    assert "Install a Flower version" in message


def test_the_command_stops_with_the_self_check_message(monkeypatch):
    from celery.exceptions import CeleryCommandException

    import flower_fileintel.compat as compat
    from flower_fileintel.command import EX_CONFIG, flower

    def broken() -> None:
        raise compat.FlowerIncompatible("flower-fileintel cannot install its pages: test")

    monkeypatch.setattr(compat, "check_flower", broken)
    with pytest.raises(CeleryCommandException) as info:
        flower.main([], standalone_mode=False, obj=None)
    assert info.value.exit_code == EX_CONFIG
    assert "cannot install its pages" in str(info.value)


def test_install_is_idempotent_and_routes_win_over_the_catch_all(app):
    from flower_fileintel.plugin import install
    from flower_fileintel.testing import FlowerServer

    with FlowerServer(app, basic_auth=["u:p"]) as server:
        before = len(server.flower_app.default_router.rules)
        server.call(install, server.flower_app)
        assert len(server.flower_app.default_router.rules) == before
        assert http_get(server.url("/fileintel"), auth=("u", "p")).status == 200
        assert http_get(server.url("/no-such-page"), auth=("u", "p")).status == 404


# --------------------------------------------------------------------------------------------
# Flower's own pages are not broken by the plugin


def test_flowers_own_pages_still_render_with_the_plugin(app):
    from flower_fileintel.testing import FlowerServer

    with FlowerServer(app, basic_auth=["u:p"]) as server:
        for path in ("/", "/workers", "/tasks", "/broker", "/tasks/datatable?draw=1&start=0&length=10&order%5B0%5D%5Bcolumn%5D=0&order%5B0%5D%5Bdir%5D=asc&search%5Bvalue%5D=&columns%5B0%5D%5Bdata%5D=name"):
            resp = http_get(server.url(path), auth=("u", "p"), timeout=20)
            assert resp.status == 200, (path, resp.status)
        assert http_get(server.url("/metrics")).status == 200
        assert http_get(server.url("/healthcheck")).text == "OK"


class _FakeHandler:
    def __init__(self, html: bytes, reversible: bool = True) -> None:
        self.html, self.reversible = html, reversible

    def render_string(self, name: str, **kwargs: object) -> bytes:
        assert name == "flower/navbar.html"
        return self.html

    def reverse_url(self, name: str) -> str:
        if not self.reversible:
            raise KeyError(name)
        return "/fileintel"


def test_navbar_link_is_added_only_where_flowers_navbar_is_as_expected():
    from flower_fileintel.templating import NAV_MARKER, NAV_MARKERS, navbar_with_link

    for marker in NAV_MARKERS:  # Flower 2.2's navbar and Flower 2.0's
        html = marker + b"<li>Workers</li></ul><ul>other</ul>"
        out = navbar_with_link(_FakeHandler(html), "workers")
        assert out.count(b'href="/fileintel"') == 1
        assert out.index(b"File intel") < out.index(b"</ul>")  # inside the primary list
    expected = NAV_MARKER + b"<li>Workers</li></ul><ul>other</ul>"
    changed = b'<ul class="something-new"><li>Workers</li></ul>'
    assert navbar_with_link(_FakeHandler(changed), "workers") == changed
    assert navbar_with_link(_FakeHandler(expected, reversible=False), "workers") == expected


def test_public_api_is_exported():
    import flower_fileintel

    for name in flower_fileintel.__all__:
        assert getattr(flower_fileintel, name) is not None, name
    assert sorted(dir(flower_fileintel)) == sorted(flower_fileintel.__all__)
