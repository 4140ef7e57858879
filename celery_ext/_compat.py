"""What differs between the library versions flower-fileintel supports, in one place.

The supported range (noxfile.py, pyproject.toml) runs from Celery 5.3 / redis-py 4.6 to
Celery 5.7 / redis-py 8. Where an older version lacks something the code uses, the code
calls a helper here that feature-detects it (never a version-number comparison), so the
difference is visible in one module and disappears with it when the floor is raised.
"""

from __future__ import annotations

from typing import Any

__all__ = ["aclose"]


async def aclose(resource: Any) -> None:
    """Close a ``redis.asyncio`` client or pub/sub object.

    ``aclose()`` is new in redis-py 5.0.1, where ``close()`` became a deprecated alias;
    redis-py 4.6 only has ``close()`` (a coroutine there too).
    """
    closer = getattr(resource, "aclose", None) or resource.close
    await closer()
