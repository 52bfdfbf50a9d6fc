"""Scenarios: what the fault server sends for a request, as values.

A :class:`Scenario` describes one response: its protocol and length, when the headers
and the first byte go out, the gaps between units (:class:`Gap`), pings, the body
framing, and a list of faults (:mod:`kit.faults`), each a small frozen dataclass saying
what happens *after N units*; or, with ``replay``, a recorded response
(:class:`kit._recorded.Replay`, built by :func:`kit.replay.replay_scenario`). Units are
the protocol's whole pieces (an SSE event, an NDJSON line, a raw block), counted from 0
over the complete healthy stream, so for an Anthropic stream of ``events=40`` deltas,
``after=0`` is before ``message_start`` and ``after=3`` is right before the first delta.

Everything is a value: scenarios compare equal, round-trip through JSON
(:meth:`Scenario.to_dict` / :meth:`Scenario.from_dict`) and draw their randomness from
a seed, so an experiment can store them and replay any single attempt. :meth:`Scenario.plan`
makes one attempt's concrete schedule (:class:`Plan`), generated or replayed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._bounds import (
    MAX_ATTEMPTS,
    MAX_BODY_BYTES,
    MAX_EVENT_SIZE,
    MAX_EVENTS,
    MAX_LOGNORMAL_SIGMA,
    MAX_SECONDS,
    MIN_PARETO_ALPHA,
    MIN_PING_EVERY,
    check_count,
    check_number,
)
from ._errors import ConfigError
from ._recorded import Replay
from .faults import (
    FAULT_KINDS,
    Buffer,
    Close,
    ErrorEvent,
    Fault,
    Hostile,
    HttpStatus,
    Malformed,
    NoTerminator,
    Reset,
    Stall,
    TruncatedChunk,
    WrongFormat,
    fault_from_dict,
)
from .protocols import Protocol, Unit

# the fault values are re-exported: a scenario's vocabulary, ``kit.scenarios.Close`` as before
__all__ = [
    "FAULT_KINDS",
    "MAX_EVENTS",
    "MAX_SECONDS",
    "PRESETS",
    "Buffer",
    "Close",
    "ErrorEvent",
    "Fault",
    "Gap",
    "Hostile",
    "HttpStatus",
    "Malformed",
    "NoTerminator",
    "Reset",
    "Scenario",
    "Stall",
    "TruncatedChunk",
    "WrongFormat",
]

Framing = Literal["chunked", "length", "close"]
FRAMINGS = ("chunked", "length", "close")


# ---------------------------------------------------------------------------- gaps


_GAP_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "uniform": ("low", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "sigma"),
    "pareto": ("scale", "alpha"),
    "replay": ("values",),
}


@dataclass(frozen=True)
class Gap:
    """The distribution of the gap between consecutive units, in seconds.

    ``constant(value)``, ``uniform(low, high)``, ``normal(mean, sd)`` (clipped at 0),
    ``lognormal(median, sigma)``, ``pareto(scale, alpha)`` (the minimum is ``scale``),
    or ``replay(values)`` (gaps recorded elsewhere, cycled). Samples come from the
    scenario's seed, so the same seed gives the same gaps.
    """

    dist: str = "constant"
    params: tuple[tuple[str, Any], ...] = (("value", 0.0),)

    def __post_init__(self) -> None:
        if self.dist not in _GAP_PARAMS:
            raise ConfigError.unknown("gap.dist", self.dist, _GAP_PARAMS)
        need = _GAP_PARAMS[self.dist]
        got = dict(self.params)
        missing = [p for p in need if p not in got]
        extra = [p for p in got if p not in need]
        if missing or extra:
            raise ConfigError(
                f"gap.{self.dist}",
                got,
                f"{self.dist} takes exactly the parameters {', '.join(need)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(extra)}" if extra else ""),
            )
        if self.dist == "replay":
            values = tuple(got["values"])
            if not values or len(values) > MAX_EVENTS:
                raise ConfigError("gap.replay.values", len(values), f"expected [1, {MAX_EVENTS:,}] gaps")
            for v in values:
                check_number("gap.replay.values", v)
            object.__setattr__(self, "params", (("values", values),))
            return
        for name in need:
            maximum = MAX_LOGNORMAL_SIGMA if (self.dist, name) == ("lognormal", "sigma") else MAX_SECONDS
            check_number(f"gap.{self.dist}.{name}", got[name], maximum=maximum)
        if self.dist == "uniform" and got["low"] > got["high"]:
            raise ConfigError("gap.uniform", got, "low must be <= high")
        if self.dist == "pareto" and got["alpha"] < MIN_PARETO_ALPHA:
            raise ConfigError("gap.pareto.alpha", got["alpha"], f"must be in [{MIN_PARETO_ALPHA:g}, {MAX_SECONDS:g}]")
        object.__setattr__(self, "params", tuple((p, got[p]) for p in need))

    @classmethod
    def constant(cls, value: float) -> Gap:
        return cls("constant", (("value", value),))

    @classmethod
    def uniform(cls, low: float, high: float) -> Gap:
        return cls("uniform", (("low", low), ("high", high)))

    @classmethod
    def normal(cls, mean: float, sd: float) -> Gap:
        return cls("normal", (("mean", mean), ("sd", sd)))

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Gap:
        return cls("lognormal", (("median", median), ("sigma", sigma)))

    @classmethod
    def pareto(cls, scale: float, alpha: float) -> Gap:
        return cls("pareto", (("scale", scale), ("alpha", alpha)))

    @classmethod
    def replay(cls, values: Sequence[float]) -> Gap:
        return cls("replay", (("values", tuple(values)),))

    def sample(self, rng: random.Random, n: int) -> list[float]:
        """``n`` gaps drawn from ``rng`` (each at most ``MAX_SECONDS``: heavy tails stay finite)."""
        return [min(g, MAX_SECONDS) for g in self._draw(rng, n)]

    def _draw(self, rng: random.Random, n: int) -> list[float]:
        p = dict(self.params)
        if self.dist == "constant":
            return [p["value"]] * n
        if self.dist == "uniform":
            return [rng.uniform(p["low"], p["high"]) for _ in range(n)]
        if self.dist == "normal":
            return [max(0.0, rng.gauss(p["mean"], p["sd"])) for _ in range(n)]
        if self.dist == "lognormal":
            mu = math.log(p["median"]) if p["median"] > 0 else -math.inf
            return [0.0 if mu == -math.inf else rng.lognormvariate(mu, p["sigma"]) for _ in range(n)]
        if self.dist == "pareto":
            return [p["scale"] * rng.paretovariate(p["alpha"]) for _ in range(n)]
        values = p["values"]
        return [values[i % len(values)] for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dist": self.dist}
        for k, v in self.params:
            d[k] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_value(cls, value: Any) -> Gap:
        """A Gap from a Gap, a number of seconds (constant) or a dict."""
        if isinstance(value, Gap):
            return value
        if isinstance(value, Mapping):
            d = dict(value)
            dist = d.pop("dist", "constant")
            return cls(dist, tuple(d.items()))
        return cls.constant(check_number("gap", value))


# ------------------------------------------------------------------------ scenario


@dataclass(frozen=True)
class Scenario:
    """One response, described as data; see the module docstring.

    Fields: ``protocol`` (anthropic, openai, ndjson, raw); ``events`` (content units:
    text deltas, chunks, lines, blocks) and ``event_size`` (bytes of text each);
    ``headers_delay`` (s before the status line); ``first_byte_delay`` (s between the
    headers and the first body byte); ``gap`` (between units: seconds or a
    :class:`Gap`); ``ping_every`` (s; pings while waiting, None: none); ``framing``
    (chunked, length, close); ``faults``; ``attempts`` (a scenario per attempt, the last
    one repeating: fail, fail, succeed); ``fault_probability`` (each attempt gets the
    faults with this probability, rolled from the seed); ``seed``; ``name``;
    ``replay`` (a recorded response to send instead of generated events: see
    :func:`kit.replay_scenario`).
    """

    protocol: str = "anthropic"
    events: int = 20
    event_size: int | None = None
    headers_delay: float = 0.0
    first_byte_delay: float = 0.0
    gap: Gap | float = 0.02
    ping_every: float | None = None
    framing: Framing = "chunked"
    faults: tuple[Fault, ...] = ()
    attempts: tuple[Scenario, ...] = ()
    fault_probability: float = 1.0
    seed: int = 0
    name: str | None = None
    replay: Replay | None = None

    def __post_init__(self) -> None:
        if self.replay is not None and not isinstance(self.replay, Replay):
            raise ConfigError("replay", type(self.replay).__name__, "expected a kit.replay.Replay (replay_scenario)")
        Protocol.of(self.protocol)  # a name the public API takes; else a ConfigError naming the allowed
        check_count("events", self.events, MAX_EVENTS)
        if self.event_size is not None:
            check_count("event_size", self.event_size, MAX_EVENT_SIZE)
            if self.events * self.event_size > MAX_BODY_BYTES:
                raise ConfigError(
                    "event_size",
                    self.event_size,
                    f"events x event_size must be <= {MAX_BODY_BYTES:,} bytes ({self.events} events here)",
                )
        check_number("headers_delay", self.headers_delay)
        check_number("first_byte_delay", self.first_byte_delay)
        if self.ping_every is not None:
            check_number("ping_every", self.ping_every, minimum=MIN_PING_EVERY)
        if self.framing not in FRAMINGS:
            raise ConfigError.unknown("framing", self.framing, FRAMINGS)
        object.__setattr__(self, "gap", Gap.from_value(self.gap))
        faults = tuple(self.faults)
        for f in faults:
            if not isinstance(f, Fault):
                raise ConfigError("faults", f, "expected fault objects such as kit.Close(after=3)")
        object.__setattr__(self, "faults", faults)
        object.__setattr__(self, "attempts", tuple(self.attempts))
        if len(self.attempts) > MAX_ATTEMPTS:
            raise ConfigError("attempts", len(self.attempts), f"expected at most {MAX_ATTEMPTS} per-attempt scenarios")
        for a in self.attempts:
            if not isinstance(a, Scenario):
                raise ConfigError("attempts", a, "expected Scenario objects")
        p = self.fault_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError("fault_probability", p, "expected a probability in [0, 1]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError("seed", self.seed, "expected an integer")
        n_units = self.unit_count()
        for f in faults:
            if isinstance(f, (HttpStatus, WrongFormat, NoTerminator)):
                continue
            if f.after > n_units:
                raise ConfigError(
                    f"{f.kind}.after",
                    f.after,
                    f"this stream has {n_units} units ({self.events} events of {self.protocol} "
                    f"plus framing events); after must be <= {n_units}",
                )
            if isinstance(f, TruncatedChunk) and self.framing != "chunked":
                raise ConfigError("truncated_chunk", self.framing, "needs framing='chunked'")
            if isinstance(f, Hostile) and f.what in ("random_chunks", "bad_chunk_size") and self.framing != "chunked":
                raise ConfigError(f"hostile.{f.what}", self.framing, "needs framing='chunked'")

    # -- construction -------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Scenario:
        """A named preset (see :data:`PRESETS`), optionally with fields overridden."""
        if name not in PRESETS:
            raise ConfigError.unknown("preset", name, PRESETS)
        base = PRESETS[name]
        return dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def presets(cls) -> list[str]:
        """Names of the presets."""
        return list(PRESETS)

    def replace(self, **changes: Any) -> Scenario:
        """A copy with fields changed."""
        return dataclasses.replace(self, **changes)

    # -- serialization ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` gives back an equal Scenario."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "gap":
                v = v.to_dict()
            elif f.name == "faults" or f.name == "attempts":
                v = [x.to_dict() for x in v]
            elif f.name == "replay":
                if v is None:
                    continue  # absent, so that the keys of scenarios without one do not change
                v = v.to_dict()
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scenario:
        """Build from :meth:`to_dict` output; unknown keys are errors naming the closest field."""
        if not isinstance(d, Mapping):
            raise ConfigError("scenario", d, "expected a mapping of scenario fields")
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in names:
                raise ConfigError.unknown("scenario field", key, names)
        if "faults" in d:
            d["faults"] = tuple(fault_from_dict(f) for f in d["faults"])
        if "attempts" in d:
            d["attempts"] = tuple(cls.from_dict(a) for a in d["attempts"])
        if "gap" in d:
            d["gap"] = Gap.from_value(d["gap"])
        if d.get("replay") is not None:
            d["replay"] = Replay.from_dict(d["replay"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def key(self) -> str:
        """A short stable id of this scenario's content (used in server URLs)."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """The name if it has one, else a short description."""
        if self.name:
            return self.name
        kinds = ",".join(f.kind for f in self.faults) or "ok"
        return f"{self.protocol}:{kinds}"

    # -- what the server does -----------------------------------------------------

    def unit_count(self) -> int:
        """Units in the healthy stream (events plus the protocol's framing events)."""
        if self.replay is not None:
            return self.replay.unit_count()
        return self.events + Protocol.of(self.protocol).extra_units

    def for_attempt(self, attempt: int, key: str = "") -> Scenario:
        """The scenario that attempt ``attempt`` (1-based) of trial ``key`` gets.

        Per-attempt sequences pick ``attempts[attempt - 1]`` (the last repeats); with
        ``fault_probability`` < 1 the faults apply only if a roll seeded by
        (seed, key, attempt) comes up.
        """
        sc = self
        if self.attempts:
            sc = self.attempts[min(attempt, len(self.attempts)) - 1]
            sc = dataclasses.replace(sc, seed=sc.seed if sc.seed else self.seed)
        if sc.fault_probability < 1.0 and sc.faults:
            rng = random.Random(f"{sc.seed}:{key}:{attempt}:faults")
            if rng.random() >= sc.fault_probability:
                sc = dataclasses.replace(sc, faults=())
        return sc

    def plan(self, attempt: int = 1, key: str = "") -> Plan:
        """The concrete schedule for one attempt (see :class:`Plan`)."""
        sc = self.for_attempt(attempt, key)
        if sc.replay is not None:
            return _replayed(sc, sc.replay, attempt, key)
        units = Protocol.of(sc.protocol).units(sc.events, sc.event_size)
        rng = random.Random(f"{sc.seed}:{key}:{attempt}:gaps")
        gap = sc.gap
        assert isinstance(gap, Gap)  # __post_init__ made every gap a Gap
        gaps = gap.sample(rng, max(len(units) - 1, 0))
        return Plan(scenario=sc, units=units, gaps=gaps, attempt=attempt, key=key)


