"""What the browser tests share: viewports, opening a plugin page until its script is live,
and the check that every table cell can be seen."""

from __future__ import annotations

from typing import Any

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

#: Every table cell is inside the viewport, or inside a box that scrolls sideways.
CELLS_REACHABLE = """() => {
  const width = window.innerWidth;
  const bad = [];
  for (const td of document.querySelectorAll('.fi-table td')) {
    const r = td.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) { bad.push('hidden: ' + td.textContent); continue; }
    if (r.left >= -0.5 && r.right <= width + 0.5) { continue; }
    const box = td.closest('.fi-scroll');
    const scrolls = box && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
    if (!scrolls) { bad.push('cut off: ' + td.textContent); }
  }
  return bad;
}"""


def open_page(page: Any, url: str) -> None:
    """Go to ``url`` and wait until the page's script ran and, on a live page, its first
    update (pushed or polled) is applied."""
    page.goto(url)
    page.wait_for_function(
        "() => document.documentElement.getAttribute('data-fileintel-ready') === '1'"
        " && (window.fileintelTransport === undefined"
        "     || document.documentElement.getAttribute('data-fileintel-live') === '1')"
    )
