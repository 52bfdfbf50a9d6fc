"""The kit's exception hierarchy.

Faults in the system under study are *data* (they end up in a Trace's outcome);
exceptions are raised only for misuse of the kit itself::

    KitError
    ├── ConfigError (also a ValueError)   bad input: names the field, the value, what is allowed
    ├── ServerError                       a FaultServer or NetworkProxy could not start or stop
    └── BundleError (also a ValueError)   a saved bundle or file that cannot be read
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["BundleError", "ConfigError", "KitError", "ServerError"]


class KitError(Exception):
    """Base class of every exception the kit raises on purpose."""


class ConfigError(KitError, ValueError):
    """Invalid input: the message names the field, the value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is not valid: {allowed}")

    @classmethod
    def unknown(cls, field: str, value: str, known: Iterable[str]) -> ConfigError:
        """An unknown name, with the known ones and the closest match suggested."""
        known = sorted(known)
        close = difflib.get_close_matches(str(value), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return cls(field, value, f"expected one of {', '.join(known)}{hint}")


class ServerError(KitError, RuntimeError):
    """A server or proxy could not start (e.g. the port is taken) or stop."""


class BundleError(KitError, ValueError):
    """A bundle, HAR or config file that cannot be loaded; the message names the file."""
