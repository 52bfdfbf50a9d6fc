"""The result of many calls: the tidy tables of every trial, and streaming metrics.

A :class:`Result` holds the tables of :mod:`kit.tables` (``trials``, ``attempts``,
``chunks``, ``events``, ``server``, ``connection``, ``deadlines``, ``proxy``; columns and dtypes there)
built from :mod:`kit.records` by :func:`kit.tables.build`, whatever their source: an
:class:`~kit.Experiment` run, single traces (:meth:`Result.from_traces`), a HAR file,
a CSV of chunk timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .records import CellLabels, TrialRecord
from .tables import STREAM_METRICS, TABLES, build, merge, proxy_table, traces_to_records

__all__ = ["STREAM_METRICS", "TABLES", "Result"]

_DEFAULT_BUDGET = 0.002  # s: kit._fidelity.DEFAULT_BUDGET, for results that do not name theirs


# ------------------------------------------------------------------------- Result


class Result:
    """What an :class:`~kit.Experiment` run produced: tidy tables, the config, the run's metadata.

    ``result.trials`` (one row per logical call), ``attempts``, ``chunks``, ``events``,
    ``server``, ``connection``, ``deadlines``, ``proxy``; :meth:`metrics` gives named streaming metrics
    per cell; :meth:`save` writes a bundle that :func:`kit.load` reads back equal.
    """

    def __init__(self, tables: Mapping[str, pd.DataFrame], config: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise ValueError(f"missing tables: {missing}")
        self.tables: dict[str, pd.DataFrame] = {t: tables[t] for t in TABLES}
        self.config: dict[str, Any] = dict(config)
        self.meta: dict[str, Any] = dict(meta)

    @classmethod
    def from_records(
        cls,
        records: Iterable[TrialRecord | Mapping[str, Any]],
        cells: Sequence[CellLabels],
        *,
        config: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        proxy_logs: Mapping[str, pd.DataFrame | None] | None = None,
        parts: Sequence[Mapping[str, pd.DataFrame]] = (),
    ) -> Result:
        """A Result of trial records (or their ``to_dict`` form) in ``cells``.

        ``config`` is the experiment's (empty for other sources); ``meta`` gets
        ``trials_done`` and the cells' labels; ``proxy_logs`` maps a network label to
        its proxy's forward log. ``parts``: tables already built from more trials of the
        same cells (a worker's Parquet parts), merged in (:func:`kit.tables.merge`; a
        trial also among ``records`` is kept once).
        """
        records = [TrialRecord.coerce(r) for r in records]
        tables, _ = build(records, cells)
        if parts:
            tables = merge([tables, *parts], cells)
        tables["proxy"] = proxy_table(proxy_logs or {})
        meta = dict(meta or {})
        meta.setdefault("trials_planned", len(tables["trials"]))
        meta["trials_done"] = len(tables["trials"])
        meta["cells"] = [c.to_dict() for c in cells]
        return cls(tables, dict(config or {}), meta)

    @classmethod
    def from_traces(cls, traces: Iterable[Any], *, ids: Iterable[str] | None = None) -> Result:
        """A Result of single :class:`~kit.Trace` calls, one trial each.

        Traces with the same scenario and policy share a cell; each distinct pair gets
        its own, labelled by its scenario and policy (network ``direct``: a trace does
        not know its path). ``ids`` default to the traces' labels.
        """
        records, cells = traces_to_records(traces, ids)
        return cls.from_records(records, cells, meta={"source": "traces"})

    def select(self, trial_ids: Iterable[str]) -> Result:
        """A Result of only the trials ``trial_ids`` (their rows of every table; same config).

        The proxy table keeps the rows of the networks those trials went through.
        """
        ids = set(trial_ids)
        tables = {}
        for name, df in self.tables.items():
            if "trial_id" in df.columns:
                df = df[df["trial_id"].isin(ids)].reset_index(drop=True)
            tables[name] = df
        trials = tables["trials"]
        proxy = tables["proxy"]
        if "network" in proxy.columns:
            tables["proxy"] = proxy[proxy["network"].isin(set(trials["network"]))].reset_index(drop=True)
        meta = dict(self.meta)
        cells = set(trials["cell"].tolist())
        if meta.get("cells"):
            meta["cells"] = [c for c in meta["cells"] if c.get("cell") in cells]
        meta["trials_done"] = meta["trials_planned"] = len(trials)
        meta.pop("interrupted", None)
        return Result(tables, self.config, meta)

    # -- tables ------------------------------------------------------------------

    @property
    def trials(self) -> pd.DataFrame:
        return self.tables["trials"]

    @property
    def attempts(self) -> pd.DataFrame:
        return self.tables["attempts"]

    @property
    def chunks(self) -> pd.DataFrame:
        return self.tables["chunks"]

    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"]

    @property
    def server(self) -> pd.DataFrame:
        return self.tables["server"]

    @property
    def connection(self) -> pd.DataFrame:
        return self.tables["connection"]

    @property
    def deadlines(self) -> pd.DataFrame:
        """The deadlines the client armed, per attempt (empty for sources that do not record them)."""
        return self.tables["deadlines"]

    @property
    def proxy(self) -> pd.DataFrame:
        return self.tables["proxy"]

    @property
    def complete(self) -> bool:
        """False if the run was interrupted (or crashed) before every trial finished."""
        return not self.meta.get("interrupted") and self.meta.get("trials_done") == self.meta.get(
            "trials_planned", self.meta.get("trials_done")
        )

    @property
    def cells(self) -> pd.DataFrame:
        """One row per cell: index, content key and labels."""
        rows = self.meta.get("cells")
        if rows:
            return pd.DataFrame(rows)
        cols = ["cell", "scenario", "network", "policy"]
        return self.trials[cols].drop_duplicates("cell").reset_index(drop=True)

    # -- analysis ----------------------------------------------------------------

    def outcomes(self, by: str | Sequence[str] = ("scenario", "network", "policy")) -> pd.DataFrame:
        """Counts of each ``phase/cause`` per group (rows) as a wide table."""
        by = [by] if isinstance(by, str) else list(by)
        t = self.trials.assign(outcome=self.trials["phase"] + "/" + self.trials["cause"])
        return t.groupby(by, sort=False)["outcome"].value_counts().unstack(fill_value=0)

    def metrics(self, *, ok_only: bool = False, within_budget: bool = True) -> pd.DataFrame:
        """Streaming metrics per cell: count, mean, p50, p90, p99 and max of each.

        One row per (cell, metric). The metrics (names follow vLLM's benchmark
        conventions; the kit counts body chunks and SSE events, not tokens):

        - ``ttfb_s``: call start to the response headers of the last attempt;
        - ``first_chunk_s``: call start to the first body byte of the last attempt (TTFT at the HTTP body);
        - ``first_event_s``: call start to the first parsed SSE event of the last attempt (pings count);
        - ``e2e_s``: call start to the end of the call (the trials table's ``duration_s``);
        - ``inter_chunk_gap_s``: every gap between consecutive body chunks of the last
          attempt, pooled over the cell's trials (vLLM's ITL with chunks for tokens;
          llmperf's "ITL" is a per-request mean and genai-perf's is TPOT);
        - ``tpot_s``: per trial, (last event - first event) / (events - 1), then the
          distribution over trials (vLLM's TPOT = (E2E - TTFT) / (N - 1), events for tokens).

        Percentiles are numpy's linear interpolation (as vLLM reports them). Undefined
        values (no body, fewer than two events) are left out of ``n``. ``ok_only``:
        only trials whose outcome is ``done/ok``. ``within_budget`` (default): trials the
        kit itself distorted beyond its fidelity budget (``trials["within_budget"]``
        False) are left out of every figure, ``ok_rate`` included; ``excluded`` counts
        them per cell (``trials`` counts all). See :data:`STREAM_METRICS`.
        """
        t = self.trials
        flagged = (
            ~t["within_budget"].astype(bool)
            if within_budget and "within_budget" in t.columns
            else pd.Series(False, index=t.index)
        )
        excluded = flagged.groupby(t["cell"]).sum()
        totals = t.groupby("cell").size()
        labels = t.drop_duplicates("cell").set_index("cell")[["scenario", "network", "policy"]]
        t = t[~flagged]
        if ok_only:
            t = t[t["ok"]]
        last = t[["trial_id", "attempts"]].rename(columns={"attempts": "attempt"})
        gaps = self.chunks.merge(last, on=["trial_id", "attempt"])[["trial_id", "gap"]]
        gaps = gaps.merge(t[["trial_id", "cell"]], on="trial_id")
        rows = []
        for cell in labels.index.sort_values():
            g = t[t["cell"] == cell]
            series = {
                "ttfb_s": g["ttfb_s"],
                "first_chunk_s": g["first_chunk_s"],
                "first_event_s": g["first_event_s"],
                "e2e_s": g["duration_s"],
                "inter_chunk_gap_s": gaps.loc[gaps["cell"] == cell, "gap"],
                "tpot_s": g["tpot_s"],
            }
            for name, s in series.items():
                v = s.dropna().to_numpy(dtype="float64")
                q = np.percentile(v, [50, 90, 99]) if len(v) else [np.nan] * 3
                rows.append(
                    {
                        "cell": cell,
                        **labels.loc[cell].to_dict(),
                        "trials": int(totals.get(cell, 0)),
                        "excluded": int(excluded.get(cell, 0)),
                        "ok_rate": float(g["ok"].mean()) if len(g) else np.nan,
                        "metric": name,
                        "n": len(v),
                        "mean": float(v.mean()) if len(v) else np.nan,
                        "p50": float(q[0]),
                        "p90": float(q[1]),
                        "p99": float(q[2]),
                        "max": float(v.max()) if len(v) else np.nan,
                    }
                )
        cols = [
            "cell",
            "scenario",
            "network",
            "policy",
            "trials",
            "excluded",
            "ok_rate",
            "metric",
            "n",
            "mean",
            "p50",
            "p90",
            "p99",
            "max",
        ]
        out = pd.DataFrame(rows, columns=cols)
        out.attrs["excluded"] = int(flagged.sum())  # trials over the fidelity budget, left out
        return out

    def fidelity(self) -> pd.DataFrame:
        """The kit's own distortion per cell: how far each vantage it owns ran late.

        One row per cell: ``trials``, ``within_budget`` and ``over_budget`` (counts),
        then the p50 / p99 / max of ``kit_added_s`` (the worst of the three per trial) and
        the p99 of ``server_late_s``, ``proxy_late_s`` (NaN without a proxy) and
        ``client_lag_s``, in seconds. ``budget_s`` is the run's budget; ``holds`` is True
        when the cell's ``kit_added_s`` p99 is within it.
        """
        t = self.trials
        cols = ["cell", "scenario", "network", "policy", "trials", "within_budget", "over_budget"]
        stats = [
            "kit_added_p50_s",
            "kit_added_p99_s",
            "kit_added_max_s",
            "server_late_p99_s",
            "proxy_late_p99_s",
            "client_lag_p99_s",
            "budget_s",
            "holds",
        ]
        if "kit_added_s" not in t.columns:
            return pd.DataFrame(columns=cols + stats)
        budget = float(self.meta.get("budget_s") or _DEFAULT_BUDGET)

        def q(s: pd.Series, p: float) -> float:
            v = s.dropna().to_numpy(dtype="float64")
            return float(np.percentile(v, p)) if len(v) else np.nan

        rows = []
        for cell, g in t.groupby("cell", sort=True):
            within = int(g["within_budget"].astype(bool).sum())
            p99 = q(g["kit_added_s"], 99)
            rows.append(
                {
                    "cell": cell,
                    **g.iloc[0][["scenario", "network", "policy"]].to_dict(),
                    "trials": len(g),
                    "within_budget": within,
                    "over_budget": len(g) - within,
                    "kit_added_p50_s": q(g["kit_added_s"], 50),
                    "kit_added_p99_s": p99,
                    "kit_added_max_s": float(g["kit_added_s"].max()) if g["kit_added_s"].notna().any() else np.nan,
                    "server_late_p99_s": q(g["server_late_s"], 99),
                    "proxy_late_p99_s": q(g["proxy_late_s"], 99),
                    "client_lag_p99_s": q(g["client_lag_s"], 99),
                    "budget_s": budget,
                    "holds": bool(np.isnan(p99) or p99 <= budget),
                }
            )
        return pd.DataFrame(rows, columns=cols + stats)

    # -- persistence and export --------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False, format: str = "parquet", redact: bool = True) -> Path:
        """Write a bundle folder (see :mod:`kit.bundle`); refuses an existing path unless ``overwrite``."""
        from .bundle import save

        return save(self, path, overwrite=overwrite, format=format, redact=redact)

    def to_har(self, path: str | Path | None = None, *, trial_ids: Iterable[str] | None = None) -> dict[str, Any]:
        """HAR 1.2 of every attempt (or of ``trial_ids``); written to ``path`` if given."""
        from .har import result_to_har

        return result_to_har(self, path, trial_ids=trial_ids)

    def report(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """A standalone offline HTML report (metrics table and charts inline)."""
        from .report import write_report

        return write_report(self, path, overwrite=overwrite)

    def equals(self, other: Result) -> bool:
        """True if every table is equal (values and dtypes) to ``other``'s."""
        return all(
            self.tables[t].equals(other.tables[t]) and _same_dtypes(self.tables[t], other.tables[t]) for t in TABLES
        )

    def __repr__(self) -> str:
        t = self.trials
        ok = int(t["ok"].sum()) if len(t) else 0
        state = "" if self.complete else " (incomplete)"
        return f"<Result {len(t)} trials in {t['cell'].nunique() if len(t) else 0} cells, {ok} ok{state}>"

    def _repr_html_(self) -> str:
        return f"<p><code>{self!r}</code></p>" + self.outcomes().to_html() if len(self.trials) else repr(self)


def _same_dtypes(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return list(a.columns) == list(b.columns) and [str(x) for x in a.dtypes] == [str(x) for x in b.dtypes]
