"""One run's bookkeeping in the driver: run options, the journal, the bar, the Result.

``trials.jsonl`` (:data:`JOURNAL`) gets one :meth:`~kit.records.TrialRecord.to_dict` line
per finished trial, as it finishes, so a crash loses at most the trials in flight
(``kit.load(path, recover=True)`` rebuilds a Result from it); workers journal their
chunk under ``parts/`` while it runs (``chunk-<n>.jsonl``, one line per finished trial)
and leave there the Parquet part of the trials they did not stream (``part-<n>/``,
:mod:`kit.experiment._parts`), which recovery reads too. The finished (or interrupted)
run is saved as a bundle in the same folder (then ``parts/`` goes), and a resumed run is
merged with the Result it resumed.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

from .._clock import now_ns
from .._errors import ConfigError
from .._folders import discard_aside
from .._signals import saving
from ..records import TrialRecord

__all__ = ["CONFIG_FILE", "JOURNAL", "PARTS"]

JOURNAL = "trials.jsonl"
CONFIG_FILE = "experiment.json"
PARTS = "parts"  # the workers' per-chunk journals and Parquet parts, until the bundle is saved


def _saving_note(out: Path | None) -> str:
    """What a second Ctrl-C / SIGTERM prints while the finished trials are being saved."""
    if out is None:
        return "kit: stopping; the finished trials are kept (a moment)"
    return (
        f"kit: saving the finished trials to {out} (a moment). If the process is killed before that, "
        f'recover them with: python -c "import kit; kit.load({str(out)!r}, recover=True).save({str(out) + "-recovered"!r})"'
    )


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _proxy_log(proxy: Any) -> Any:
    for attr in ("forwards_df", "log_df"):
        value = getattr(proxy, attr, None)
        if value is None:
            continue
        value = value() if callable(value) else value
        with contextlib.suppress(Exception):
            import pandas as pd

            return value if isinstance(value, pd.DataFrame) else pd.DataFrame(value)
    return None


def _concurrency(value: Any) -> int | None:
    """None (adaptive) for "auto"/None, else a whole number >= 1."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("concurrency", value, "expected 'auto' or a whole number >= 1")
    return value


def _note(bar: Any, text: str) -> None:
    with contextlib.suppress(AttributeError):  # a caller's own progress object
        bar.note = text


def _budget(value: Any) -> float:
    """Seconds from a number or a ``kit._fidelity.FidelityBudget``."""
    value = getattr(value, "added_s", value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError("budget", value, "seconds the kit may add to a timestamp, > 0 (default 0.002)")
    return float(value)


def _concat(frames: list[Any]) -> Any:
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if frames else None


class _Run:
    """One run's bookkeeping in the driver: the plan, the journal, the bar, the result."""

    def __init__(
        self,
        plan: list[tuple[int, int]],
        out: Path | None,
        journal: Any,
        bar: Any,
        resume: Any,
        conc: Any,
        budget: float,
    ):
        self.plan, self.out, self.journal, self.bar, self.resume = plan, out, journal, bar, resume
        self.budget = budget
        self.aside: Path | None = None
        self.mode = "adaptive" if conc is None else "fixed"
        self.meta: dict[str, Any] = {
            "started_utc": _utc(),
            "trials_planned": None,
            # the kit's clock is monotonic; this pair maps it to wall time (HAR needs dates)
            "clock_anchor": {"unix_ns": time.time_ns(), "perf_ns": now_ns()},
        }
        self.t0 = time.perf_counter()

    def add(self, rec: TrialRecord) -> None:
        if self.journal is not None:
            self.journal.write(json.dumps(rec.to_dict(), separators=(",", ":")) + "\n")
            self.journal.flush()
        self.bar.update(1)

    def finish(
        self, experiment: Any, meta: dict[str, Any], proxy_logs: Any, records: Any = None, parts: Any = ()
    ) -> Any:
        """The Result of the trials recorded (streamed ``records`` and the tables of
        Parquet ``parts``; merged with the resumed one), saved to ``out``."""
        with saving(_saving_note(self.out)):  # more interrupts do not cut building and saving short
            with contextlib.suppress(Exception):
                self.bar.close()
            meta = {**self.meta, **meta, "concurrency_mode": self.mode, "wall_s": time.perf_counter() - self.t0}
            meta["budget_s"] = self.budget
            meta["trials_planned"] = len(experiment)
            result = experiment.result_of(records or [], meta=meta, proxy_logs=proxy_logs, parts=parts)
            self._warn(result)
            if self.resume is not None:
                result = _merged(self.resume, result, [c.labels for c in experiment.cells])
            experiment.last_result = result
            if self.journal is not None:
                self.journal.close()
            if self.out is not None:
                result.save(self.out, overwrite=True)
                discard_aside(self.aside)
            return result

    def _warn(self, result: Any) -> None:
        """Say when the kit could not keep its budget: a busy machine, or a fixed concurrency."""
        floor = result.meta.get("lag_floor_s") or 0.0
        if floor > self.budget / 2:
            warnings.warn(
                f"the client's event loop lagged {floor * 1e3:.1f} ms with almost nothing in flight: this machine "
                f"is too busy for the {self.budget * 1e3:g} ms fidelity budget; trials over it are flagged "
                "(result.trials['within_budget'])",
                stacklevel=5,
            )
            return
        t = result.trials
        over = int((~t["within_budget"]).sum()) if "within_budget" in t.columns else 0
        if self.mode == "fixed" and over > 0.01 * len(t):
            warnings.warn(
                f"{over} of {len(t)} trials went over the {self.budget * 1e3:g} ms fidelity budget at concurrency "
                f"{result.meta.get('concurrency')}: the kit distorted them (they are flagged); concurrency='auto' "
                "(the default) caps the trials in flight to what keeps the budget",
                stacklevel=5,
            )


def _merged(before: Any, after: Any, cells: Any) -> Any:
    """The trials of a partial Result and of the run that resumed it, as one Result
    (tables as one run of them all would have built them: :func:`kit.tables.merge`)."""
    import numpy as np
    import pandas as pd

    from ..result import Result
    from ..tables import FIDELITY_COLUMNS, merge

    old = dict(before.tables)
    missing = [c for c in FIDELITY_COLUMNS if c not in old["trials"].columns]
    if missing:  # a Result saved before the kit recorded its fidelity: unknown, not over budget
        old["trials"] = old["trials"].assign(**{c: True if c == "within_budget" else np.nan for c in missing})
    tables = merge([old, after.tables], cells)
    a, b = before.tables["proxy"], after.tables["proxy"]
    tables["proxy"] = pd.concat([a, b], ignore_index=True) if len(a) else b.copy()
    meta = dict(after.meta)
    meta["trials_done"] = len(tables["trials"])
    meta["resumed"] = {"trials_before": len(before.trials), "wall_s_before": before.meta.get("wall_s")}
    return Result(tables, after.config, meta)
