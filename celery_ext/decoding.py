"""Decoding what the store holds without running code from it.

A pickled payload runs whatever its ``__reduce__`` says when it is loaded. A monitoring UI
is often opened by people in another trust zone than the workers, so readers (the CLI,
Flower's pages, API, board and live updates) refuse pickle unless the operator opts in with
``fileintel_decode_pickle = True`` (or the CLI's ``--decode-pickle``). Refused payloads are
reported as ``not_readable`` with a note, and can still be downloaded raw. The worker side
is unaffected: Celery itself writes and reads its results as configured.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

__all__ = ["NotDecoded", "decode_stored", "stores_pickle", "printable", "PICKLE_REFUSED"]

#: The content types kombu's pickle serializer writes.
_PICKLE_TYPES = frozenset({"application/x-python-serialize"})
#: Pickle protocol 2 and later start with the PROTO opcode.
_PICKLE_PROTO = b"\x80"

PICKLE_REFUSED = (
    "it is stored as pickle, which this viewer does not decode (loading pickle can run code "
    "from the store); set fileintel_decode_pickle = True (or pass --decode-pickle) to allow it, "
    "or download it raw"
)


class NotDecoded(ValueError):
    """The payload was not decoded; ``str()`` says why, as a clause for a note."""


def stores_pickle(app: Celery) -> bool:
    """The app's result backend serializes with pickle."""
    return getattr(app.backend, "content_type", None) in _PICKLE_TYPES


def decode_stored(app: Celery, payload: bytes | str, *, allow_pickle: bool) -> Any:
    """``app.backend.decode(payload)``, unless that would unpickle and ``allow_pickle`` is off.

    Raises ``NotDecoded`` with the reason when the payload is refused or cannot be decoded.
    Stored exceptions stay plain dicts (``decode``, not ``decode_result``, which imports and
    instantiates their classes).
    """
    data = _decompressed(payload)
    pickled = stores_pickle(app) or (isinstance(data, (bytes, bytearray)) and data[:1] == _PICKLE_PROTO)
    if pickled and not allow_pickle:
        raise NotDecoded(PICKLE_REFUSED)
    try:
        decoded = app.backend.decode(payload)
    except Exception as exc:
        serializer = app.conf.result_serializer
        raise NotDecoded(
            f"it cannot be decoded by this app (result_serializer={serializer!r}: "
            f"{type(exc).__name__}); was it stored by an app with another serializer?"
        ) from exc
    if _plain_ascii_json(app, data):
        return decoded  # no string in it can need escaping: skip the walk (the board reads hundreds)
    return printable(decoded)


def _plain_ascii_json(app: Celery, data: Any) -> bool:
    """JSON text that is all ASCII and has no ``\\u`` escape decodes to ASCII strings only."""
    if getattr(app.backend, "content_type", None) != "application/json":
        return False
    if isinstance(data, (bytes, bytearray)):
        return data.isascii() and b"\\u" not in data
    return isinstance(data, str) and data.isascii() and "\\u" not in data


def printable(value: Any) -> Any:
    """``value`` with every string that UTF-8 cannot encode shown escaped.

    JSON carries lone surrogates (``"\\udcff"``: a file name read with ``os.fsdecode``), and
    Celery stores them; but no page, file or terminal can print one. Escaped once here, where
    stored data enters, they read as ``report-\\udcff.pdf`` everywhere instead of failing the
    output that meets them. Containers are copied only when something in them changed.
    """
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        items = [(printable(k), printable(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items())):
            return value
        return dict(items)
    if isinstance(value, list):
        items = [printable(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def _decompressed(payload: bytes | str) -> Any:
    """The payload with Celery's result compression undone (Celery 5.7+), else as is.
    Decompressing runs no code from the store; only deserializing can."""
    try:
        from celery.backends.base import decompress_payload
    except ImportError:  # before Celery 5.7: no result compression
        return payload
    try:
        return decompress_payload(payload)
    except Exception:
        return payload
