"""The result of an experiment: tidy DataFrames of every trial, and streaming metrics.

Tables (one row per ...):

- ``trials``: logical call. ``trial_id, cell, trial, seed, scenario, network, policy``
  (labels), the cell's parameters as flat columns (``scenario.<field>``,
  ``network.<toxic>[.<param>]``, ``policy.<field>``), the final outcome (``phase, cause,
  ok, message``), ``attempts`` and the :data:`~kit.METRICS` of the call
  (``duration_s, ttfb_s, first_chunk_s, first_event_s, bytes, chunks, events,
  max_gap_s``), then ``tpot_s``, ``start_ns`` and ``url``.
- ``attempts``, ``chunks``, ``events``, ``server``, ``connection``: the
  :class:`~kit.Trace` views of every trial with a leading ``trial_id`` (``attempts``
  adds ``method, url, start_ns, end_ns, response_headers, error``).
- ``proxy``: the forward log of each network proxy, with a leading ``network`` label.

Every table has fixed dtypes (``str`` for text, ``int64``, ``float64``, ``bool``,
``Int64`` where a value may be missing), so a saved and reloaded Result is equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["STREAM_METRICS", "TABLES", "Result"]

TABLES = ("trials", "attempts", "chunks", "events", "server", "connection", "proxy")

# fixed columns and dtypes of each table (trials adds the flat parameter columns)
TRIAL_HEAD = {
    "trial_id": "str",
    "cell": "int64",
    "trial": "int64",
    "seed": "int64",
    "scenario": "str",
    "network": "str",
    "policy": "str",
}
TRIAL_TAIL = {
    "phase": "str",
    "cause": "str",
    "ok": "bool",
    "message": "str",
    "attempts": "int64",
    "duration_s": "float64",
    "ttfb_s": "float64",
    "first_chunk_s": "float64",
    "first_event_s": "float64",
    "bytes": "int64",
    "chunks": "int64",
    "events": "int64",
    "max_gap_s": "float64",
    "tpot_s": "float64",
    "start_ns": "int64",
    "url": "str",
}
SCHEMAS: dict[str, dict[str, str]] = {
    "attempts": {
        "trial_id": "str",
        "attempt": "int64",
        "request_id": "str",
        "wait_before": "float64",
        "start": "float64",
        "connected": "float64",
        "headers": "float64",
        "first_chunk": "float64",
        "first_event": "float64",
        "end": "float64",
        "status": "Int64",
        "framing": "str",
        "chunks_received": "int64",
        "events_received": "int64",
        "bytes_received": "int64",
        "first_event_type": "str",
        "saw_terminator": "bool",
        "phase": "str",
        "cause": "str",
        "ok": "bool",
        "message": "str",
        "method": "str",
        "url": "str",
        "start_ns": "int64",
        "end_ns": "Int64",
        "response_headers": "str",
        "error": "str",
    },
    "chunks": {
        "trial_id": "str",
        "attempt": "int64",
        "request_id": "str",
        "seq": "int64",
        "t_ns": "int64",
        "t": "float64",
        "t_attempt": "float64",
        "size": "int64",
        "cum_bytes": "int64",
        "gap": "float64",
    },
    "events": {
        "trial_id": "str",
        "attempt": "int64",
        "request_id": "str",
        "seq": "int64",
        "t_ns": "int64",
        "t": "float64",
        "t_attempt": "float64",
        "type": "str",
        "size": "int64",
    },
    "server": {
        "trial_id": "str",
        "attempt": "int64",
        "request_id": "str",
        "connection": "int64",
        "scenario": "str",
        "server_attempt": "int64",
        "seq": "int64",
        "kind": "str",
        "nbytes": "int64",
        "scheduled_ns": "int64",
        "t_ns": "int64",
        "t": "float64",
        "late_s": "float64",
    },
    "connection": {
        "trial_id": "str",
        "attempt": "int64",
        "request_id": "str",
        "name": "str",
        "t_ns": "int64",
        "t": "float64",
    },
}

STREAM_METRICS: dict[str, str] = {
    "ttfb_s": "TTFB: call start to the response headers (status line) of the last attempt, s. "
    "Like a browser's 'waiting (TTFB)' but measured from the call start, retries included.",
    "first_chunk_s": "time to first chunk: call start to the first body byte of the last attempt, s "
    "(vLLM/genai-perf 'TTFT' measured at the HTTP body rather than the first token).",
    "first_event_s": "time to first event: call start to the first parsed SSE event (or NDJSON line) "
    "of the last attempt, s; pings count, so this can precede the first content delta.",
    "e2e_s": "end-to-end latency: call start to the end of the call (last byte, error or timeout), s "
    "(vLLM's E2EL; the trials table calls it duration_s).",
    "inter_chunk_gap_s": "inter-chunk gap: every gap between consecutive body chunks of the last attempt "
    "(all gaps of all trials of the cell pooled; the first chunk has no gap), s. vLLM's ITL with "
    "chunks for tokens (llmperf's 'ITL' is per-request mean, genai-perf's is TPOT).",
    "tpot_s": "time per output event: per trial (last event - first event) / (events - 1) over the last "
    "attempt's parsed events, then the distribution over trials, s. vLLM's TPOT formula "
    "(E2E - TTFT) / (N - 1) with SSE events for tokens and the stream's last event for E2E.",
}


def _empty(schema: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in schema.items()})


def _typed(data: Mapping[str, Sequence[Any]], schema: Mapping[str, str]) -> pd.DataFrame:
    cols = {}
    for c, d in schema.items():
        values = data.get(c, [])
        if d == "Int64":
            cols[c] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif d == "str":
            cols[c] = pd.Series(values, dtype="object").astype("str")
        elif d == "float64":
            cols[c] = np.asarray([np.nan if v is None else v for v in values], dtype="float64")
        else:
            cols[c] = np.asarray(values, dtype=d)
    df = pd.DataFrame(cols)
    return df if len(df.columns) else _empty(schema)


def conform(df: pd.DataFrame, schema: Mapping[str, str]) -> pd.DataFrame:
    """``df`` with exactly ``schema``'s dtypes (a loaded table gets the saved ones)."""
    out = {}
    for c, d in schema.items():
        if c not in df.columns:
            raise KeyError(c)
        s = df[c]
        if str(s.dtype) != d:
            s = s.astype(d)
        out[c] = s
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def _param_dtype(values: list[Any]) -> tuple[list[Any], str]:
    """A stable dtype for a flat parameter column (it varies with the grid)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if present and all(isinstance(v, bool) for v in present) and len(present) == len(values):
        return values, "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present) and len(present) == len(values):
        return values, "int64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return values, "float64"
    return [v if v is None or isinstance(v, str) else json.dumps(v) for v in values], "str"


# ----------------------------------------------------------------- building tables


def tables_from_records(
    records: Sequence[Mapping[str, Any]], cells: Sequence[Any]
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The tables of a Result from trial records (see :func:`kit.experiment.trace_record`).

    Returns the tables and the trials table's schema (which has grid-specific columns).
    """
    from .experiment import flat_params

    records = sorted(records, key=lambda r: (r["cell"], r["trial"]))
    by_cell = {c.index: c for c in cells}
    params = {}
    for c in cells:
        p: dict[str, Any] = {}
        for kind, value in (("scenario", c.scenario), ("network", c.network), ("policy", c.policy)):
            p.update(flat_params(kind, value))
        params[c.index] = p
    param_cols: list[str] = []
    for kind in ("scenario", "network", "policy"):
        for c in cells:
            for k in params[c.index]:
                if k.startswith(kind + ".") and k not in param_cols:
                    param_cols.append(k)

    T: dict[str, list[Any]] = {c: [] for c in [*TRIAL_HEAD, *param_cols, *TRIAL_TAIL]}
    A: dict[str, list[Any]] = {c: [] for c in SCHEMAS["attempts"]}
    C: dict[str, list[Any]] = {c: [] for c in SCHEMAS["chunks"]}
    E: dict[str, list[Any]] = {c: [] for c in SCHEMAS["events"]}
    S: dict[str, list[Any]] = {c: [] for c in SCHEMAS["server"]}
    N: dict[str, list[Any]] = {c: [] for c in SCHEMAS["connection"]}

    def rel(ns: int | None, start: int) -> float:
        return np.nan if ns is None else (ns - start) / 1e9

    for r in records:
        tid, start = r["trial_id"], r["start_ns"]
        cell = by_cell[r["cell"]]
        for a in r["attempts"]:
            n_chunks, n_events = len(a["chunk_t"]), len(a["event_t"])
            rid, idx, a0 = a["request_id"], a["index"], a["start_ns"]
            connected = next((t for n, t in a["connection"] if n == "connection.connect_tcp.complete"), None)
            A["trial_id"].append(tid)
            A["attempt"].append(idx)
            A["request_id"].append(rid)
            A["wait_before"].append(a["wait_before"])
            A["start"].append(rel(a0, start))
            A["connected"].append(rel(connected, start))
            A["headers"].append(rel(a["headers_ns"], start))
            A["first_chunk"].append(rel(a["chunk_t"][0] if n_chunks else None, start))
            A["first_event"].append(rel(a["event_t"][0] if n_events else None, start))
            A["end"].append(rel(a["end_ns"], start))
            A["status"].append(a["status"])
            A["framing"].append(a["framing"])
            A["chunks_received"].append(n_chunks)
            A["events_received"].append(n_events)
            A["bytes_received"].append(sum(a["chunk_size"]))
            A["first_event_type"].append(a["event_type"][0] if n_events else None)
            A["saw_terminator"].append(bool(a["saw_terminator"]))
            A["phase"].append(a["phase"])
            A["cause"].append(a["cause"])
            A["ok"].append(a["phase"] == "done" and a["cause"] == "ok")
            A["message"].append(a["message"])
            A["method"].append(a["method"])
            A["url"].append(a["url"])
            A["start_ns"].append(a0)
            A["end_ns"].append(a["end_ns"])
            A["response_headers"].append(json.dumps(a["headers"]) if a["headers"] else None)
            A["error"].append(a["error"])
            if n_chunks:
                ct = a["chunk_t"]
                C["trial_id"] += [tid] * n_chunks
                C["attempt"] += [idx] * n_chunks
                C["request_id"] += [rid] * n_chunks
                C["seq"] += range(n_chunks)
                C["t_ns"] += ct
                C["t"] += [(t - start) / 1e9 for t in ct]
                C["t_attempt"] += [(t - a0) / 1e9 for t in ct]
                C["size"] += a["chunk_size"]
                C["cum_bytes"] += np.cumsum(a["chunk_size"]).tolist()
                C["gap"] += [np.nan] + [(ct[i] - ct[i - 1]) / 1e9 for i in range(1, n_chunks)]
            if n_events:
                et = a["event_t"]
                E["trial_id"] += [tid] * n_events
                E["attempt"] += [idx] * n_events
                E["request_id"] += [rid] * n_events
                E["seq"] += range(n_events)
                E["t_ns"] += et
                E["t"] += [(t - start) / 1e9 for t in et]
                E["t_attempt"] += [(t - a0) / 1e9 for t in et]
                E["type"] += a["event_type"]
                E["size"] += a["event_size"]
            for e in a["server"]:
                s_rid, conn, scen, s_att, seq, kind, nbytes, sched, t_ns = e
                S["trial_id"].append(tid)
                S["attempt"].append(idx)
                S["request_id"].append(s_rid)
                S["connection"].append(conn)
                S["scenario"].append(scen)
                S["server_attempt"].append(s_att)
                S["seq"].append(seq)
                S["kind"].append(kind)
                S["nbytes"].append(nbytes)
                S["scheduled_ns"].append(sched)
                S["t_ns"].append(t_ns)
                S["t"].append((t_ns - start) / 1e9)
                S["late_s"].append((t_ns - sched) / 1e9)
            for name, t_ns in a["connection"]:
                N["trial_id"].append(tid)
                N["attempt"].append(idx)
                N["request_id"].append(rid)
                N["name"].append(name)
                N["t_ns"].append(t_ns)
                N["t"].append((t_ns - start) / 1e9)

        last = r["attempts"][-1] if r["attempts"] else None
        T["trial_id"].append(tid)
        T["cell"].append(r["cell"])
        T["trial"].append(r["trial"])
        T["seed"].append(r["seed"])
        T["scenario"].append(cell.scenario_label)
        T["network"].append(cell.network_label)
        T["policy"].append(cell.policy_label)
        p = params[cell.index]
        for k in param_cols:
            T[k].append(p.get(k))
        if last is None:
            phase, cause, message = "connect", "cancelled", "no attempt completed"
        else:
            phase, cause, message = last["phase"], last["cause"], last["message"]
        T["phase"].append(phase)
        T["cause"].append(cause)
        T["ok"].append(phase == "done" and cause == "ok")
        T["message"].append(message)
        T["attempts"].append(len(r["attempts"]))
        T["duration_s"].append((r["end_ns"] - start) / 1e9)
        ct = last["chunk_t"] if last else []
        et = last["event_t"] if last else []
        T["ttfb_s"].append(rel(last["headers_ns"], start) if last else np.nan)
        T["first_chunk_s"].append(rel(ct[0], start) if ct else np.nan)
        T["first_event_s"].append(rel(et[0], start) if et else np.nan)
        T["bytes"].append(sum(last["chunk_size"]) if last else 0)
        T["chunks"].append(len(ct))
        T["events"].append(len(et))
        T["max_gap_s"].append(max((ct[i] - ct[i - 1]) / 1e9 for i in range(1, len(ct))) if len(ct) > 1 else np.nan)
        T["tpot_s"].append((et[-1] - et[0]) / 1e9 / (len(et) - 1) if len(et) > 1 else np.nan)
        T["start_ns"].append(start)
        T["url"].append(r["url"])

    trial_schema = dict(TRIAL_HEAD)
    for k in param_cols:
        T[k], trial_schema[k] = _param_dtype(T[k])
    trial_schema.update(TRIAL_TAIL)
    tables = {
        "trials": _typed(T, trial_schema),
        "attempts": _typed(A, SCHEMAS["attempts"]),
        "chunks": _typed(C, SCHEMAS["chunks"]),
        "events": _typed(E, SCHEMAS["events"]),
        "server": _typed(S, SCHEMAS["server"]),
        "connection": _typed(N, SCHEMAS["connection"]),
    }
    return tables, trial_schema


