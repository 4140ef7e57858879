"""Result validation: a JSON-safe copy of any value, in one pass, that never raises.

Values JSON cannot represent (sets, bytes, datetimes, Decimals, NaN/Infinity, arbitrary
objects, file handles, non-string keys...) become placeholder strings like
``"<placeholder set at $.tags>"`` and are each listed with their path, type and a short repr.
The copy always serialises with ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

import math
import re
import reprlib
from dataclasses import dataclass
from typing import Any

from celery_ext.status import Placeholder

__all__ = ["SafeResult", "make_json_safe", "placeholder_text", "find_placeholders"]

#: Deeper nesting than this is replaced by a placeholder instead of recursing further.
MAX_DEPTH = 200
#: Placeholders listed in result_info; more are counted in the last entry.
MAX_PLACEHOLDERS = 100

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlist = _repr.maxdict = _repr.maxset = _repr.maxtuple = 6


@dataclass(frozen=True)
class SafeResult:
    value: Any
    placeholders: tuple[Placeholder, ...]


def placeholder_text(type_name: str, path: str) -> str:
    """The string that stands in the result where a non-JSON value was."""
    return f"<placeholder {type_name} at {path}>"


_PLACEHOLDER = re.compile(r"<placeholder (\S+) at (\$.*)>")


def find_placeholders(value: Any, repr_text: str = "(replaced before it was stored)") -> tuple[Placeholder, ...]:
    """The placeholder strings a JSON value already holds (put there by FileIntelTask)."""
    found: list[Placeholder] = []
    stack = [value]
    while stack and len(found) < MAX_PLACEHOLDERS:
        item = stack.pop()
        if isinstance(item, str):
            match = _PLACEHOLDER.fullmatch(item)
            if match:
                found.append(Placeholder(match.group(2), match.group(1), repr_text))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return tuple(found)


def make_json_safe(value: Any) -> SafeResult:
    """Return a JSON-safe copy of ``value`` and the list of parts that were replaced."""
    found: list[Placeholder] = []
    safe = _Walker(found).walk(value, "$", 0)
    return SafeResult(safe, tuple(found[:MAX_PLACEHOLDERS]))


class _Walker:
    def __init__(self, found: list[Placeholder]) -> None:
        self.found = found
        self.active: set[int] = set()  # ids of containers on the current path (cycles)

    def walk(self, value: Any, path: str, depth: int) -> Any:
        # Exact type checks first: bool/int/str subclasses (enums...) are still JSON-able
        # through isinstance, which is what json.dumps does too.
        if value is None or isinstance(value, (bool, str)):
            return value if type(value) in (bool, str, type(None)) else self._plain(value, path)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return self.replace(value, path)
        if isinstance(value, (dict, list, tuple)):
            if depth >= MAX_DEPTH:
                return self.replace(value, path, note="nested too deeply")
            if id(value) in self.active:
                return self.replace(value, path, note="refers to itself")
            self.active.add(id(value))
            try:
                if isinstance(value, dict):
                    return self._dict(value, path, depth)
                return [self.walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
            finally:
                self.active.discard(id(value))
        return self.replace(value, path)

    def _plain(self, value: Any, path: str) -> Any:
        # A str/bool subclass: keep its plain value (what json.dumps writes).
        return bool(value) if isinstance(value, bool) else str(value)

    def _dict(self, value: dict[Any, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str):
                name = key
            elif isinstance(key, (int, float, bool)) or key is None:
                # json.dumps converts these keys to strings; so do we, silently.
                name = _json_key(key)
            else:
                name = placeholder_text(_type_name(key), f"{path} key")
                self.found.append(Placeholder(f"{path} key", _type_name(key), _safe_repr(key)))
            out[name] = self.walk(item, _child_path(path, name), depth + 1)
        return out

    def replace(self, value: Any, path: str, note: str | None = None) -> str:
        type_name = _type_name(value)
        text = _safe_repr(value) if note is None else note
        self.found.append(Placeholder(path, type_name, text))
        return placeholder_text(type_name, path)


def _json_key(key: Any) -> str:
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    return repr(float(key)) if isinstance(key, float) else str(int(key))


def _child_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    escaped = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{escaped}']"


def _type_name(value: Any) -> str:
    cls = type(value)
    module = getattr(cls, "__module__", "builtins")
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module == "builtins" else f"{module}.{name}"


def _safe_repr(value: Any) -> str:
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a broken __repr__ must not break validation
        text = f"<unrepresentable: {type(exc).__name__}>"
    return text[:200]
