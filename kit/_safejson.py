"""``json.loads`` for input kit does not control: too-deep nesting is a ValueError, not a RecursionError.

Python's JSON decoder recurses once per nesting level; a body, SSE event, bundle or
journal line nested a few thousand levels deep raises ``RecursionError`` from inside it.
Hostile input is data: callers already turn ``ValueError`` into an outcome or a
:class:`~kit.BundleError`, so this turns the one into the other.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TooDeep", "loads"]


class TooDeep(ValueError):
    """JSON nested deeper than the decoder can follow."""


def loads(text: str | bytes | bytearray) -> Any:
    """``json.loads(text)``; raises :class:`TooDeep` (a ValueError) for too-deep nesting."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep("JSON nested too deeply to parse") from None
