"""Smoke test of an installed flower-fileintel wheel (run by scripts/package-check).

Run it with the Python of a venv the wheel was installed into, from a directory outside the
checkout and with ``-I``, so that every import and every data file comes from the wheel::

    python -I package_smoke.py flower_fileintel-0.1.0-py3-none-any.whl

It checks what a user of the wheel relies on and a source checkout hides when it is missing:
package data (the JSON schema, the templates, the static files, ``py.typed``), the
``celery.commands`` entry point, and ``celery fileintel --help`` from the venv's ``celery``.
Exits non-zero with one line per problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata, resources
from pathlib import Path

problems: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        problems.append(what)


def main(wheel_name: str) -> int:
    import celery_ext
    import flower_fileintel

    site = Path(celery_ext.__file__).resolve().parent.parent
    check("site-packages" in site.parts, f"celery_ext is imported from the venv ({site})")
    check(
        Path(flower_fileintel.__file__).resolve().parent.parent == site,
        "flower_fileintel is imported from the same place",
    )

    # One version: the wheel's file name, its metadata and celery_ext.__version__ agree.
    installed = metadata.version("flower-fileintel")
    check(celery_ext.__version__ == installed, f"celery_ext.__version__ == metadata version ({installed})")
    check(f"-{installed}-" in wheel_name, f"the wheel's name carries the same version ({wheel_name})")

    # The JSON schema: present, valid JSON, and the one status.py names.
    from celery_ext.status import SCHEMA

    schemas = [f for f in resources.files("celery_ext").joinpath("schema").iterdir() if f.name.endswith(".json")]
    check(bool(schemas), "celery_ext/schema/*.json is in the wheel")
    for schema_file in schemas:
        try:
            doc = json.loads(schema_file.read_text(encoding="utf-8"))
            check(doc.get("title") == SCHEMA, f"{schema_file.name} loads, title {doc.get('title')!r} == {SCHEMA!r}")
        except ValueError as exc:
            check(False, f"{schema_file.name} is valid JSON ({exc})")

    check(resources.files("celery_ext").joinpath("py.typed").is_file(), "celery_ext/py.typed")
    check(resources.files("flower_fileintel").joinpath("py.typed").is_file(), "flower_fileintel/py.typed")

    # Templates: every one compiles through the plugin's own loader, which also resolves the
    # Flower templates they extend (a missing file or a syntax error fails here).
    from flower_fileintel.plugin import TEMPLATE_DIR, ChainLoader, _flower_template_dir
    from flower_fileintel.state import STATIC_DIR

    templates = sorted(os.listdir(TEMPLATE_DIR)) if os.path.isdir(TEMPLATE_DIR) else []
    check(bool(templates), f"templates are in the wheel ({', '.join(templates) or 'none'})")
    loader = ChainLoader(_flower_template_dir(), autoescape="xhtml_escape")
    for name in templates:
        try:
            loader.load(name)
            check(True, f"template {name} compiles")
        except Exception as exc:
            check(False, f"template {name} compiles ({type(exc).__name__}: {exc})")

    static = sorted(os.listdir(STATIC_DIR)) if os.path.isdir(STATIC_DIR) else []
    for wanted in ("fileintel.css", "fileintel.js"):
        path = os.path.join(STATIC_DIR, wanted)
        check(wanted in static and os.path.getsize(path) > 0, f"static/{wanted} is in the wheel")

    # The plugin's start-up check against the Flower that pip resolved.
    from flower_fileintel import FlowerIncompatible, check_flower

    try:
        check_flower()
        check(True, "check_flower(): the Flower internals the plugin needs are there")
    except FlowerIncompatible as exc:
        check(False, f"check_flower(): {exc}")

    # The entry point Celery finds the command by, and the command itself.
    points = [ep for ep in metadata.entry_points(group="celery.commands") if ep.name == "fileintel"]
    check(len(points) == 1, "one 'fileintel' entry point in group celery.commands")
    if points:
        import click

        command = points[0].load()
        check(isinstance(command, click.Group), f"it loads a click group ({points[0].value})")
        if isinstance(command, click.Group):
            names = set(command.list_commands(click.Context(command)))
            check({"status", "result", "wait", "demo"} <= names, f"its subcommands: {', '.join(sorted(names))}")

    # The demo is its own top-level package, reached through its entry points.
    import fileintel_demo

    check(
        Path(fileintel_demo.__file__).resolve().parent.parent == site,
        "fileintel_demo is in the wheel, beside celery_ext",
    )
    check((Path(sys.executable).parent / "fileintel-demo").is_file(), "the fileintel-demo script is installed")

    celery = Path(sys.executable).parent / "celery"
    run = subprocess.run([str(celery), "fileintel", "--help"], capture_output=True, text=True, timeout=120)
    check(
        run.returncode == 0 and "fileintel status TASK_ID" in run.stdout,
        f"`celery fileintel --help` works (exit {run.returncode}{', ' + run.stderr.strip()[-300:] if run.returncode else ''})",
    )

    if problems:
        print(f"\n{len(problems)} problem(s) with the installed wheel:", *problems, sep="\n  ")
        return 1
    print("\nThe installed wheel is complete.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
