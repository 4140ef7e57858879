"""Template helpers: Flower's navbar with a link to the board added.

Flower's navbar is rendered by every Flower page. We wrap it rather than copy it: render
Flower's own ``navbar.html``, then insert one ``<li>`` at the end of its primary list. If that
list is not where we expect it (a future Flower), the navbar is returned untouched: Flower's
pages never break because of the plugin.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado.escape import xhtml_escape

__all__ = ["navbar_with_link", "NAV_MARKER", "NAV_MARKERS"]

logger = logging.getLogger(__name__)

#: Flower's primary navigation list (flower/templates/navbar.html, Flower 2.1 and 2.2).
NAV_MARKER = b'<ul class="app-nav navbar-nav">'
#: Every form of that list we know, newest first: Flower 2.0's navbar has the older class.
NAV_MARKERS = (NAV_MARKER, b'<ul class="navbar-nav mr-auto">')


def navbar_with_link(handler: Any, active_tab: str | None) -> bytes:
    original: bytes = handler.render_string("flower/navbar.html", active_tab=active_tab)
    try:
        href = handler.reverse_url("fileintel-board")
    except Exception:  # routes not installed in this app
        return original
    start = next((i for i in map(original.find, NAV_MARKERS) if i >= 0), -1)
    end = original.find(b"</ul>", start) if start >= 0 else -1
    if end < 0:
        return original
    active = active_tab == "fileintel"
    item = (
        '\n        <li class="nav-item">\n'
        f'          <a class="nav-link{" active" if active else ""}" href="{xhtml_escape(href)}"'
        f'{" aria-current=" + chr(34) + "page" + chr(34) if active else ""}>File intel</a>\n'
        "        </li>\n      "
    ).encode()
    return original[:end] + item + original[end:]
