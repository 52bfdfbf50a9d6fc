"""Config values as data: canonical JSON, content keys, flat ``<kind>.<field>`` columns, labels.

Shared by the experiment (cell keys and labels) and the tables (one column per parameter;
parameters are redacted: a fault may carry a set-cookie header). Values only: nothing here
imports an engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._redact import redact_config

__all__ = ["canonical", "content_key", "flat_params", "flatten", "label_all"]


def canonical(obj: Any) -> str:
    """One JSON text per value (sorted keys, no spaces): equal configs, equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(scenario: Any, network: Any, policy: Any) -> str:
    """A stable id of a cell's content (the ``to_dict()`` of its scenario, network and policy)."""
    d = {"scenario": scenario, "network": network, "policy": policy}
    return hashlib.sha256(canonical(d).encode()).hexdigest()[:16]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def label_all(values: Sequence[Any], label: Callable[[Any], str], as_dict: Callable[[Any], Any]) -> list[str]:
    """Labels, made unique by appending the fields in which same-labelled values differ."""
    labels = [label(v) for v in values]
    for lab in set(labels):
        same = [i for i, x in enumerate(labels) if x == lab]
        if len(same) < 2:
            continue
        dicts = [flatten(as_dict(values[i]) or {}) for i in same]
        keys = sorted({k for d in dicts for k in d})
        diff = [k for k in keys if len({canonical(d.get(k)) for d in dicts}) > 1]
        for i, d in zip(same, dicts, strict=True):
            extra = ",".join(f"{k}={d.get(k)}" for k in diff if k not in ("seed",)) or f"#{i}"
            labels[i] = f"{lab} {extra}"
    return labels


def flat_params(kind: str, value: Any) -> dict[str, Any]:
    """The flat ``<kind>.<field>`` columns of one scenario, network or policy.

    ``value`` is the kit value (``Scenario``, ``Network``, ``Policy``) or, for a
    scenario or policy, its ``to_dict()``; None gives no columns.
    """
    if value is None:
        return {}
    if kind == "network":
        out: dict[str, Any] = {"network.name": value.name}
        for t in value.toxics:
            for p, v in t.params().items():
                out[f"network.{t.name}" if p == t.kind else f"network.{t.name}.{p}"] = v
            if t.stream != "downstream":
                out[f"network.{t.name}.stream"] = t.stream
            if t.toxicity < 1:
                out[f"network.{t.name}.toxicity"] = t.toxicity
        return out
    d = redact_config(value if isinstance(value, Mapping) else value.to_dict())  # e.g. a fault's set-cookie header
    return {
        f"{kind}.{k}": (canonical(v) if isinstance(v, list | tuple) else v)
        for k, v in flatten(d).items()
        if not (isinstance(v, list | tuple) and not v and k in ("faults", "attempts"))
    }
