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

__all__ = ["NotDecoded", "decode_stored", "stores_pickle", "PICKLE_REFUSED"]

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
        return app.backend.decode(payload)
    except Exception as exc:
        serializer = app.conf.result_serializer
        raise NotDecoded(
            f"it cannot be decoded by this app (result_serializer={serializer!r}: "
            f"{type(exc).__name__}); was it stored by an app with another serializer?"
        ) from exc


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
