"""Client policies: which limits a client puts on a streaming call.

Each timeout is optional (None: no limit) and is classified as its own cause:

- ``connect``: TCP connect (``timeout.connect``);
- ``headers``: from the connection being ready to the response headers, i.e. sending
  the request and waiting for the status line (``timeout.headers``);
- ``first_chunk``: from the headers to the first body byte (``timeout.first_chunk``);
  when None, ``idle`` applies to this wait too, as httpx's per-read timeout does;
- ``idle``: the longest silence between body chunks (``timeout.idle``);
- ``total``: a deadline on the whole call, like an ``AbortController`` timer
  (``timeout.total``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError

__all__ = ["Policy"]

_TIMEOUTS = ("connect", "headers", "first_chunk", "idle", "total")


def _seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        from ._units import parse_duration  # string units ("200ms") as everywhere in the kit

        value = parse_duration(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(name, value, "expected seconds as a number > 0, a duration string like '200ms', or None")
    if value <= 0 or math.isinf(value):
        raise ConfigError(name, value, "expected a finite number of seconds > 0, or None for no limit")
    return float(value)


@dataclass(frozen=True)
class Policy:
    """Timeouts of one client, in seconds; see the module docstring for each."""

    connect: float | None = None
    headers: float | None = None
    first_chunk: float | None = None
    idle: float | None = None
    total: float | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for name in _TIMEOUTS:
            object.__setattr__(self, name, _seconds(name, getattr(self, name)))

    def replace(self, **changes: Any) -> Policy:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        names = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in names:
                raise ConfigError.unknown("policy field", key, names)
        return cls(**d)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [f"{n}={getattr(self, n):g}s" for n in _TIMEOUTS if getattr(self, n) is not None]
        return ",".join(parts) or "no limits"
