"""Bounds on every scenario parameter, and the checks that enforce them.

A server plans and serves whatever a scenario asks, so an unbounded value would freeze
or exhaust it (planning 10**7 events, pinging every microsecond, a 10 GB event). Each
bound is far above any real API's behaviour. Used by the scenario values
(:mod:`kit.faults`, :mod:`kit.scenarios`) and the recorded replay (:mod:`kit._recorded`).
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import ConfigError

MAX_SECONDS = 86_400.0  # delays, stalls, gaps, retry-after: at most a day
MAX_EVENTS = 100_000  # events per stream (a long LLM answer has a few thousand)
MAX_EVENT_SIZE = 16 * 1024 * 1024  # bytes of one event's text (the client's default event cap)
MAX_BODY_BYTES = 64 * 1024 * 1024  # events x event_size
MAX_HOSTILE_BYTES = 1 << 30  # a hostile body's size (huge_event streams it in pieces)
MIN_PING_EVERY = 0.001  # seconds between pings
MAX_LOGNORMAL_SIGMA = 10.0
MIN_PARETO_ALPHA = 0.1
MAX_ATTEMPTS = 100  # per-attempt scenarios


def check_number(
    field_name: str, value: Any, *, minimum: float = 0.0, maximum: float = MAX_SECONDS, allow_none: bool = False
) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(
            field_name, value, "expected a number of seconds (or None)" if allow_none else "expected a number"
        )
    if value < minimum:
        raise ConfigError(field_name, value, f"must be >= {minimum:g}")
    if math.isinf(value):
        raise ConfigError(field_name, value, "must be finite (use None for 'forever')")
    if value > maximum:
        raise ConfigError(field_name, value, f"must be in [{minimum:g}, {maximum:g}]")
    return value


def check_count(field_name: str, value: Any, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(field_name, value, "expected a whole number >= 0")
    if maximum is not None and value > maximum:
        raise ConfigError(field_name, value, f"expected a whole number in [0, {maximum:,}]")
    return value
