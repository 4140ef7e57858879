"""The design's import rules, read from the source (every import that runs, in functions
too; imports under ``if TYPE_CHECKING:`` never run and are left out):

- data flows one way: ``celery_ext`` never imports ``flower_fileintel``;
- the demo sits on top: ``celery_ext`` and ``flower_fileintel`` never import ``fileintel_demo``
  (it is a user of the library, like any app, reached only through entry points);
- only ``celery_ext`` talks to Redis: the demo too reaches its Redis through its Celery app
  and ``celery_ext``, and waits for its redis-server with a plain TCP connection;
- no module imports one that imports it back, however far round.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

from tests.harness import REPO_ROOT

PACKAGES = ("celery_ext", "flower_fileintel", "fileintel_demo")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)  # the source does not change during a run: parse it once
def _imports() -> dict[str, set[str]]:
    """Module -> every module it imports (absolute names; ``from a import b`` counts as a.b
    when a.b is one of ours, else as a)."""
    ours = {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, path in ours.items():
        found: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:  # imports for type checkers only never run
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in ours else node.module)
        graph[name] = found
    return graph


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def test_celery_ext_never_imports_flower_fileintel():
    offenders = {
        module: sorted(i for i in imports if i.split(".")[0] == "flower_fileintel")
        for module, imports in _imports().items()
        if module.split(".")[0] == "celery_ext"
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_library_never_imports_the_demo():
    offenders = {
        module: sorted(i for i in imports if i.split(".")[0] == "fileintel_demo")
        for module, imports in _imports().items()
        if module.split(".")[0] in ("celery_ext", "flower_fileintel")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_only_celery_ext_talks_to_redis():
    offenders = {
        module: sorted(i for i in imports if i.split(".")[0] == "redis")
        for module, imports in _imports().items()
        if module.split(".")[0] != "celery_ext"
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_import_cycles():
    graph = {m: {i for i in imports if _ours(i) and i != m} for m, imports in _imports().items()}
    # A package's __init__ re-exporting its modules is not a cycle with those modules.
    for module, imports in graph.items():
        graph[module] = {i for i in imports if not module.startswith(i + ".")}
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_the_rules_see_real_imports():
    """The scanner finds imports that are known to exist (a scanner that reads nothing would
    pass every rule above)."""
    graph = _imports()
    assert "celery_ext.push" in graph["celery_ext.watch"]
    assert "redis" in graph["celery_ext.push"]
    assert "celery_ext.push" in graph["flower_fileintel.live"]
    assert "fileintel_demo.cases" in graph["fileintel_demo.probe"]
