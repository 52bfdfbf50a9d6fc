"""The grid of an experiment as a value: scenarios x networks x policies, its cells, its config.

:class:`Grid` is what a config describes and nothing more, so a worker process
rebuilds it from the config it is sent (:mod:`kit.experiment._worker`) without
importing the engine that runs it (:class:`~kit.experiment.Experiment`, a ``Grid``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import ConfigError
from .._params import canonical, label_all
from .._redact import redact_config
from ._plan import Cell, _as_network, _as_policy, _as_scenario, _listify, _unique

__all__ = ["Grid"]

_CONFIG_FIELDS = (
    "name",
    "scenarios",
    "networks",
    "policies",
    "cells",
    "trials",
    "seed",
    "headers",
    "concurrency",
)


class Grid:
    """The cells of scenario x network x policy, ``trials`` and ``seed``: see :class:`~kit.experiment.Experiment`."""

    def __init__(
        self,
        scenarios: Iterable[Any] | None = None,
        networks: Iterable[Any] | None = None,
        policies: Iterable[Any] | None = None,
        *,
        cells: Iterable[Any] | None = None,
        trials: int = 1,
        seed: int = 0,
        headers: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        if isinstance(trials, bool) or not isinstance(trials, int) or trials <= 0:
            raise ConfigError("trials", trials, "expected a whole number of trials per cell, >= 1")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError("seed", seed, "expected an integer")
        self.trials = trials
        self.seed = seed
        self.name = name
        self.headers = dict(headers or {})
        if cells is not None:
            if scenarios is not None or networks is not None or policies is not None:
                raise ConfigError("cells", "...", "give either cells=[...] or scenarios/networks/policies, not both")
            triples = []
            for c in cells:
                if isinstance(c, Mapping):
                    unknown = set(c) - {"scenario", "network", "policy"}
                    if unknown:
                        raise ConfigError.unknown("cell field", sorted(unknown)[0], ["scenario", "network", "policy"])
                    c = (c.get("scenario"), c.get("network"), c.get("policy"))
                if isinstance(c, Cell):
                    c = (c.scenario, c.network, c.policy)
                sc, net, pol = c
                triples.append((_as_scenario(sc), _as_network(net), _as_policy(pol)))
            self._explicit = True
            self.scenarios = _unique([t[0] for t in triples])
            self.networks = _unique([t[1] for t in triples])
            self.policies = _unique([t[2] for t in triples])
        else:
            self._explicit = False
            self.scenarios = [_as_scenario(s) for s in _listify("scenarios", scenarios)]
            self.networks = [
                _as_network(n) for n in (_listify("networks", networks) if networks is not None else [None])
            ]
            self.policies = [
                _as_policy(p) for p in (_listify("policies", policies) if policies is not None else [None])
            ]
            triples = [(s, n, p) for s in self.scenarios for n in self.networks for p in self.policies]
        if not triples:
            raise ConfigError(
                "cells", 0, "the grid has 0 cells: give at least one scenario (and non-empty networks/policies)"
            )
        s_lab = dict(
            zip(
                map(id, self.scenarios),
                label_all(self.scenarios, lambda s: s.label, lambda s: s.to_dict()),
                strict=True,
            )
        )
        n_lab = dict(
            zip(
                map(id, self.networks),
                label_all(self.networks, lambda n: n.label if n else "direct", lambda n: n.to_dict() if n else {}),
                strict=True,
            )
        )
        p_lab = dict(
            zip(map(id, self.policies), label_all(self.policies, lambda p: p.label, lambda p: p.to_dict()), strict=True)
        )
        canon_s = {canonical(s.to_dict()): s for s in self.scenarios}
        canon_n = {canonical(n.to_dict() if n else None): n for n in self.networks}
        canon_p = {canonical(p.to_dict()): p for p in self.policies}
        self.cells: list[Cell] = []
        for i, (s, n, p) in enumerate(triples):
            s = canon_s[canonical(s.to_dict())]
            n = canon_n[canonical(n.to_dict() if n else None)]
            p = canon_p[canonical(p.to_dict())]
            self.cells.append(Cell(i, s, n, p, s_lab[id(s)], n_lab[id(n)], p_lab[id(p)]))
        self.last_result: Any = None

    # -- identity --------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of trials in the whole grid."""
        return len(self.cells) * self.trials

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name or ''} {len(self.scenarios)} scenarios x {len(self.networks)} networks x "
            f"{len(self.policies)} policies = {len(self.cells)} cells x {self.trials} trials, seed={self.seed}>"
        )

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The config as JSON-ready data; :meth:`from_dict` gives back an equal experiment."""
        d: dict[str, Any] = {"name": self.name, "trials": self.trials, "seed": self.seed}
        if self._explicit:
            d["cells"] = [c.to_dict() for c in self.cells]
        else:
            d["scenarios"] = [s.to_dict() for s in self.scenarios]
            d["networks"] = [n.to_dict() if n is not None else None for n in self.networks]
            d["policies"] = [p.to_dict() for p in self.policies]
        d["headers"] = dict(self.headers)
        return redact_config(d) if redact else d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Grid:
        """Build from :meth:`to_dict` output (or a parsed ``experiment.toml``).

        Unknown fields are errors naming the closest known one. ``concurrency`` is
        accepted (and ignored here: it is a run option, read by ``kit run``).
        """
        if not isinstance(d, Mapping):
            raise ConfigError("experiment", d, "expected a mapping of experiment fields")
        for key in d:
            if key not in _CONFIG_FIELDS:
                raise ConfigError.unknown("experiment field", key, _CONFIG_FIELDS)
        kw: dict[str, Any] = {k: d[k] for k in ("name", "trials", "seed", "headers") if k in d}
        try:
            if d.get("cells") is not None:
                return cls(cells=d["cells"], **kw)
            return cls(scenarios=d.get("scenarios"), networks=d.get("networks"), policies=d.get("policies"), **kw)
        except ConfigError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            # a file is data: a value of the wrong shape (a list where a name goes, ...) deep in
            # the config is a ConfigError, never a stray TypeError from the code reading it
            import reprlib

            raise ConfigError(
                "experiment", reprlib.repr(dict(d)), f"a config of the documented shape ({type(exc).__name__}: {exc})"
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Grid) and self.to_dict(redact=False) == other.to_dict(redact=False)

    __hash__ = None  # type: ignore[assignment]
