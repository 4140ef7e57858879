"""Import-line activation for people who keep running ``celery flower``.

Add one line to ``flowerconfig.py``::

    import flower_fileintel.activate  # noqa: F401

Flower executes its config file before it builds its application, so this splices the
plugin's routes into ``flower.urls.handlers`` (before the catch-all 404) and its template
loader into ``flower.urls.settings``. ``--url_prefix``, auth and TLS then apply to the plugin
exactly as to Flower's own pages. If the installed Flower lacks an internal the plugin needs,
the import fails with a message saying what and why, and Flower does not start.
"""

from __future__ import annotations

from flower_fileintel.plugin import splice_into_flower_urls

splice_into_flower_urls()
