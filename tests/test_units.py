"""Unit parsers: what is accepted, what is refused, and that refusals explain themselves."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit._errors import ConfigError
from kit._units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_probability,
    parse_rate,
    parse_size,
)

ACCEPT = [
    (parse_duration, 0, 0.0),
    (parse_duration, 0.2, 0.2),
    (parse_duration, 3, 3.0),
    (parse_duration, "200ms", 0.2),
    (parse_duration, "1.5s", 1.5),
    (parse_duration, "250us", 250e-6),
    (parse_duration, "250µs", 250e-6),
    (parse_duration, "2m", 120.0),
    (parse_duration, "2min", 120.0),
    (parse_duration, "1h", 3600.0),
    (parse_duration, "500ns", 500e-9),
    (parse_duration, "20 ms", 0.02),
    (parse_duration, " .5s ", 0.5),
    (parse_duration, "1e3ms", 1.0),
    (parse_duration, "0.2", 0.2),
    (parse_rate, 20_000, 20_000.0),
    (parse_rate, "20KB/s", 20_000.0),
    (parse_rate, "20kB/s", 20_000.0),
    (parse_rate, "20 KB/s", 20_000.0),
    (parse_rate, "1MB/s", 1e6),
    (parse_rate, "1GB/s", 1e9),
    (parse_rate, "20KiB/s", 20_480.0),
    (parse_rate, "1MiB/s", 1_048_576.0),
    (parse_rate, "100B/s", 100.0),
    (parse_rate, "160kbps", 20_000.0),
    (parse_rate, "160Kbps", 20_000.0),
    (parse_rate, "160kbit/s", 20_000.0),
    (parse_rate, "8Mbps", 1e6),
    (parse_rate, "8Mbit/s", 1e6),
    (parse_rate, "800bps", 100.0),
    (parse_size, 4096, 4096),
    (parse_size, 4096.0, 4096),
    (parse_size, "4KB", 4000),
    (parse_size, "4kB", 4000),
    (parse_size, "4KiB", 4096),
    (parse_size, "1MB", 1_000_000),
    (parse_size, "1MiB", 1_048_576),
    (parse_size, "1.5KiB", 1536),
    (parse_size, "1.1KB", 1100),
    (parse_size, "512B", 512),
    (parse_size, "512", 512),
    (parse_size, "4 KiB", 4096),
    (parse_probability, 0, 0.0),
    (parse_probability, 1, 1.0),
    (parse_probability, 0.25, 0.25),
    (parse_probability, "0.5", 0.5),
    (parse_probability, "50%", 0.5),
    (parse_probability, "100%", 1.0),
]

REJECT = [
    (parse_duration, "20 furlongs"),
    (parse_duration, "200 MS"),
    (parse_duration, "ms"),
    (parse_duration, ""),
    (parse_duration, "-1s"),
    (parse_duration, -0.1),
    (parse_duration, "1.2.3s"),
    (parse_duration, "nan"),
    (parse_duration, math.inf),
    (parse_duration, math.nan),
    (parse_duration, True),
    (parse_duration, None),
    (parse_duration, [1]),
    (parse_rate, "20kb/s"),  # kilobits or kilobytes? refused rather than guessed
    (parse_rate, "20KB"),  # a size, not a rate
    (parse_rate, "20 KB / s"),
    (parse_rate, "fast"),
    (parse_rate, -5),
    (parse_rate, "20KBps"),
    (parse_size, "4kb"),
    (parse_size, "4K"),
    (parse_size, "1.5B"),
    (parse_size, 1.5),
    (parse_size, "-4KB"),
    (parse_size, "4 K B"),
    (parse_size, "4KB/s"),
    (parse_probability, 1.5),
    (parse_probability, "150%"),
    (parse_probability, -0.1),
    (parse_probability, "half"),
]


@pytest.mark.parametrize(("parse", "value", "expected"), ACCEPT)
def test_accepts(parse, value, expected) -> None:
    assert parse("field", value) == pytest.approx(expected)


@pytest.mark.parametrize(("parse", "value"), REJECT)
def test_rejects_with_field_value_and_forms(parse, value) -> None:
    with pytest.raises(ConfigError) as info:
        parse("latency.jitter", value)
    message = str(info.value)
    assert info.value.field == "latency.jitter"
    assert "latency.jitter" in message and repr(value) in message
    assert "such as" in message  # the accepted forms are spelled out
    assert isinstance(info.value, ValueError)


def test_sizes_are_ints() -> None:
    assert type(parse_size("x", "4KiB")) is int
    assert type(parse_size("x", 4096.0)) is int


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(["ns", "us", "ms", "s", "m", "h"]))
def test_duration_roundtrip(number: float, unit: str) -> None:
    factor = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
    text = f"{number!r}{unit}"
    assert parse_duration("d", text) == pytest.approx(number * factor, rel=1e-12, abs=1e-15)
    assert parse_duration("d", format_duration(parse_duration("d", text))) == pytest.approx(
        number * factor, rel=1e-5, abs=1e-12
    )


@given(
    st.integers(min_value=0, max_value=10**9),
    st.sampled_from(["B", "kB", "KB", "MB", "KiB", "MiB"]),
)
def test_size_roundtrip(number: int, unit: str) -> None:
    factor = {"B": 1, "kB": 1000, "KB": 1000, "MB": 10**6, "KiB": 1024, "MiB": 2**20}[unit]
    size = parse_size("s", f"{number}{unit}")
    assert size == number * factor
    assert parse_size("s", format_size(size)) == size


@given(st.floats(min_value=1, max_value=1e10, allow_nan=False), st.sampled_from(["B/s", "kB/s", "KiB/s", "kbps"]))
def test_rate_roundtrip(number: float, unit: str) -> None:
    factor = {"B/s": 1, "kB/s": 1000, "KiB/s": 1024, "kbps": 125}[unit]
    rate = parse_rate("r", f"{number!r}{unit}")
    assert rate == pytest.approx(number * factor)
    assert parse_rate("r", format_rate(rate)) == pytest.approx(rate, rel=1e-5)


@given(st.text(max_size=12))
def test_arbitrary_text_parses_or_raises_config_error(text: str) -> None:
    for parse in (parse_duration, parse_rate, parse_size, parse_probability):
        try:
            value = parse("f", text)
        except ConfigError:
            continue
        assert value >= 0 and math.isfinite(value)
