"""Tables: the column schemas, the metric glossary and the one function records -> DataFrames.

Every tidy table of the kit is built here, from :mod:`kit.records`: the views of one
:class:`~kit.Trace`, the tables of a :class:`~kit.Result` (experiment, HAR import, CSV
evidence), and so the charts, widgets, bundles and reports that read them. :func:`merge`
joins tables built in several places (a worker's Parquet parts, a resumed run) into
what one :func:`build` of all their records makes.

Tables (one row per ...):

- ``trials``: logical call. ``trial_id, cell, trial, seed, scenario, network, policy``
  (labels), the cell's parameters as flat columns (``scenario.<field>``,
  ``network.<toxic>[.<param>]``, ``policy.<field>``), the final outcome (``phase, cause,
  ok, message``), ``attempts`` and the call metrics of :data:`METRICS`
  (``duration_s, ttfb_s, first_chunk_s, first_event_s, bytes, chunks, events,
  max_gap_s, tpot_s``), the kit's own distortion (``server_late_s, proxy_late_s,
  client_lag_s, kit_added_s``: NaN where unknown; ``within_budget``), then ``start_ns``
  and ``url``.
- ``attempts``: HTTP request (timings in s since the call start, status, framing, outcome).
- ``chunks``, ``events``: received body chunk, parsed event.
- ``server``: fault-server log entry; ``connection``: httpcore connection event.
- ``deadlines``: a deadline the client armed (``phase``, ``cause``, ``limit_s``, due at
  ``at_ns`` / ``t``) and whether it is the one that ``fired`` (ended the attempt); the
  idle limit's re-arms at each chunk are one row, its last. Empty for attempts the kit
  did not drive (SDKs, HAR, CSV) and for bundles saved before it was recorded.
- ``proxy``: the forward log of each network proxy, with a leading ``network`` label.

Every table has fixed dtypes (``str`` for text, ``int64``, ``float64``, ``bool``,
``Int64`` where a value may be missing), so a saved and reloaded table is equal.

(Just over 600 lines, on purpose: the schemas and the two functions that make tables,
:func:`build` and :func:`merge`, must agree column for column and dtype for dtype.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._clock import ns_to_s
from ._params import canonical, content_key, flat_params, label_all
from .policy import Policy
from .records import AttemptRecord, CellLabels, TrialRecord

__all__ = [
    "CALL_METRICS",
    "METRICS",
    "SCHEMAS",
    "STREAM_METRICS",
    "TABLES",
    "build",
    "conform",
    "merge",
    "proxy_table",
    "traces_to_records",
]

TABLES = ("trials", "attempts", "chunks", "events", "server", "connection", "deadlines", "proxy")

# The metric glossary: every named metric the kit reports, defined once.
METRICS: dict[str, str] = {
    "ttfb_s": "TTFB: call start to the response headers (status line) of the last attempt, s. "
    "Like a browser's 'waiting (TTFB)' but measured from the call start, retries included. The call "
    "starts after the client's set-up (Trace.setup_s: one-off TLS context and imports, building its "
    "client), which is not latency.",
    "first_chunk_s": "time to first chunk: call start to the first body byte of the last attempt, s "
    "(vLLM/genai-perf 'TTFT' measured at the HTTP body rather than the first token).",
    "first_event_s": "time to first event: call start to the first parsed SSE event (or NDJSON line) "
    "of the last attempt, s; pings count, so this can precede the first content delta.",
    "duration_s": "call start to the end of the call (last byte, error or timeout), retries and waits included, s.",
    "e2e_s": "end-to-end latency: the distribution of duration_s over a cell's trials, s (vLLM's E2EL).",
    "bytes": "body bytes received by the last attempt (after HTTP de-chunking).",
    "chunks": "body chunks received by the last attempt (one per socket read that carried body bytes).",
    "events": "events parsed by the last attempt (SSE events or NDJSON lines, pings included).",
    "max_gap_s": "largest gap between consecutive body chunks of the last attempt, after the first, s.",
    "inter_chunk_gap_s": "inter-chunk gap: every gap between consecutive body chunks of the last attempt "
    "(all gaps of all trials of the cell pooled; the first chunk has no gap), s. vLLM's ITL with "
    "chunks for tokens (llmperf's 'ITL' is per-request mean, genai-perf's is TPOT).",
    "tpot_s": "time per output event: per trial (last event - first event) / (events - 1) over the last "
    "attempt's parsed events, then the distribution over trials, s. vLLM's TPOT formula "
    "(E2E - TTFT) / (N - 1) with SSE events for tokens and the stream's last event for E2E.",
    "attempts": "HTTP requests made for this call.",
}
# what one call reports (Trace.summary) and what a cell's distribution reports (Result.metrics)
CALL_METRICS = (
    "ttfb_s",
    "first_chunk_s",
    "first_event_s",
    "duration_s",
    "bytes",
    "chunks",
    "events",
    "max_gap_s",
    "attempts",
)
STREAM_METRICS = ("ttfb_s", "first_chunk_s", "first_event_s", "e2e_s", "inter_chunk_gap_s", "tpot_s")

# fixed columns and dtypes of each table (trials adds the flat parameter columns between head and tail)
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
    "server_late_s": "float64",
    "proxy_late_s": "float64",
    "client_lag_s": "float64",
    "kit_added_s": "float64",
    "within_budget": "bool",
    "start_ns": "int64",
    "url": "str",
}
# the leading columns of a time-stamped series (chunks, events)
_TIMED = {
    "trial_id": "str",
    "attempt": "int64",
    "request_id": "str",
    "seq": "int64",
    "t_ns": "int64",
    "t": "float64",
    "t_attempt": "float64",
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
        "request_headers": "str",
        "local_addr": "str",
    },
    "chunks": {
        **_TIMED,
        "size": "int64",
        "cum_bytes": "int64",
        "gap": "float64",
    },
    "events": {
        **_TIMED,
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
        "body_bytes": "Int64",
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
    "deadlines": {
        "trial_id": "str",
        "attempt": "int64",
        "request_id": "str",
        "phase": "str",
        "cause": "str",
        "limit_s": "float64",
        "at_ns": "int64",
        "t": "float64",
        "fired": "bool",
    },
}
# the fault server's own log (FaultServer.log_df): one row per ServerLogEntry
SERVER_LOG_SCHEMA = {
    "request_id": "str",
    "connection": "int64",
    "scenario": "str",
    "attempt": "int64",
    "seq": "int64",
    "kind": "str",
    "nbytes": "int64",
    "body_bytes": "Int64",
    "scheduled_ns": "int64",
    "t_ns": "int64",
}


def empty(schema: Mapping[str, str]) -> pd.DataFrame:
    """A table with no rows and ``schema``'s columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in schema.items()})


