"""Asking the demo's Flower whether it shows each case right (plain HTTP, standard library)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from celery_ext.status import TaskStatus
from fileintel_demo.cases import HTML_MARKER, CaseRun

__all__ = ["Response", "http_get", "healthy", "check_case"]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str


def http_get(url: str, timeout: float = 10.0) -> Response:
    """GET ``url``; HTTP errors are returned as responses, connection errors raise OSError."""
    request = urllib.request.Request(url, headers={"Accept": "*/*", "User-Agent": "fileintel-demo"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Response(reply.status, reply.read(), reply.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), exc.headers.get("Content-Type", "") if exc.headers else "")


def healthy(base_url: str) -> bool:
    try:
        return http_get(f"{base_url}/healthcheck", timeout=2).status == 200
    except OSError:
        return False


def check_case(base_url: str, run: CaseRun, status: TaskStatus) -> str:
    """``"ok"``, or what Flower got wrong about this case (compared with ``status``)."""
    task_id = run.task_id
    try:
        api = http_get(f"{base_url}/api/fileintel/task/{task_id}")
        if api.status != 200:
            return f"GET /api/fileintel/task/{task_id} answered {api.status}: {api.body[:200]!r}"
        doc = json.loads(api.body)
        if doc.get("phase") != status.phase.value or bool(doc.get("expired")) != status.expired:
            return (
                f"Flower says phase={doc.get('phase')} expired={doc.get('expired')}, "
                f"describe() says phase={status.phase.value} expired={status.expired}"
            )
        page = http_get(f"{base_url}/fileintel/task/{task_id}")
        if page.status != 200:
            return f"GET /fileintel/task/{task_id} answered {page.status}"
        if run.spec.key == "html" and HTML_MARKER.encode() in page.body:
            return "the detail page contains the task's <script> text unescaped"
        if run.spec.key == "download" and not status.expired:
            download = http_get(f"{base_url}/api/fileintel/task/{task_id}/result/download", timeout=30)
            if download.status != 200:
                return f"the download answered {download.status}"
            json.loads(download.body)  # the whole result, valid JSON
            if len(download.body) < (status.result_info.bytes or 0) // 2:
                return f"the download has {len(download.body)} bytes, the stored result {status.result_info.bytes}"
    except (OSError, ValueError) as exc:
        return f"Flower did not answer properly: {exc}"
    return "ok"