@dataclass(frozen=True)
class Plan:
    """One attempt's concrete schedule: the units and the gaps before each after the first."""

    scenario: Scenario
    units: tuple[Unit, ...]
    gaps: list[float]
    attempt: int = 1
    key: str = ""
    fault_at: Mapping[int, list[Fault]] | None = None  # a replay's faults by unit index (see _replayed)

    def rng(self, purpose: str) -> random.Random:
        """A random source for ``purpose``, seeded by (seed, trial key, attempt)."""
        return random.Random(f"{self.scenario.seed}:{self.key}:{self.attempt}:{purpose}")

    def faults_at(self, index: int) -> list[Fault]:
        """Faults that act after ``index`` units, in the order given."""
        if self.fault_at is not None:
            return list(self.fault_at.get(index, ()))
        return [
            f
            for f in self.scenario.faults
            if f.after == index
            and not isinstance(f, (HttpStatus, WrongFormat, NoTerminator, Buffer))
            and not _whole_stream(f)
        ]

    def fault(self, cls: type[Fault]) -> Fault | None:
        return next((f for f in self.scenario.faults if isinstance(f, cls)), None)


def _replayed(sc: Scenario, replay: Replay, attempt: int, key: str) -> Plan:
    """A replay's plan: the recorded chunks as units, cut where faults act, time scaled by ``speed``."""
    whole = (HttpStatus, WrongFormat, NoTerminator, Buffer)
    acting = [f for f in sc.faults if not isinstance(f, whole) and not _whole_stream(f)]
    pieces = replay.pieces(replay.offset_of(f.after) for f in acting)
    starts = [p[2] for p in pieces]
    fault_at: dict[int, list[Fault]] = {}
    for f in acting:
        pos = replay.offset_of(f.after)
        index = next((i for i, s in enumerate(starts) if s >= pos), len(pieces))
        fault_at.setdefault(index, []).append(f)
    end_fault = {"close": Close(after=0), "reset": Reset(after=0), "hang": Stall(after=0)}.get(replay.ending)
    if end_fault is not None:
        fault_at.setdefault(len(pieces), []).append(end_fault)
    speed = replay.speed
    units = tuple(Unit("chunk", data) for _, data, _ in pieces)
    gaps = [(pieces[i + 1][0] - pieces[i][0]) / speed for i in range(len(pieces) - 1)]
    first = pieces[0][0] / speed if pieces else 0.0
    timed = dataclasses.replace(sc, headers_delay=sc.headers_delay / speed, first_byte_delay=first)
    return Plan(scenario=timed, units=units, gaps=gaps, attempt=attempt, key=key, fault_at=fault_at)


