"""The plan of an experiment: grid values, cells, derived seeds, trial ids.

Seeds. Every trial gets a derived seed::

    trial_seed = int(sha256(f"{seed}:{cell.conditions_key}:{trial}").hexdigest()[:15], 16)

where ``cell.conditions_key`` hashes the cell's scenario and network (not its position,
and not its policy), so adding a cell leaves the other cells' seeds alone, and trial
``t`` of every policy under the same conditions gets the same seed: the policies face
the same draws (common random numbers: the same attempts of an outage fail for each),
so differences between them are the policies', not the dice's. The client sends the
trial seed as ``x-kit-trial`` (the fault server and the proxies key that trial's draws
by it) and as the seed of the policy's backoff jitter, so a trial ends the same way
wherever and whenever it runs: alone (:meth:`Experiment.replay`), in another order, in
another process or on another machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigError
from .._params import canonical, content_key, flat_params
from ..policy import Policy
from ..records import CellLabels
from ..scenarios import Scenario

__all__ = ["Cell", "network_seed", "parse_trial_id", "trial_id", "trial_seed"]


def _network_cls() -> Any:
    from ..network import Network

    return Network


# ------------------------------------------------------------------ values in a grid


def _as_scenario(value: Any) -> Scenario:
    if isinstance(value, Scenario):
        return value
    if isinstance(value, str):
        return Scenario.preset(value)
    if isinstance(value, Mapping):
        d = dict(value)
        if "preset" in d:  # {"preset": "slow_first_byte", "first_byte_delay": 2}
            base = Scenario.preset(d.pop("preset")).to_dict()
            base.update(d)
            d = base
        return Scenario.from_dict(d)
    raise ConfigError("scenarios", value, "expected kit.Scenario values, preset names or scenario dicts")


def _as_policy(value: Any) -> Policy:
    if isinstance(value, Policy):
        return value
    if value is None:
        return Policy()
    if isinstance(value, Mapping):
        return Policy.from_dict(value)
    raise ConfigError("policies", value, "expected kit.Policy values or policy dicts")


def _as_network(value: Any) -> Any:
    if value is None or value == "direct":
        return None
    Network = _network_cls()
    if isinstance(value, Network):
        return value if value.toxics else None
    if isinstance(value, Mapping):
        d = dict(value)
        net = Network.from_dict(d) if "toxics" in d or set(d) <= {"name"} else Network.from_kwargs(**d)
        return net if net.toxics else None
    raise ConfigError("networks", value, "expected kit.Network values, network dicts, 'direct' or None")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: a scenario, a network (None: direct) and a policy."""

    index: int
    scenario: Scenario
    network: Any
    policy: Policy
    scenario_label: str = ""
    network_label: str = "direct"
    policy_label: str = ""

    @property
    def key(self) -> str:
        """A stable id of the cell's content (scenario, network, policy), not its position."""
        d = self.to_dict()
        return content_key(d["scenario"], d["network"], d["policy"])

    @property
    def labels(self) -> CellLabels:
        """The cell as plain labels and flat parameters (what the tables hold)."""
        params: dict[str, Any] = {}
        for kind, value in (("scenario", self.scenario), ("network", self.network), ("policy", self.policy)):
            params.update(flat_params(kind, value))
        return CellLabels(self.index, self.scenario_label, self.network_label, self.policy_label, self.key, params)

    @property
    def conditions_key(self) -> str:
        """A stable id of what the cell's policy faces (scenario and network): seeds trials."""
        d = {
            "scenario": self.scenario.to_dict(),
            "network": self.network.to_dict() if self.network is not None else None,
        }
        return hashlib.sha256(canonical(d).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_dict(),
            "network": self.network.to_dict() if self.network is not None else None,
            "policy": self.policy.to_dict(),
        }


def trial_seed(seed: int, conditions_key: str, trial: int) -> int:
    """The derived seed of one trial (fits in a signed 64-bit integer)."""
    return int(hashlib.sha256(f"{seed}:{conditions_key}:{trial}".encode()).hexdigest()[:15], 16)


def network_seed(seed: int, network: Any) -> int:
    """The seed of the proxy of ``network`` in an experiment seeded with ``seed``."""
    return int(hashlib.sha256(f"{seed}:{canonical(network.to_dict())}".encode()).hexdigest()[:15], 16)


def trial_id(cell: int, trial: int) -> str:
    return f"c{cell:03d}-t{trial:04d}"


def parse_trial_id(tid: str) -> tuple[int, int]:
    try:
        c, t = tid.split("-")
        if not (c.startswith("c") and t.startswith("t")):
            raise ValueError
        return int(c[1:]), int(t[1:])
    except ValueError:
        raise ConfigError("trial_id", tid, "expected an id such as 'c000-t0003' (see result.trials.trial_id)") from None


def _listify(name: str, value: Any) -> list[Any]:
    if value is None:
        raise ConfigError(name, None, f"expected a list of {name}")
    if isinstance(value, str | Mapping | Scenario | Policy):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _unique(values: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(canonical(v.to_dict() if v is not None else None), v)
    return list(seen.values())
