"""Log windows: a long-running server or proxy keeps the last ``keep`` requests / connections."""

from __future__ import annotations

from typing import Any

from ._errors import ConfigError

__all__ = ["check_keep"]


def check_keep(keep: Any, isolate: bool, what: str) -> int | None:
    """``keep`` validated: None (keep everything) or a whole number >= 1 of ``what``."""
    if keep is None:
        return None
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError("keep", keep, f"expected a number of {what} >= 1 (or None: keep the whole log)")
    if isolate:
        raise ConfigError("keep", keep, "a log window needs isolate=False")
    return keep
