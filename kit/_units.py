"""Parsers for quantities with units: durations, rates, sizes, probabilities.

The Python API works in seconds, bytes per second and bytes; strings with units are
accepted wherever a number is, so notebooks and the command line can say ``"200ms"``
or ``"20KB/s"``. Decimal prefixes are powers of 1000 (``K``/``k``, ``M``, ``G``),
binary ones powers of 1024 (``Ki``, ``Mi``, ``Gi``). Rates in bits are spelled
``bps`` or ``bit/s`` (``160kbps``, ``160kbit/s``); ``kb/s`` is refused because it reads
as kilobytes to some and kilobits to others. Anything else raises a
:class:`~kit.ConfigError` that names the field, the value and the accepted forms.
"""

from __future__ import annotations

import math
import numbers
import re

from ._errors import ConfigError

__all__ = [
    "DURATION_FORMS",
    "PROBABILITY_FORMS",
    "RATE_FORMS",
    "SIZE_FORMS",
    "format_duration",
    "format_rate",
    "format_size",
    "parse_duration",
    "parse_probability",
    "parse_rate",
    "parse_size",
]

_NUMBER = r"(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*(?P<unit>[^\s\d.+-][^\s]*)?\s*$")

_DURATION_UNITS = {
    "": 1.0,
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}

_RATE_UNITS: dict[str, float] = {f"{unit}/s": float(factor) for unit, factor in _SIZE_UNITS.items() if unit}
_RATE_UNITS[""] = 1.0
for _prefix, _factor in {"": 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3}.items():
    _RATE_UNITS[f"{_prefix}bps"] = _factor / 8
    _RATE_UNITS[f"{_prefix}bit/s"] = _factor / 8

DURATION_FORMS = (
    "a duration: seconds as a number >= 0, or a string such as '200ms', '1.5s', '250us', '2m' "
    "(units: ns, us, ms, s, m or min, h)"
)
RATE_FORMS = (
    "a rate: bytes per second as a number, or a string such as '20KB/s', '20kB/s', '1MB/s', "
    "'20KiB/s', '160kbps', '160kbit/s' (bytes: B/s, kB/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s; "
    "bits: bps, kbps, Mbps, Gbps, bit/s, kbit/s, Mbit/s, Gbit/s)"
)
SIZE_FORMS = (
    "a size: a whole number of bytes, or a string such as '4KB', '4kB', '4KiB', '1MB', '512B' "
    "(units: B, kB, KB, MB, GB, KiB, MiB, GiB)"
)
PROBABILITY_FORMS = "a probability: a number from 0 to 1, or a percentage such as '50%'"


def _number(field: str, value: object, forms: str, units: dict[str, float] | dict[str, int]) -> float:
    """``value`` as a finite, non-negative number in the base unit."""
    if isinstance(value, bool):  # bool is an int; True seconds is a bug, not a duration
        raise ConfigError(field, value, forms)
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        unit = (match.group("unit") or "") if match else None
        if match is None or unit not in units:
            raise ConfigError(field, value, forms)
        number = float(match.group("num")) * units[unit]
    else:
        raise ConfigError(field, value, forms)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(field, value, forms)
    return number


def parse_duration(field: str, value: object) -> float:
    """A duration in seconds: ``0.2``, ``"200ms"``, ``"1.5s"``, ``"250us"``, ``"2m"``."""
    return _number(field, value, DURATION_FORMS, _DURATION_UNITS)


def parse_rate(field: str, value: object) -> float:
    """A rate in bytes per second: ``20_000``, ``"20KB/s"``, ``"20KiB/s"``, ``"160kbps"``."""
    return _number(field, value, RATE_FORMS, _RATE_UNITS)


def parse_size(field: str, value: object) -> int:
    """A size in bytes (a whole number): ``4096``, ``"4KB"``, ``"4KiB"``, ``"1MB"``."""
    number = _number(field, value, SIZE_FORMS, _SIZE_UNITS)
    # float error: "1.1KB" is 1100.0000000000002 bytes, which is still a whole number
    whole = round(number)
    if abs(number - whole) > 1e-6 * max(1.0, number):
        raise ConfigError(field, value, SIZE_FORMS)
    return int(whole)


def parse_probability(field: str, value: object) -> float:
    """A probability in [0, 1]: ``0.5`` or ``"50%"``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = _number(field, value.strip()[:-1], PROBABILITY_FORMS, {"": 1.0})
        number = percent / 100
    else:
        number = _number(field, value, PROBABILITY_FORMS, {"": 1.0})
    if number > 1:
        raise ConfigError(field, value, PROBABILITY_FORMS)
    return number


def format_duration(seconds: float) -> str:
    """A short human form: ``0.2`` -> ``"200ms"``; parses back to the same value."""
    if seconds == 0:
        return "0s"
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:g}{unit}"
    return f"{seconds / 1e-9:g}ns"


def format_rate(rate: float) -> str:
    """A short human form: ``20_000`` -> ``"20kB/s"``."""
    for unit, factor in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if rate >= factor:
            return f"{rate / factor:g}{unit}"
    return f"{rate:g}B/s"


def format_size(size: int) -> str:
    """A short human form: ``4096`` -> ``"4KiB"``, ``4000`` -> ``"4kB"``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