def typed(data: Mapping[str, Sequence[Any]], schema: Mapping[str, str]) -> pd.DataFrame:
    """Columns of plain values as a table with exactly ``schema``'s dtypes (None -> missing)."""
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
    return df if len(df.columns) else empty(schema)


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


def param_columns(cells: Sequence[CellLabels]) -> list[str]:
    """The flat parameter columns of ``cells``: scenario's, then network's, then policy's."""
    cols: list[str] = []
    for kind in ("scenario", "network", "policy"):
        for c in cells:
            for k in c.params:
                if k.startswith(kind + ".") and k not in cols:
                    cols.append(k)
    return cols


def _rel(ns: int | None, start: int) -> float:
    return np.nan if ns is None else ns_to_s(ns - start)


def build(
    records: Sequence[TrialRecord], cells: Sequence[CellLabels]
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The tables of ``records`` (every trial's ``cell`` must be the index of one of ``cells``).

    Returns the tables (all but ``proxy``) and the trials table's schema (which has the
    grid's parameter columns). Trials are ordered by (cell, trial).
    """
    records = sorted(records, key=lambda r: (r.cell, r.trial))
    by_cell = {c.index: c for c in cells}
    param_cols = param_columns(cells)
    trial_schema = {**TRIAL_HEAD, **dict.fromkeys(param_cols, ""), **TRIAL_TAIL}
    cols: dict[str, dict[str, list[Any]]] = {name: {c: [] for c in SCHEMAS[name]} for name in SCHEMAS}
    cols["trials"] = {c: [] for c in trial_schema}
    for r in records:
        cell = by_cell[r.cell]
        for a in r.attempts:
            _attempt_rows(cols, r.trial_id, r.start_ns, a)
        _append(cols["trials"], _trial_row(r, cell, param_cols))
    for k in param_cols:
        cols["trials"][k], trial_schema[k] = _param_dtype(cols["trials"][k])
    out = {name: typed(cols[name], trial_schema if name == "trials" else SCHEMAS[name]) for name in cols}
    return {name: out[name] for name in TABLES if name in out}, trial_schema


def merge(parts: Sequence[Mapping[str, pd.DataFrame]], cells: Sequence[CellLabels]) -> dict[str, pd.DataFrame]:
    """The tables (all but ``proxy``) of several :func:`build` results, as one ``build`` of all their records.

    For tables built where the trials ran (a worker's Parquet parts): equal, dtypes
    included, to building every record here. Trials are ordered by (cell, trial), every
    other table's rows by their trial in that order (a trial's own rows keep theirs);
    the parameter columns get the dtype the values of all parts give them (a part of
    one cell may have typed them narrower). A trial in several parts is kept once (the first).
    """
    parts = [p for p in parts if len(p["trials"])]
    if not parts:
        return build([], cells)[0]
    fixed = [*TRIAL_HEAD, *TRIAL_TAIL]
    trials = pd.concat([p["trials"][fixed] for p in parts], ignore_index=True)
    if trials["trial_id"].duplicated().any():
        parts = _first_of_each(parts)
        trials = pd.concat([p["trials"][fixed] for p in parts], ignore_index=True)
    trials = trials.sort_values(["cell", "trial"], kind="stable").reset_index(drop=True)
    param_cols = param_columns(cells)
    schema = {**TRIAL_HEAD, **dict.fromkeys(param_cols, ""), **TRIAL_TAIL}
    by_cell = {c.index: c for c in cells}
    codes, present = pd.factorize(trials["cell"])
    params = {}
    for k in param_cols:  # as build does (the cell's value, one dtype for the column), once per cell
        values, schema[k] = _param_dtype([by_cell[c].params.get(k) for c in present.tolist()])
        params[k] = typed({k: values}, {k: schema[k]})[k].take(codes).reset_index(drop=True)
    trials = pd.concat([trials, pd.DataFrame(params, index=trials.index)], axis=1)
    out = {"trials": conform(trials, schema)}
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(trials["trial_id"])
    for name, table_schema in SCHEMAS.items():
        frames = [p[name] for p in parts if len(p[name])]
        if not frames:
            out[name] = empty(table_schema)
            continue
        df = pd.concat(frames, ignore_index=True)
        rank = pc.index_in(pa.array(df["trial_id"]), value_set=ids).to_numpy(zero_copy_only=False)
        out[name] = conform(df.take(np.argsort(rank, kind="stable")).reset_index(drop=True), table_schema)
    return {name: out[name] for name in TABLES if name in out}


def _first_of_each(parts: Sequence[Mapping[str, pd.DataFrame]]) -> list[dict[str, pd.DataFrame]]:
    """``parts`` with the rows of a trial an earlier part holds left out (see :func:`merge`)."""
    seen: set[str] = set()
    kept = []
    for p in parts:
        ids = p["trials"]["trial_id"]
        new = ~ids.isin(seen)
        keep = set(ids[new])
        kept.append({name: df[df["trial_id"].isin(keep)] for name, df in p.items() if name in TABLES})
        seen.update(ids)
    return kept


def _append(cols: dict[str, list[Any]], row: Mapping[str, Any]) -> None:
    for k, v in row.items():
        cols[k].append(v)


def _trial_row(r: TrialRecord, cell: CellLabels, param_cols: list[str]) -> dict[str, Any]:
    """The trials-table row of one record: labels, parameters, outcome and call metrics (last attempt)."""
    start, last = r.start_ns, r.last
    ct = last.chunk_t if last else ()
    et = last.event_t if last else ()
    if last is None:
        phase, cause, message = "connect", "cancelled", "no attempt completed"
    else:
        phase, cause, message = last.phase, last.cause, last.message
    return {
        "trial_id": r.trial_id,
        "cell": r.cell,
        "trial": r.trial,
        "seed": r.seed,
        "scenario": cell.scenario,
        "network": cell.network,
        "policy": cell.policy,
        **{k: cell.params.get(k) for k in param_cols},
        "phase": phase,
        "cause": cause,
        "ok": phase == "done" and cause == "ok",
        "message": message,
        "attempts": len(r.attempts),
        "duration_s": ns_to_s(r.end_ns - start),
        "ttfb_s": _rel(last.headers_ns, start) if last else np.nan,
        "first_chunk_s": _rel(ct[0], start) if ct else np.nan,
        "first_event_s": _rel(et[0], start) if et else np.nan,
        "bytes": sum(last.chunk_size) if last else 0,
        "chunks": len(ct),
        "events": len(et),
        "max_gap_s": max(ns_to_s(ct[i] - ct[i - 1]) for i in range(1, len(ct))) if len(ct) > 1 else np.nan,
        "tpot_s": ns_to_s(et[-1] - et[0]) / (len(et) - 1) if len(et) > 1 else np.nan,
        **_fidelity_cells(r.fidelity),
        "start_ns": start,
        "url": r.url,
    }


_FIDELITY = ("server_late_s", "proxy_late_s", "client_lag_s", "kit_added_s")
FIDELITY_COLUMNS = (*_FIDELITY, "within_budget")  # trials columns a bundle older than them lacks
# columns added after bundles were saved without them: such a bundle loads with them all missing
LATER_COLUMNS: dict[str, tuple[str, ...]] = {
    "attempts": ("request_headers", "local_addr"),
    "server": ("body_bytes",),
}
# tables added after bundles were saved without them: such a bundle loads with the table empty
LATER_TABLES = ("deadlines",)


def _fidelity_cells(fid: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fidelity columns of a trial: NaN where unknown; within budget unless known to be over."""
    fid = fid or {}
    out: dict[str, Any] = {k: np.nan if fid.get(k) is None else fid[k] for k in _FIDELITY}
    out["within_budget"] = bool(fid.get("within_budget", True))
    return out


def _timed(
    cols: dict[str, list[Any]], tid: str, start: int, a: AttemptRecord, stamps: Sequence[int], **extra: list[Any]
) -> None:
    """Append the rows of one attempt's time-stamped series (chunks or events), plus ``extra`` columns."""
    n = len(stamps)
    if not n:
        return
    cols["trial_id"] += [tid] * n
    cols["attempt"] += [a.index] * n
    cols["request_id"] += [a.request_id] * n
    cols["seq"] += range(n)
    cols["t_ns"] += stamps
    cols["t"] += [ns_to_s(t - start) for t in stamps]
    cols["t_attempt"] += [ns_to_s(t - a.start_ns) for t in stamps]
    for k, v in extra.items():
        cols[k] += v


def _attempt_rows(cols: dict[str, dict[str, list[Any]]], tid: str, start: int, a: AttemptRecord) -> None:
    """Append one attempt's rows to the column lists of the attempts, chunks, events, server, connection and
    deadlines tables."""
    ct, et = list(a.chunk_t), list(a.event_t)
    _append(
        cols["attempts"],
        {
            "trial_id": tid,
            "attempt": a.index,
            "request_id": a.request_id,
            "wait_before": a.wait_before,
            "start": _rel(a.start_ns, start),
            "connected": _rel(a.connected_ns, start),
            "headers": _rel(a.headers_ns, start),
            "first_chunk": _rel(ct[0] if ct else None, start),
            "first_event": _rel(et[0] if et else None, start),
            "end": _rel(a.end_ns, start),
            "status": a.status,
            "framing": a.framing,
            "chunks_received": len(ct),
            "events_received": len(et),
            "bytes_received": sum(a.chunk_size),
            "first_event_type": a.event_type[0] if et else None,
            "saw_terminator": bool(a.saw_terminator),
            "phase": a.phase,
            "cause": a.cause,
            "ok": a.ok,
            "message": a.message,
            "method": a.method,
            "url": a.url,
            "start_ns": a.start_ns,
            "end_ns": a.end_ns,
            "response_headers": json.dumps(dict(a.headers)) if a.headers else None,
            "error": a.error,
            "request_headers": json.dumps(dict(a.request_headers)) if a.request_headers else None,
            "local_addr": a.local_addr,
        },
    )
    gaps = [np.nan] + [ns_to_s(ct[i] - ct[i - 1]) for i in range(1, len(ct))]
    _timed(
        cols["chunks"], tid, start, a, ct, size=list(a.chunk_size), cum_bytes=np.cumsum(a.chunk_size).tolist(), gap=gaps
    )
    _timed(cols["events"], tid, start, a, et, type=list(a.event_type), size=list(a.event_size))
    for e in a.server:
        _append(
            cols["server"],
            {
                "trial_id": tid,
                "attempt": a.index,
                "request_id": e.request_id,
                "connection": e.connection,
                "scenario": e.scenario,
                "server_attempt": e.attempt,
                "seq": e.seq,
                "kind": e.kind,
                "nbytes": e.nbytes,
                "body_bytes": e.body_bytes,
                "scheduled_ns": e.scheduled_ns,
                "t_ns": e.t_ns,
                "t": ns_to_s(e.t_ns - start),
                "late_s": ns_to_s(e.t_ns - e.scheduled_ns),
            },
        )
    for name, t_ns in a.connection:
        row = {"trial_id": tid, "attempt": a.index, "request_id": a.request_id, "name": name}
        _append(cols["connection"], {**row, "t_ns": t_ns, "t": ns_to_s(t_ns - start)})
    fired = a.fired
    for d in a.deadlines:
        _append(
            cols["deadlines"],
            {
                "trial_id": tid,
                "attempt": a.index,
                "request_id": a.request_id,
                "phase": d.phase,
                "cause": d.cause,
                "limit_s": d.limit_s,
                "at_ns": d.at_ns,
                "t": ns_to_s(d.at_ns - start),
                "fired": d is fired,
            },
        )


def traces_to_records(
    traces: Sequence[Any], ids: Sequence[str] | None = None
) -> tuple[list[TrialRecord], list[CellLabels]]:
    """Records and cells of single :class:`~kit.Trace` calls, one trial each.

    Traces with the same scenario and policy share a cell; each distinct pair gets its
    own, labelled by its scenario (the label the client gave the trace) and policy
    (network ``direct``: a trace does not know its path). ``ids`` (the trial ids)
    default to the traces' labels.
    """
    traces = list(traces)
    ids = list(ids) if ids is not None else [t.label or f"trace-{i}" for i, t in enumerate(traces)]
    keys: dict[str, int] = {}
    cell_of: list[int] = []
    firsts: list[Any] = []
    for t in traces:
        k = canonical({"scenario": t.scenario, "policy": t.policy or {}})
        if k not in keys:
            keys[k] = len(keys)
            firsts.append(t)
        cell_of.append(keys[k])
    policies = [Policy.from_dict(t.policy) if t.policy else Policy() for t in firsts]
    s_labels = label_all(
        list(range(len(firsts))),
        lambda i: firsts[i].label or "trace",
        lambda i: firsts[i].scenario or {},
    )
    p_labels = label_all(policies, lambda p: p.label, lambda p: p.to_dict())
    cells = [
        CellLabels(
            index=i,
            scenario=s_labels[i],
            network="direct",
            policy=p_labels[i],
            key=content_key(t.scenario, None, policies[i].to_dict()),
            params={**flat_params("scenario", t.scenario), **flat_params("policy", policies[i])},
        )
        for i, t in enumerate(firsts)
    ]
    trial_in_cell: dict[int, int] = {}
    records = []
    for t, tid, c in zip(traces, ids, cell_of, strict=True):
        n = trial_in_cell[c] = trial_in_cell.get(c, -1) + 1
        records.append(t.to_record(tid, c, n, 0))
    return records, cells


def server_log_table(entries: Sequence[Any]) -> pd.DataFrame:
    """A fault server's whole log (:class:`~kit.records.ServerLogEntry` values) as a table."""
    return typed({c: [getattr(e, c) for e in entries] for c in SERVER_LOG_SCHEMA}, SERVER_LOG_SCHEMA)


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