def proxy_table(logs: Mapping[str, pd.DataFrame | None]) -> pd.DataFrame:
    """The proxies' forward logs in one table with a leading ``network`` label."""
    frames = []
    for label, df in logs.items():
        if df is None:
            continue
        df = df.copy()
        df.insert(0, "network", label)
        frames.append(df)
    if not frames:
        return pd.DataFrame({"network": pd.Series(dtype="str")})
    out = pd.concat(frames, ignore_index=True)
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].astype("str")
    return out


# ------------------------------------------------------------------------- Result


class Result:
    """What an :class:`~kit.Experiment` run produced: tidy tables, the config, the run's metadata.

    ``result.trials`` (one row per logical call), ``attempts``, ``chunks``, ``events``,
    ``server``, ``connection``, ``proxy``; :meth:`metrics` gives named streaming metrics
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
        experiment: Any,
        records: Sequence[Mapping[str, Any]],
        *,
        meta: Mapping[str, Any] | None = None,
        proxy_logs: Mapping[str, pd.DataFrame | None] | None = None,
    ) -> Result:
        tables, _ = tables_from_records(records, experiment.cells)
        tables["proxy"] = proxy_table(proxy_logs or {})
        meta = dict(meta or {})
        meta.setdefault("trials_planned", len(experiment))
        meta["trials_done"] = len(records)
        meta["cells"] = [
            {
                "cell": c.index,
                "key": c.key,
                "scenario": c.scenario_label,
                "network": c.network_label,
                "policy": c.policy_label,
            }
            for c in experiment.cells
        ]
        return cls(tables, experiment.to_dict(), meta)

    @classmethod
    def from_traces(cls, traces: Iterable[Any], *, ids: Iterable[str] | None = None) -> Result:
        """A Result holding single traces (one trial each, cell 0), e.g. for HAR export."""
        from .experiment import Cell, trace_record
        from .policy import Policy

        traces = list(traces)
        ids = list(ids) if ids is not None else [t.label or f"trace-{i}" for i, t in enumerate(traces)]
        records = [trace_record(t, tid, 0, i, 0) for i, (t, tid) in enumerate(zip(traces, ids, strict=True))]
        from .scenarios import Scenario

        sc = Scenario.from_dict(traces[0].scenario) if traces and traces[0].scenario else Scenario()
        pol = Policy.from_dict(traces[0].policy) if traces and traces[0].policy else Policy()
        cell = Cell(0, sc, None, pol, traces[0].label or sc.label if traces else "", "direct", pol.label)
        tables, _ = tables_from_records(records, [cell])
        tables["proxy"] = proxy_table({})
        return cls(tables, {}, {"source": "traces", "trials_done": len(records)})

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
    def proxy(self) -> pd.DataFrame:
        return self.tables["proxy"]

    @property
    def complete(self) -> bool:
        """False if the run was interrupted (or crashed) before every trial finished."""
        return not self.meta.get("interrupted") and self.meta.get("trials_done") == self.meta.get(
            "trials_planned", self.meta.get("trials_done")
        )

    @property
    def experiment(self) -> Any:
        """The :class:`~kit.Experiment` this result came from (rebuilt from the stored config)."""
        from .experiment import Experiment

        return Experiment.from_dict(self.config)

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

    def metrics(self, *, ok_only: bool = False) -> pd.DataFrame:
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
        only trials whose outcome is ``done/ok``. See :data:`STREAM_METRICS`.
        """
        t = self.trials
        if ok_only:
            t = t[t["ok"]]
        last = t[["trial_id", "attempts"]].rename(columns={"attempts": "attempt"})
        gaps = self.chunks.merge(last, on=["trial_id", "attempt"])[["trial_id", "gap"]]
        gaps = gaps.merge(t[["trial_id", "cell"]], on="trial_id")
        labels = t.drop_duplicates("cell").set_index("cell")[["scenario", "network", "policy"]]
        rows = []
        for cell, g in t.groupby("cell", sort=True):
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
                        "trials": len(g),
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
            "ok_rate",
            "metric",
            "n",
            "mean",
            "p50",
            "p90",
            "p99",
            "max",
        ]
        return pd.DataFrame(rows, columns=cols)

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
