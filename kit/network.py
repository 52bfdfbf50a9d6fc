"""Network conditions as data: toxics, and a :class:`Network` that bundles them.

A toxic describes one thing the network does to bytes on their way through the
:class:`~kit.NetworkProxy` (delay them, throttle them, cut the connection). Toxics are
frozen dataclasses with a common shape, modelled on Toxiproxy's:

- ``name``: unique within a proxy; defaults to the kind (``"latency"``), so stacking two
  of a kind needs explicit names,
- ``stream``: ``"downstream"`` (server -> client, the default: the direction a streamed
  response travels) or ``"upstream"`` (client -> server),
- ``toxicity``: the probability that the toxic applies to a given connection. Each
  connection rolls once per toxic name from ``random.Random(f"{key}:{name}")``, where
  the key is ``{seed}:{trial}:{attempt}`` for a kit client's request (its
  ``x-kit-trial`` and ``x-kit-attempt`` headers) and ``{seed}:{connection}`` for any
  other client; so which connections were hit is the same on every run with the same
  seed, and a replayed trial is hit as it was (see :mod:`kit.proxy._connection`).

Durations are seconds, rates bytes per second, sizes bytes; strings with units
(``"200ms"``, ``"20KB/s"``, ``"4KiB"``) are accepted everywhere (see :mod:`kit._units`).

A :class:`Network` is a named, serializable set of toxics: experiments store it with
their results and replay it later (``Network.from_dict(json.loads(...))``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ._errors import ConfigError
from ._units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_probability,
    parse_rate,
    parse_size,
)

__all__ = [
    "Bandwidth",
    "Down",
    "Latency",
    "LimitData",
    "Loss",
    "Network",
    "ResetPeer",
    "SHORTHAND",
    "Slicer",
    "SlowClose",
    "Stall",
    "Timeout",
    "Toxic",
    "toxic_from_dict",
    "toxics_from_kwargs",
]

Stream = Literal["downstream", "upstream"]
STREAMS = ("downstream", "upstream")
DISTRIBUTIONS = ("uniform", "normal", "pareto")

# Pareto with shape 3 has a finite variance; shifted and scaled below to mean 0 and
# standard deviation 1, like netem's distribution tables, so ``jitter`` is its spread.
_PARETO_SHAPE = 3.0
_PARETO_MEAN = _PARETO_SHAPE / (_PARETO_SHAPE - 1)
_PARETO_SD = math.sqrt(_PARETO_SHAPE / ((_PARETO_SHAPE - 1) ** 2 * (_PARETO_SHAPE - 2)))


@dataclass(frozen=True, kw_only=True)
class Toxic:
    """Common fields of every toxic; use a concrete kind such as :class:`Latency`."""

    kind: ClassVar[str] = ""

    name: str = ""
    stream: Stream = "downstream"
    toxicity: float = 1.0

    def __post_init__(self) -> None:
        if type(self) is Toxic:
            raise TypeError("Toxic is abstract: use Latency, Bandwidth, Slicer, ... ")
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        if not isinstance(self.name, str):
            raise ConfigError(f"{self.kind}.name", self.name, "a non-empty string")
        if self.stream not in STREAMS:
            raise ConfigError.unknown(f"{self.kind}.stream", self.stream, STREAMS)
        object.__setattr__(self, "toxicity", parse_probability(f"{self.kind}.toxicity", self.toxicity))

    def _set(self, attr: str, value: Any) -> None:
        object.__setattr__(self, attr, value)

    def params(self) -> dict[str, Any]:
        """The kind-specific parameters (everything but name, stream and toxicity)."""
        common = {"name", "stream", "toxicity"}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in common}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a ``"kind"`` key; :func:`toxic_from_dict` reverses it."""
        return {"kind": self.kind, "name": self.name, "stream": self.stream, "toxicity": self.toxicity, **self.params()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Toxic:
        """Build a toxic from :meth:`to_dict` output (string units accepted)."""
        if cls is Toxic:
            return toxic_from_dict(data)
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ConfigError("kind", kind, f"expected {cls.kind!r} for {cls.__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError.unknown(f"{cls.kind} field", key, known)
        return cls(**data)

    def describe(self) -> str:
        """A one-line human summary, e.g. ``latency 200ms +-50ms (downstream)``."""
        text = f"{self.name} {self._describe_params()}".rstrip()
        if self.stream != "downstream":
            text += f" ({self.stream})"
        if self.toxicity < 1:
            text += f" toxicity={self.toxicity:g}"
        return text

    def _describe_params(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params().items())


@dataclass(frozen=True)
class Latency(Toxic):
    """Delay every chunk by ``latency`` seconds, +- ``jitter``.

    Pipelined, like a real link: a chunk received at ``t`` is written at ``t + delay``,
    and later chunks do not wait for earlier ones' delays, except that chunks are
    never reordered (a chunk whose own delay is shorter waits for its predecessor).

    ``distribution``: ``uniform`` (``latency +- jitter``, Toxiproxy's), ``normal``
    (standard deviation ``jitter``) or ``pareto`` (heavy right tail, shape 3, mean
    ``latency`` and standard deviation ``jitter``, like netem). Delays below 0 are 0.
    A FIN or a reset from the peer travels with the same delay, behind the data.
    """

    kind: ClassVar[str] = "latency"

    latency: float
    jitter: float = 0.0
    distribution: Literal["uniform", "normal", "pareto"] = "uniform"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("latency", parse_duration("latency.latency", self.latency))
        self._set("jitter", parse_duration("latency.jitter", self.jitter))
        if self.distribution not in DISTRIBUTIONS:
            raise ConfigError.unknown("latency.distribution", self.distribution, DISTRIBUTIONS)

    def sample(self, rng: random.Random) -> float:
        """One chunk's delay in seconds."""
        if not self.jitter:
            return self.latency
        if self.distribution == "uniform":
            delay = self.latency + rng.uniform(-self.jitter, self.jitter)
        elif self.distribution == "normal":
            delay = rng.gauss(self.latency, self.jitter)
        else:
            z = (rng.paretovariate(_PARETO_SHAPE) - _PARETO_MEAN) / _PARETO_SD
            delay = self.latency + self.jitter * z
        return max(0.0, delay)

    def _describe_params(self) -> str:
        text = format_duration(self.latency)
        if self.jitter:
            text += f" +-{format_duration(self.jitter)}"
            if self.distribution != "uniform":
                text += f" {self.distribution}"
        return text


@dataclass(frozen=True)
class Bandwidth(Toxic):
    """Limit the rate to ``rate`` bytes per second (``"20KB/s"`` works too).

    Bytes leave as they would from a link of that speed: a chunk is cut into pieces
    of at most 10 ms of transmission each, and each piece is written when the link
    would have finished sending it.
    """

    kind: ClassVar[str] = "bandwidth"

    rate: float

    def __post_init__(self) -> None:
        super().__post_init__()
        rate = parse_rate("bandwidth.rate", self.rate)
        if rate <= 0:
            raise ConfigError("bandwidth.rate", self.rate, "a rate above 0 (use Stall to stop the flow)")
        self._set("rate", rate)

    def _describe_params(self) -> str:
        return format_rate(self.rate)


@dataclass(frozen=True)
class Slicer(Toxic):
    """Cut every chunk into pieces of ``average_size`` +- ``size_variation`` bytes.

    ``delay`` seconds pass between pieces of one chunk (Toxiproxy's slicer).
    """

    kind: ClassVar[str] = "slicer"

    average_size: int
    size_variation: int = 0
    delay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        average = parse_size("slicer.average_size", self.average_size)
        variation = parse_size("slicer.size_variation", self.size_variation)
        if average < 1:
            raise ConfigError("slicer.average_size", self.average_size, "at least 1 byte")
        if variation >= average:
            raise ConfigError("slicer.size_variation", self.size_variation, f"less than average_size ({average})")
        self._set("average_size", average)
        self._set("size_variation", variation)
        self._set("delay", parse_duration("slicer.delay", self.delay))

    def piece_size(self, rng: random.Random) -> int:
        """The size of the next piece in bytes."""
        if not self.size_variation:
            return self.average_size
        return rng.randint(self.average_size - self.size_variation, self.average_size + self.size_variation)

    def _describe_params(self) -> str:
        text = format_size(self.average_size)
        if self.size_variation:
            text += f" +-{format_size(self.size_variation)}"
        if self.delay:
            text += f" every {format_duration(self.delay)}"
        return text


@dataclass(frozen=True)
class Timeout(Toxic):
    """Drop all data in this direction; close the connection after ``timeout`` seconds.

    ``timeout=None`` (or 0, Toxiproxy's spelling) never closes: a blackhole. The clock
    starts when the toxic starts applying to the connection (when it opens, or when the
    toxic is added). A FIN or reset from the peer is held, not dropped, while the toxic
    applies. Removing the toxic lets later data through.
    """

    kind: ClassVar[str] = "timeout"

    timeout: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.timeout is not None:
            timeout = parse_duration("timeout.timeout", self.timeout)
            self._set("timeout", timeout or None)

    def _describe_params(self) -> str:
        return "blackhole" if self.timeout is None else f"drop, close after {format_duration(self.timeout)}"


@dataclass(frozen=True)
class ResetPeer(Toxic):
    """Reset the connection (RST, as ``SO_LINGER 0`` then close does) after ``timeout`` s.

    Both sockets are reset. The clock starts when the toxic starts applying to the
    connection; ``timeout=0`` resets at once.
    """

    kind: ClassVar[str] = "reset_peer"

    timeout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("timeout", parse_duration("reset_peer.timeout", self.timeout))

    def _describe_params(self) -> str:
        return f"after {format_duration(self.timeout)}"


@dataclass(frozen=True)
class SlowClose(Toxic):
    """Hold a FIN (the peer closing) for ``delay`` seconds before passing it on."""

    kind: ClassVar[str] = "slow_close"

    delay: float

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("delay", parse_duration("slow_close.delay", self.delay))

    def _describe_params(self) -> str:
        return format_duration(self.delay)


@dataclass(frozen=True)
class LimitData(Toxic):
    """Close the connection (FIN) after exactly ``bytes`` bytes in this direction.

    Bytes are counted from the start of the connection, so a limit added while a
    stream is past it closes the connection at its next chunk.
    """

    kind: ClassVar[str] = "limit_data"

    bytes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("bytes", parse_size("limit_data.bytes", self.bytes))

    def _describe_params(self) -> str:
        return format_size(self.bytes)


@dataclass(frozen=True)
class Down(Toxic):
    """The proxy is down: new connections are reset as soon as they are accepted.

    Connections already open are left alone; ``stream`` does not matter. (Toxiproxy
    refuses the connect outright; a userspace proxy can only accept and reset, so a
    client sees ECONNRESET or EOF just after connecting instead of ECONNREFUSED.)
    """

    kind: ClassVar[str] = "down"

    def _describe_params(self) -> str:
        return ""


@dataclass(frozen=True)
class Stall(Toxic):
    """After ``after_bytes`` bytes, stop forwarding for ``duration`` seconds, or forever.

    The connection stays open and nothing is closed: the receiver just stops hearing
    from its peer, the failure that idle timeouts exist for. The stall starts when
    byte ``after_bytes`` has been forwarded (or, if that happened before the toxic was
    added, with the next chunk) and happens once per connection. ``duration=None``
    stalls until the toxic is removed. ``body=True`` counts ``after_bytes`` from the
    first byte after the connection's first HTTP header block (its blank line), so the
    stall lands at the same body offset whatever the size of the headers.
    """

    kind: ClassVar[str] = "stall"

    after_bytes: int = 0
    duration: float | None = None
    body: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("after_bytes", parse_size("stall.after_bytes", self.after_bytes))
        if self.duration is not None:
            self._set("duration", parse_duration("stall.duration", self.duration))

    def _describe_params(self) -> str:
        when = "forever" if self.duration is None else f"for {format_duration(self.duration)}"
        return f"after {format_size(self.after_bytes)}{' of body' if self.body else ''} {when}"


@dataclass(frozen=True)
class Loss(Toxic):
    """Packet loss, approximated: with ``probability`` a chunk is held ``rto`` extra s.

    A userspace proxy sits above TCP, so it cannot lose a segment; what an application
    sees of loss is TCP's retransmission: the lost bytes, and everything behind them,
    arrive one retransmission timeout late. Each chunk rolls independently; chunks
    are never reordered, so a held chunk holds up the ones behind it (head-of-line
    blocking), as with real TCP. Real retransmission timeouts start at 200 ms on Linux
    and double on repeated loss; this approximation holds each lost chunk once.
    """

    kind: ClassVar[str] = "loss"

    probability: float
    rto: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self._set("probability", parse_probability("loss.probability", self.probability))
        self._set("rto", parse_duration("loss.rto", self.rto))

    def sample(self, rng: random.Random) -> float:
        """The extra delay of one chunk in seconds: ``rto`` with ``probability``, else 0."""
        return self.rto if rng.random() < self.probability else 0.0

    def _describe_params(self) -> str:
        return f"{self.probability:.3g} rto {format_duration(self.rto)}"


KINDS: dict[str, type[Toxic]] = {
    cls.kind: cls for cls in (Latency, Bandwidth, Slicer, Timeout, ResetPeer, SlowClose, LimitData, Down, Stall, Loss)
}


def toxic_from_dict(data: Mapping[str, Any]) -> Toxic:
    """Build any toxic from a dict with a ``"kind"`` key (the output of ``to_dict()``)."""
    if not isinstance(data, Mapping):
        raise ConfigError("toxic", data, "a dict with a 'kind' key")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError.unknown("toxic kind", str(kind), KINDS)
    return KINDS[kind].from_dict(data)


def _coerce_toxic(value: Toxic | Mapping[str, Any]) -> Toxic:
    if isinstance(value, Toxic):
        return value
    if isinstance(value, Mapping):
        return toxic_from_dict(value)
    raise ConfigError("toxic", value, "a kit.network toxic (Latency, Bandwidth, ...) or its to_dict()")


# -- shorthand keyword arguments ----------------------------------------------------

#: Shorthand keywords, grouped by the toxic they build: {toxic name: (kind, {keyword: field})}.
#: The first keyword of a group is its main one; setting it to ``None`` removes the toxic.
SHORTHAND: dict[str, tuple[type[Toxic], dict[str, str]]] = {
    "latency": (Latency, {"latency": "latency", "jitter": "jitter", "distribution": "distribution"}),
    "bandwidth": (Bandwidth, {"bandwidth": "rate"}),
    "slicer": (Slicer, {"slice_size": "average_size", "slice_variation": "size_variation", "slice_delay": "delay"}),
    "stall": (Stall, {"stall_after": "after_bytes", "stall_for": "duration"}),
    "loss": (Loss, {"loss": "probability", "rto": "rto"}),
    "limit_data": (LimitData, {"limit_data": "bytes"}),
    "reset_peer": (ResetPeer, {"reset_after": "timeout"}),
    "timeout": (Timeout, {"timeout": "timeout"}),
    "slow_close": (SlowClose, {"slow_close": "delay"}),
    "down": (Down, {"down": ""}),
}
_KEYWORD_GROUP = {kw: group for group, (_, kws) in SHORTHAND.items() for kw in kws}


def toxics_from_kwargs(
    current: Iterable[Toxic] = (), *, toxicity: float | str | None = None, **kwargs: Any
) -> tuple[list[Toxic], list[str]]:
    """Apply shorthand keywords to ``current`` toxics: returns (toxics to set, names to remove).

    Keywords (all build **downstream** toxics, server -> client; use toxic objects for
    upstream ones): ``latency``, ``jitter``, ``distribution`` -> ``Latency``;
    ``bandwidth`` -> ``Bandwidth``; ``slice_size``, ``slice_variation``,
    ``slice_delay`` -> ``Slicer``; ``stall_after``, ``stall_for`` -> ``Stall``;
    ``loss``, ``rto`` -> ``Loss``; ``limit_data`` -> ``LimitData``; ``reset_after`` ->
    ``ResetPeer``; ``timeout`` -> ``Timeout`` (0: blackhole); ``slow_close`` ->
    ``SlowClose``; ``down=True`` -> ``Down``; ``toxicity`` applies to each toxic built.

    A keyword left out keeps the current toxic's value (``set(jitter=0.1)`` keeps the
    latency); the main keyword of a group set to ``None`` (``down=False``) removes it.
    """
    unknown = [kw for kw in kwargs if kw not in _KEYWORD_GROUP]
    if unknown:
        raise ConfigError.unknown("network keyword", unknown[0], [*_KEYWORD_GROUP, "toxicity"])
    by_name = {t.name: t for t in current}
    groups: dict[str, dict[str, Any]] = {}
    for kw, value in kwargs.items():
        groups.setdefault(_KEYWORD_GROUP[kw], {})[kw] = value
    built: list[Toxic] = []
    removed: list[str] = []
    for group, given in groups.items():
        cls, keywords = SHORTHAND[group]
        main = next(iter(keywords))
        if main in given and (given[main] is None or given[main] is False):  # not 0: timeout=0 is a toxic
            removed.append(group)
            continue
        existing = by_name.get(group)
        params = existing.params() if isinstance(existing, cls) else {}
        common: dict[str, Any] = {"name": group}
        if isinstance(existing, cls):
            common.update(stream=existing.stream, toxicity=existing.toxicity)
        if toxicity is not None:
            common["toxicity"] = toxicity
        for kw, value in given.items():
            if keywords[kw]:
                params[keywords[kw]] = value
        if cls is Latency and "latency" not in params:
            params["latency"] = 0.0
        if cls is Stall and "after_bytes" not in params:
            params["after_bytes"] = 0
        try:
            built.append(cls(**params, **common))
        except TypeError:
            raise ConfigError(main, None, f"{main}= is needed to build a {cls.kind} toxic") from None
    if toxicity is not None and not groups:
        raise ConfigError("toxicity", toxicity, "needs at least one toxic keyword to apply to")
    return built, removed


# -- Network --------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """A named set of toxics: the network condition of an experiment, as data.

    ``Network([Latency(0.2, jitter=0.05), Bandwidth("20KB/s")], name="slow-mobile")``,
    or ``Network.from_kwargs(latency="200ms", bandwidth="20KB/s")``. ``Network()`` is
    the direct path. Equality, ``to_dict``/``from_dict`` and JSON round-trips hold.
    """

    toxics: tuple[Toxic, ...] = field(default=())
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.toxics, Toxic | Mapping) or not isinstance(self.toxics, Iterable):
            raise ConfigError("toxics", self.toxics, "a list of toxics")
        toxics = tuple(_coerce_toxic(t) for t in self.toxics)
        seen: set[str] = set()
        for toxic in toxics:
            if toxic.name in seen:
                raise ConfigError("toxics", toxic.name, "unique names: give stacked toxics of a kind their own name=")
            seen.add(toxic.name)
        object.__setattr__(self, "toxics", toxics)

    @classmethod
    def from_kwargs(cls, name: str | None = None, **kwargs: Any) -> Network:
        """Build from shorthand keywords (downstream), e.g. ``latency="200ms", jitter="50ms"``.

        See :func:`toxics_from_kwargs` for the keywords.
        """
        toxics, _ = toxics_from_kwargs((), **kwargs)
        return cls(toxics, name=name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"name": ..., "toxics": [toxic.to_dict(), ...]}``."""
        return {"name": self.name, "toxics": [t.to_dict() for t in self.toxics]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Network:
        """Reverse :meth:`to_dict` (string units accepted)."""
        if not isinstance(data, Mapping):
            raise ConfigError("network", data, "a dict with 'toxics' (and optionally 'name')")
        unknown = set(data) - {"name", "toxics"}
        if unknown:
            raise ConfigError.unknown("network field", sorted(unknown)[0], ["name", "toxics"])
        return cls(tuple(toxic_from_dict(t) for t in data.get("toxics", ())), name=data.get("name"))

    @property
    def label(self) -> str:
        """The name, or a short description of the toxics (``"direct"`` when none)."""
        return self.name or self.describe()

    def describe(self) -> str:
        """A one-line summary such as ``latency 200ms +-50ms, bandwidth 20kB/s``."""
        return ", ".join(t.describe() for t in self.toxics) or "direct"