def _whole_stream(f: Fault) -> bool:
    """A fault that acts on the whole stream, not at a point of it."""
    return isinstance(f, Hostile) and f.what in ("random_chunks", "endless_headers")


# ------------------------------------------------------------------------- presets


def _presets() -> dict[str, Scenario]:
    s = Scenario
    return {
        p.name: p  # type: ignore[misc]
        for p in [
            s(name="ok", events=20, gap=0.01),
            s(name="empty_200", events=0, faults=(Close(after=0, clean=True),)),
            s(name="close_delimited_empty", events=0, framing="close", faults=(Close(after=0, clean=True),)),
            s(
                name="pings_only",
                events=0,
                ping_every=0.05,
                first_byte_delay=0.25,
                faults=(Close(after=0, clean=True),),
            ),
            s(name="wrong_format", faults=(WrongFormat(what="other_protocol"),)),
            s(name="json_instead_of_stream", faults=(WrongFormat(what="json"),)),
            s(name="headers_then_close", faults=(Close(after=0),)),
            s(name="headers_then_reset", faults=(Reset(after=0),)),
            s(name="slow_headers", headers_delay=3.0, events=5, gap=0.01),
            s(name="slow_first_byte", first_byte_delay=3.0, events=5, gap=0.01),
            s(name="stall_mid_stream", events=20, gap=0.01, faults=(Stall(after=10, duration=3.0),)),
            s(name="close_mid_stream", events=20, gap=0.01, faults=(Close(after=10),)),
            s(name="truncated_chunk", events=20, gap=0.01, faults=(TruncatedChunk(after=10),)),
            s(name="reset_mid_stream", events=20, gap=0.01, faults=(Reset(after=10),)),
            s(name="no_terminator", events=20, gap=0.01, faults=(NoTerminator(),)),
            s(name="error_event_mid_stream", events=20, gap=0.01, faults=(ErrorEvent(after=10),)),
            s(name="malformed_sse", events=20, gap=0.01, faults=(Malformed(after=10, what="json"),)),
            s(
                name="overloaded_529",
                faults=(HttpStatus(status=529, error_type="overloaded_error", message="Overloaded"),),
            ),
            s(
                name="rate_limited_429",
                faults=(
                    HttpStatus(
                        status=429,
                        error_type="rate_limit_error",
                        message="Number of request tokens has exceeded your per-minute rate limit",
                        retry_after=1,
                    ),
                ),
            ),
            s(
                name="server_error_500",
                faults=(HttpStatus(status=500, error_type="api_error", message="Internal server error"),),
            ),
            s(
                name="fail_fail_succeed",
                attempts=(
                    s(faults=(HttpStatus(status=529, error_type="overloaded_error", message="Overloaded"),)),
                    s(faults=(HttpStatus(status=529, error_type="overloaded_error", message="Overloaded"),)),
                    s(events=20, gap=0.01),
                ),
            ),
        ]
    }


PRESETS: dict[str, Scenario] = _presets()
