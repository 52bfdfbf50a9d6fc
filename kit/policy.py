"""Client policies: which limits a client puts on a streaming call, and when it retries.

Each timeout is optional (None: no limit) and is classified as its own cause:

- ``connect``: TCP connect (``timeout.connect``);
- ``headers``: from the connection being ready to the response headers, i.e. sending
  the request and waiting for the status line (``timeout.headers``);
- ``first_chunk``: from the headers to the first body byte (``timeout.first_chunk``);
  when None, ``idle`` applies to this wait too, as httpx's per-read timeout does;
- ``idle``: the longest silence between body chunks (``timeout.idle``);
- ``total``: a deadline on the whole call, retries and waits included, like an
  ``AbortController`` timer (``timeout.total``).

Retries (``max_retries`` > 0) follow the official SDKs (see :mod:`kit.retry`): an
attempt is retried when its status is in ``retry_statuses`` (``"5xx"`` means 500-599)
or its cause is in ``retry_on``, the server's ``x-should-retry`` header overriding both;
the wait before retry ``n`` (0-based) is ``min(backoff_initial * 2**n, backoff_max) *
(1 - backoff_jitter * random())``, unless the server asks for a wait with
``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date) of at most
``retry_after_max`` seconds. A failure after the response headers is retried only if
``retry_before_first_chunk`` (no body byte yet) or ``retry_mid_stream`` (after the
first body byte) says so: the SDKs never do, a watchdog does. ``seed`` makes the jitter
reproducible.

Recording is bounded: ``max_recorded`` (default 200,000; None: no cap) is how many
chunks and events one attempt records (each costs ~100 bytes). Past it,
``on_max_recorded="keep_reading"`` (default) reads on, counting chunks, events and bytes
without recording each, and ``"stop"`` closes the stream (``stream/cancelled``); either
way the attempt is marked ``truncated`` and its message says so.

:meth:`Policy.preset` gives policies that mimic real clients (:data:`PRESETS`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError

__all__ = ["PRESETS", "RETRY_AFTER_BEYOND", "RETRYABLE_CAUSES", "Policy"]

TIMEOUTS = ("connect", "headers", "first_chunk", "idle", "total")  # the client's limits, in phase order
ON_MAX_RECORDED = ("keep_reading", "stop")

#: causes a policy may list in ``retry_on`` (``ok``, ``http_status``, ``cancelled`` and
#: ``timeout.total`` are never retried: statuses have their own list, the others end the call)
RETRYABLE_CAUSES = (
    "timeout.connect",
    "timeout.headers",
    "timeout.first_chunk",
    "timeout.idle",
    "refused",
    "reset",
    "closed",
    "ended",
    "error_event",
    "malformed",
)
#: what to do when the server asks for a longer wait than ``retry_after_max``
RETRY_AFTER_BEYOND = ("backoff", "cap", "give_up")

# the SDKs' "connection errors": refused, reset or closed before headers, and the
# connect / response-headers timeouts (httpx raises them before the stream is returned)
_SDK_RETRY_ON = ("timeout.connect", "timeout.headers", "refused", "reset", "closed")
_SDK_STATUSES = (408, 409, 429, "5xx")


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


def _wait(name: str, value: Any) -> float:
    """A finite wait >= 0 (0 allowed: retry at once)."""
    if isinstance(value, str):
        from ._units import parse_duration

        value = parse_duration(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(name, value, "expected seconds as a number >= 0")
    if value < 0 or math.isinf(value):
        raise ConfigError(name, value, "expected a finite number of seconds >= 0 (a retry must end)")
    return float(value)


def _statuses(value: Any) -> tuple[int | str, ...]:
    if isinstance(value, (str, int)):
        value = (value,)
    out: list[int | str] = []
    for s in value:
        if isinstance(s, str) and len(s) == 3 and s[0] in "12345" and s[1:].lower() == "xx":
            out.append(s.lower())
        elif isinstance(s, str) and s.isdigit():
            out.append(int(s))
        elif isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599:
            out.append(s)
        else:
            raise ConfigError("retry_statuses", s, "expected HTTP status codes (100-599) or classes like '5xx'")
    return tuple(out)


@dataclass(frozen=True)
class Policy:
    """Timeouts (seconds) and retries of one client; see the module docstring for each field."""

    connect: float | None = None
    headers: float | None = None
    first_chunk: float | None = None
    idle: float | None = None
    total: float | None = None
    name: str | None = None
    max_retries: int = 0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    backoff_jitter: float = 0.25
    retry_statuses: tuple[int | str, ...] = _SDK_STATUSES
    retry_on: tuple[str, ...] = _SDK_RETRY_ON
    retry_after_max: float = 60.0
    retry_after_beyond: str = "backoff"
    honor_should_retry: bool = True
    retry_before_first_chunk: bool = False
    retry_mid_stream: bool = False
    seed: int | None = None
    max_recorded: int | None = 200_000
    on_max_recorded: str = "keep_reading"

    def __post_init__(self) -> None:
        for name in TIMEOUTS:
            object.__setattr__(self, name, _seconds(name, getattr(self, name)))
        r = self.max_retries
        if isinstance(r, float) and r.is_integer():
            r = int(r)
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ConfigError(
                "max_retries", self.max_retries, "expected a whole number >= 0 (retries must end; None/inf never do)"
            )
        object.__setattr__(self, "max_retries", r)
        for name in ("backoff_initial", "backoff_max", "retry_after_max"):
            object.__setattr__(self, name, _wait(name, getattr(self, name)))
        j = self.backoff_jitter
        if isinstance(j, bool) or not isinstance(j, (int, float)) or not 0 <= j <= 1:
            raise ConfigError("backoff_jitter", j, "expected a fraction in [0, 1] (the share of the wait taken off)")
        object.__setattr__(self, "backoff_jitter", float(j))
        object.__setattr__(self, "retry_statuses", _statuses(self.retry_statuses))
        causes = (self.retry_on,) if isinstance(self.retry_on, str) else tuple(self.retry_on)
        for c in causes:
            if c not in RETRYABLE_CAUSES:
                raise ConfigError.unknown("retry_on", c, RETRYABLE_CAUSES)
        object.__setattr__(self, "retry_on", causes)
        if self.retry_after_beyond not in RETRY_AFTER_BEYOND:
            raise ConfigError.unknown("retry_after_beyond", self.retry_after_beyond, RETRY_AFTER_BEYOND)
        for name in ("honor_should_retry", "retry_before_first_chunk", "retry_mid_stream"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "expected True or False")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError("seed", self.seed, "expected an integer or None")
        m = self.max_recorded
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError("max_recorded", m, "expected a number of chunks and events >= 1 (or None: no cap)")
        if self.on_max_recorded not in ON_MAX_RECORDED:
            raise ConfigError.unknown("on_max_recorded", self.on_max_recorded, ON_MAX_RECORDED)

    # -- construction -------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Policy:
        """A policy that mimics a real client (see :data:`PRESETS`), fields optionally overridden."""
        if name not in PRESETS:
            raise ConfigError.unknown("policy preset", name, PRESETS)
        p = PRESETS[name]()
        return dataclasses.replace(p, **overrides) if overrides else p

    @classmethod
    def presets(cls) -> list[str]:
        """Names of the presets."""
        return list(PRESETS)

    def replace(self, **changes: Any) -> Policy:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["retry_statuses"] = list(self.retry_statuses)
        d["retry_on"] = list(self.retry_on)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        names = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in names:
                raise ConfigError.unknown("policy field", key, names)
        return cls(**d)

    # -- questions ------------------------------------------------------------------

    def retries_status(self, status: int) -> bool:
        """Whether ``status`` is in :attr:`retry_statuses` (classes like ``"5xx"`` included)."""
        return any(s == status or (isinstance(s, str) and str(status)[0] == s[0]) for s in self.retry_statuses)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [f"{n}={getattr(self, n):g}s" for n in TIMEOUTS if getattr(self, n) is not None]
        if self.max_retries:
            parts.append(f"retries={self.max_retries}")
        return ",".join(parts) or "no limits"


# ---------------------------------------------------------------------------- presets


def anthropic_python() -> Policy:
    """The ``anthropic`` Python SDK's defaults (measured against anthropic 2.14 and 0.4x).

    Sources: ``anthropic/_constants.py`` (``DEFAULT_TIMEOUT = Timeout(600, connect=5)``,
    ``DEFAULT_MAX_RETRIES = 2``, ``INITIAL_RETRY_DELAY = 0.5``, ``MAX_RETRY_DELAY = 8``) and
    ``anthropic/_base_client.py`` (``_should_retry``: ``x-should-retry``, 408, 409, 429,
    >= 500; ``_should_retry_exception``: ``APIConnectionError``/``APITimeoutError``;
    ``_calculate_retry_timeout``: ``min(0.5 * 2**n, 8) * (1 - 0.25 * random())``).
    httpx's read timeout is per socket read, so the 600 s limit applies to the wait for
    headers, for the first chunk and between chunks alike. A stream is returned once its
    headers arrive, so later failures are never retried. ``retry-after``: anthropic 0.4x
    honoured it up to 60 s (else backoff); 2.x honours any positive value (capped at
    ~49 days, the platform sleep limit), which ``retry_after_max`` models here.
    """
    return Policy(
        name="anthropic-python",
        connect=5,
        headers=600,
        idle=600,
        max_retries=2,
        retry_after_max=4_294_967.0,
        retry_after_beyond="cap",
    )


def openai_python() -> Policy:
    """The ``openai`` Python SDK's defaults (measured against openai 3.57).

    Sources: ``openai/_constants.py`` (``DEFAULT_TIMEOUT = Timeout(600, connect=5)``,
    ``DEFAULT_MAX_RETRIES = 2``, ``MAX_RETRY_AFTER_DELAY = 120``) and
    ``openai/_base_client.py`` (``_should_retry``: a ``retry-after`` over 120 s means no
    retry at all, then ``x-should-retry``, 408, 409, 429, >= 500;
    ``_calculate_retry_timeout``: server waits of (0, 120] s honoured, else
    ``min(0.5 * 2**n, 8) * (1 - 0.25 * random())``). Read timeout per socket read, as in
    the anthropic SDK. Older 1.x releases capped ``retry-after`` at 60 s with backoff beyond.
    """
    return Policy(
        name="openai-python",
        connect=5,
        headers=600,
        idle=600,
        max_retries=2,
        retry_after_max=120.0,
        retry_after_beyond="give_up",
    )


def anthropic_typescript() -> Policy:
    """``@anthropic-ai/sdk`` (TypeScript/Node) defaults: 600 s until headers, no body timer.

    Sources: ``src/core.ts`` / ``src/client.ts`` of anthropic-sdk-typescript
    (``timeout = 600000`` ms enforced by an ``AbortController`` in ``fetchWithTimeout``,
    cleared as soon as ``fetch`` resolves, i.e. at the response headers; ``maxRetries = 2``;
    ``shouldRetry``: ``x-should-retry``, 408, 409, 429, >= 500 and connection errors;
    ``retryRequest``: ``retry-after-ms`` / ``retry-after`` honoured below 60 s, else
    ``min(0.5 * 2**n, 8) * (1 - random() * 0.25)``). The 600 s covers connect and headers
    together; here each gets 600 s. The SDK itself puts no limit on the body; under Node's
    fetch, undici's ``bodyTimeout`` (300 s, see the ``node-fetch`` preset) still applies.
    """
    return Policy(name="anthropic-typescript", connect=600, headers=600, max_retries=2)


def node_fetch() -> Policy:
    """Node's built-in ``fetch`` (undici) with its defaults, and no retries.

    Sources: undici docs, ``Dispatcher.request`` / ``Client`` options (``connectTimeout``
    10 s, ``headersTimeout`` 300 s, ``bodyTimeout`` 300 s: the longest silence between body
    bytes, failing with ``TypeError: terminated`` / ``BodyTimeoutError``). fetch never retries.
    """
    return Policy(name="node-fetch", connect=10, headers=300, idle=300, max_retries=0)


def watchdog() -> Policy:
    """The fix the postmortem recommends: short first-chunk and idle watchdogs, and retries
    of a stream that failed before its first body byte (an empty 200, a stall after headers).

    Sources: the incident write-up's remedies (``context/incident-article-zh.txt``: time
    limits on the first token and between tokens, retries) and the later Claude Code CLI
    behaviour (first-byte and stream-idle watchdogs, retry). Mid-stream failures are not
    retried: partial output must not be duplicated silently.
    """
    return Policy(
        name="watchdog",
        connect=5,
        headers=30,
        first_chunk=10,
        idle=30,
        max_retries=3,
        retry_on=(*_SDK_RETRY_ON, "timeout.first_chunk", "ended"),
        retry_before_first_chunk=True,
    )


#: policy presets by name (functions, so each call gives a fresh value)
PRESETS = {
    "anthropic-python": anthropic_python,
    "openai-python": openai_python,
    "anthropic-typescript": anthropic_typescript,
    "node-fetch": node_fetch,
    "watchdog": watchdog,
}
