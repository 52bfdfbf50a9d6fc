"""The one clock every vantage point uses.

``time.perf_counter_ns`` is monotonic and, on Linux, macOS and Windows, system-wide:
the server thread, the proxy and the client (even in another process on the same
machine) read the same clock, so their timestamps can be joined directly.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["CLOCK_SOURCE", "now_ns", "ns_to_s"]

CLOCK_SOURCE = "time.perf_counter_ns"

now_ns = time.perf_counter_ns


def ns_to_s(ns: Any) -> Any:
    """Nanoseconds to seconds: an int (a float back), or a NumPy array / pandas Series of them."""
    return ns / 1e9
