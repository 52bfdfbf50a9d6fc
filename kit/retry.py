"""Retry decisions, as the official SDKs make them (pure functions, no I/O).

:func:`decide` looks at one finished attempt (its outcome, status and response headers)
and a :class:`~kit.policy.Policy` and says whether to retry and how long to wait first.
The formula and the header handling follow ``_base_client.py`` of the anthropic and
openai Python SDKs and ``core.ts`` of the TypeScript SDK:

- ``x-should-retry: true|false`` overrides everything else (if ``honor_should_retry``);
- statuses in ``retry_statuses`` are retried (408, 409, 429 and 5xx by default);
- failures whose cause is in ``retry_on`` are retried when they happened before the
  response headers; after the headers only if ``retry_before_first_chunk`` (no body
  byte yet) or ``retry_mid_stream`` (after the first body byte) allows it;
- the wait is ``retry-after-ms`` or ``retry-after`` (seconds, or an HTTP date) when the
  server sends one in (0, ``retry_after_max``], otherwise
  ``min(backoff_initial * 2**n, backoff_max) * (1 - backoff_jitter * u)`` with ``u`` a
  uniform draw in [0, 1) and ``n`` the number of retries already made.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .policy import Policy
from .trace import Outcome

__all__ = ["Decision", "backoff", "decide", "parse_retry_after"]


@dataclass(frozen=True)
class Decision:
    """Whether to retry, the wait before the retry (s) and why."""

    retry: bool
    wait: float = 0.0
    reason: str = ""


def backoff(policy: Policy, retries_done: int, u: float) -> float:
    """The SDK backoff before retry number ``retries_done`` (0-based), jitter draw ``u`` in [0, 1)."""
    n = min(retries_done, 1000)  # the SDKs cap the exponent too, so pow never overflows
    base = min(policy.backoff_initial * 2.0**n, policy.backoff_max)
    return max(base * (1.0 - policy.backoff_jitter * u), 0.0)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``retry-after`` (seconds or HTTP date).

    ``headers`` keys must be lower-case (as a trace stores them). ``now`` is the wall
    clock (``time.time()``) for HTTP dates. None if absent or unreadable.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
            if math.isfinite(value):
                return value
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra is None:
        return None
    try:
        value = float(ra)
        return value if math.isfinite(value) else None
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(ra)
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed) - (time.time() if now is None else now))


def decide(
    policy: Policy,
    outcome: Outcome,
    *,
    retries_done: int,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    u: float = 0.0,
    now: float | None = None,
) -> Decision:
    """Should the attempt that ended with ``outcome`` be retried, and after how long?

    ``retries_done`` counts retries already made (0 after the first attempt); ``u`` is the
    jitter draw; ``status`` and ``headers`` are the attempt's response (None without one).
    """
    if retries_done >= policy.max_retries:
        return Decision(False, reason=f"no retries left ({policy.max_retries} allowed)")
    if outcome.ok:
        return Decision(False, reason="succeeded")
    if outcome.cause in ("cancelled", "timeout.total"):
        return Decision(False, reason=f"{outcome.cause} ends the call")
    headers = headers or {}
    retry_after = parse_retry_after(headers, now) if headers else None
    if outcome.cause == "http_status" and status is not None:
        should = headers.get("x-should-retry") if policy.honor_should_retry else None
        if should == "false":
            return Decision(False, reason="x-should-retry: false")
        if (
            should != "true"
            and policy.retry_after_beyond == "give_up"
            and retry_after is not None
            and retry_after > policy.retry_after_max
        ):
            return Decision(False, reason=f"retry-after {retry_after:g} s exceeds {policy.retry_after_max:g} s")
        if should == "true":
            reason = "x-should-retry: true"
        elif policy.retries_status(status):
            reason = f"status {status}"
        else:
            return Decision(False, reason=f"status {status} is not retried")
    else:
        if outcome.cause not in policy.retry_on:
            return Decision(False, reason=f"{outcome.cause} is not retried")
        if outcome.phase == "first_chunk" and not policy.retry_before_first_chunk:
            return Decision(False, reason="failed after the headers; the stream was already returned")
        if outcome.phase in ("stream", "done") and not policy.retry_mid_stream:
            return Decision(False, reason="failed mid-stream; not retried")
        reason = outcome.cause
    return Decision(True, _wait(policy, retries_done, retry_after, u), reason)


def _wait(policy: Policy, retries_done: int, retry_after: float | None, u: float) -> float:
    if retry_after is not None and retry_after > 0:
        if retry_after <= policy.retry_after_max:
            return retry_after
        if policy.retry_after_beyond == "cap":
            return policy.retry_after_max
    return backoff(policy, retries_done, u)
