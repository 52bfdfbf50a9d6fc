"""Bring your own evidence: chunk logs into the kit's tables, and which scenario they look like.

Two jobs:

1. :func:`load_csv` reads a log of chunk arrival times (from a proxy, an application's
   own logging, a packet capture summarised by hand) into the same
   :class:`~kit.Result` tables a HAR (:func:`kit.from_har`) or a bundle
   (:func:`kit.load`) gives, so every chart works on it. The columns are in
   :data:`CSV_COLUMNS`.
2. :func:`match` ranks the kit's scenario presets by how closely their outcome and
   timing resemble each call in the evidence, against reference outcomes measured by
   :func:`build_reference` and stored small in ``data/atlas/evidence_reference.csv``.

The similarity measure
----------------------
Each call is reduced to the features of :data:`FEATURES`: where and why it ended
(``phase``, ``cause``), whether a ``message_start`` event ever arrived, and six numbers
(chunks, events, attempts, time to first chunk, largest gap between chunks, duration).
Comparing a call ``a`` with a reference ``b``, each feature costs between 0 (alike)
and its weight ``w`` (unlike):

- categorical: 0 if equal, ``w`` if different, ``w/2`` if either side is unknown;
- numeric: ``w * min(1, |log10((a + s) / (b + s))|)``, where ``s`` is the feature's
  scale (1 for counts, 50 ms for times): a factor of ten apart costs the whole weight,
  small absolute differences near zero cost little, and a real stream of 900 chunks
  is not "infinitely" far from a preset of 26; missing on one side only (no first
  chunk against some first chunk) costs ``w``, missing on both costs 0.

``similarity = 1 - sum(costs) / sum(weights)``, in [0, 1]. Outcome features weigh
most (phase and cause 2 each), because timings scale with a scenario's parameters
while *how a call ended* does not. The per-feature costs come back with the ranking
(``cost.<feature>`` columns) and a ``why`` sentence, so the ranking is explained, not
asserted. It is a nearest-neighbour lookup, not a diagnosis: a top match says "the
evidence looks like this reproduction", which a notebook then has to test.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ._errors import BundleError, ConfigError

__all__ = [
    "CSV_COLUMNS",
    "FEATURES",
    "REFERENCE_PATH",
    "build_reference",
    "features",
    "from_har",
    "load_csv",
    "match",
    "reference",
]

#: the columns :func:`load_csv` reads (only ``t`` is required)
CSV_COLUMNS: dict[str, str] = {
    "t": "seconds since the call started when this row happened (required; a number)",
    "size": "body bytes in the chunk (default 0)",
    "trial_id": "which logical call the row belongs to (default 'c0'): one call per distinct value",
    "attempt": "1-based HTTP attempt within the call (default 1)",
    "kind": "'chunk' (default: a body chunk arrived), 'headers' (the response headers arrived) or 'end' (the call ended)",
    "event": "SSE event type(s) parsed from this chunk, e.g. 'message_start' or 'ping message_stop' (optional)",
    "status": "HTTP status on the 'headers' row (optional)",
    "cause": "on the 'end' row: the outcome cause if known (a kit cause such as 'ended', 'timeout.total')",
    "message": "on the 'end' row: what the client said (an error message), if anything",
}

#: name -> (kind, weight, scale, description); see the module docstring for the measure
FEATURES: dict[str, tuple[str, float, float, str]] = {
    "phase": ("category", 2.0, 0.0, "where the call ended (connect, headers, first_chunk, stream, done)"),
    "cause": ("category", 2.0, 0.0, "why it ended (ok, ended, closed, reset, timeout.*...)"),
    "message_start": ("category", 1.0, 0.0, "whether a message_start event arrived (the TypeScript SDK's test)"),
    "chunks": ("number", 0.5, 1.0, "body chunks received by the last attempt"),
    "events": ("number", 0.5, 1.0, "events parsed by the last attempt (pings included)"),
    "attempts": ("number", 0.5, 1.0, "HTTP requests made for the call"),
    "first_chunk_s": ("number", 1.0, 0.05, "call start to the first body byte (s); missing if none came"),
    "max_gap_s": ("number", 1.0, 0.05, "largest gap between body chunks (s)"),
    "duration_s": ("number", 1.0, 0.05, "call start to its end (s)"),
}

REFERENCE_PATH = Path(__file__).resolve().parent.parent / "data" / "atlas" / "evidence_reference.csv"
#: the policies references are measured under: a patient client and an impatient one
REFERENCE_POLICIES = {
    "patient (10 s limits)": dict(connect=5, headers=10, idle=10, total=30),
    "impatient (2 s limits)": dict(connect=2, headers=2, first_chunk=2, idle=2, total=10),
}

# ------------------------------------------------------------------------ CSV


MAX_T = 1e7  # seconds since the call started (115 days): nanoseconds stay within int64
MAX_SIZE = 1 << 40
MAX_ATTEMPT = 1000
MAX_FIELD = 1 << 20  # bytes of one CSV field


def _num(
    path: Path,
    line: int,
    column: str,
    value: str,
    default: float | None = None,
    lo: float = 0.0,
    hi: float = MAX_T,
    whole: bool = False,
) -> float | None:
    """The number in a CSV field, within ``[lo, hi]``; BundleError naming file, line and column."""
    if value is None or str(value).strip() == "":
        return default
    try:
        x = float(value)
    except (ValueError, OverflowError):
        raise BundleError(f"{path}:{line}: column {column!r} must be a number, got {value[:40]!r}") from None
    if math.isnan(x) or math.isinf(x):
        raise BundleError(f"{path}:{line}: column {column!r} must be finite, got {value[:40]!r}")
    if not lo <= x <= hi or (whole and x != int(x)):
        kind = "a whole number" if whole else "a number"
        raise BundleError(f"{path}:{line}: column {column!r} must be {kind} in [{lo:g}, {hi:g}], got {value[:40]!r}")
    return x


def _rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line, row) pairs of a CSV text; malformed CSV is a BundleError naming line and column."""
    lines = text.splitlines()
    reader = csv.DictReader(lines)
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        cols = [c.strip() for c in (reader.fieldnames or [])]
        for raw in reader:
            rows.append((reader.line_num, {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}))
    except csv.Error as exc:
        line = reader.line_num + 1
        fields = lines[line - 1].split(",") if line - 1 < len(lines) else []
        big = next((i for i, f in enumerate(fields) if len(f) > MAX_FIELD // 8), None)
        where = f" (column {cols[big]!r})" if big is not None and big < len(cols) else ""
        raise BundleError(f"{path}:{line}: not valid CSV{where}: {exc}") from None
    return cols, rows


def from_har(path: str | Path) -> Any:
    """Read a HAR 1.2 file (a browser's or the kit's) into a :class:`~kit.Result`.

    One trial per entry (``trial_id`` ``e0000``...), one cell per method and URL path;
    times are on the HAR's wall clock (``t`` columns are seconds since each entry's
    start). Raises :class:`~kit.BundleError` naming the file if it is not HAR 1.2.
    """
    from .har import har_records
    from .result import Result

    records, cells, meta = har_records(path)
    return Result.from_records(records, cells, meta=meta)


def load_csv(path: str | Path, *, protocol: str = "anthropic") -> Any:
    """Read a CSV log of chunk timestamps (columns: :data:`CSV_COLUMNS`) into a :class:`~kit.Result`.

    One trial per ``trial_id``; rows may come in any order (they are sorted by ``t``).
    Without an ``end`` row the call ends at its last row. The outcome is the ``end``
    row's ``cause`` if given, else inferred: ``done/ok`` if a ``message_stop`` event was
    logged, ``headers/closed`` if no headers and no chunk came, otherwise the body
    ended without its terminator (``first_chunk/ended`` with no chunk, ``stream/ended``
    after some) -- an inference the ``message`` column cannot override. Raises
    :class:`~kit.BundleError` naming the file and line for malformed input.
    """
    from .records import AttemptRecord, CellLabels, TrialRecord
    from .result import Result

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such CSV file") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BundleError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); a chunk log is a UTF-8 CSV") from None
    if "\0" in text:
        line = text[: text.index("\0")].count("\n") + 1
        raise BundleError(f"{path}:{line}: a NUL byte (binary data, not a CSV text)")
    cols, parsed = _rows(path, text)
    if "t" not in cols:
        raise BundleError(f"{path}: a chunk log needs a 't' column (seconds since the call started); got {cols}")
    unknown = [c for c in cols if c not in CSV_COLUMNS]
    if unknown:
        raise BundleError(f"{path}: unknown column(s) {unknown}; the columns are {list(CSV_COLUMNS)}")
    calls: dict[str, list[dict[str, Any]]] = {}
    for line, row in parsed:
        kind = row.get("kind") or "chunk"
        if kind not in ("chunk", "headers", "end"):
            raise BundleError(f"{path}:{line}: kind must be chunk, headers or end, got {kind!r}")
        t = _num(path, line, "t", row.get("t", ""))
        if t is None:
            raise BundleError(f"{path}:{line}: column 't' must be a number of seconds in [0, {MAX_T:g}]")
        attempt = int(_num(path, line, "attempt", row.get("attempt", ""), 1, 1, MAX_ATTEMPT, whole=True) or 1)
        status = _num(path, line, "status", row.get("status", ""), None, 100, 599, whole=True)
        calls.setdefault(row.get("trial_id") or "c0", []).append(
            {
                "t": t,
                "kind": kind,
                "attempt": attempt,
                "size": int(_num(path, line, "size", row.get("size", ""), 0, 0, MAX_SIZE, whole=True) or 0),
                "event": row.get("event", ""),
                "status": str(int(status)) if status is not None else "",
                "cause": row.get("cause", ""),
                "message": row.get("message", ""),
            }
        )
    if not calls:
        raise BundleError(f"{path}: no rows")
    cell = CellLabels(0, f"csv {path.name}", "recorded", "recorded")
    records = []
    ns = 1_000_000_000
    for i, (tid, rows) in enumerate(calls.items()):
        rows.sort(key=lambda r: r["t"])
        end_t = max(r["t"] for r in rows)
        attempts = []
        for a in sorted({r["attempt"] for r in rows}):
            ar = [r for r in rows if r["attempt"] == a]
            chunks = [r for r in ar if r["kind"] == "chunk"]
            heads = [r for r in ar if r["kind"] == "headers"]
            ends = [r for r in ar if r["kind"] == "end"]
            ev_t, ev_type, ev_size = [], [], []
            for r in chunks:
                for name in r["event"].replace(";", " ").split():
                    ev_t.append(round(r["t"] * ns))
                    ev_type.append(name)
                    ev_size.append(0)
            start = min(r["t"] for r in ar) if a > 1 else 0.0
            a_end = max(r["t"] for r in ar)
            saw_stop = "message_stop" in ev_type or "[DONE]" in ev_type
            h_t = heads[0]["t"] if heads else (chunks[0]["t"] if chunks else None)
            status = heads[0]["status"] if heads and heads[0]["status"] else ("200" if chunks else "")
            end = ends[-1] if ends else None
            cause = end["cause"] if end and end["cause"] else None
            if cause is None:
                if saw_stop:
                    cause, phase = "ok", "done"
                elif not chunks and h_t is None:
                    cause, phase = "closed", "headers"
                else:
                    cause, phase = "ended", ("stream" if chunks else "first_chunk")
            else:
                phase = (
                    "done" if saw_stop else ("stream" if chunks else ("first_chunk" if h_t is not None else "headers"))
                )
            attempts.append(
                AttemptRecord(
                    index=a,
                    request_id=f"{tid}-{a}",
                    method="POST",
                    url=f"csv:{path.name}",
                    start_ns=round(start * ns),
                    headers_ns=None if h_t is None else round(h_t * ns),
                    status=int(float(status)) if status else None,
                    chunk_t=[round(r["t"] * ns) for r in chunks],
                    chunk_size=[r["size"] for r in chunks],
                    event_t=ev_t,
                    event_type=ev_type,
                    event_size=ev_size,
                    saw_terminator=saw_stop,
                    end_ns=round(a_end * ns),
                    phase=phase,
                    cause=cause,
                    message=end["message"] if end else "",
                )
            )
        records.append(
            TrialRecord(
                trial_id=str(tid),
                cell=0,
                trial=i,
                seed=0,
                url=f"csv:{path.name}",
                protocol=protocol,
                start_ns=0,
                end_ns=round(end_t * ns),
                attempts=tuple(attempts),
            )
        )
    return Result.from_records(records, [cell], meta={"source": "csv", "csv_file": str(path)})


# ------------------------------------------------------------------ features


def _as_result(data: Any) -> Any:
    from .result import Result

    if isinstance(data, Result):
        return data
    if hasattr(data, "attempts_df"):  # a Trace
        return Result.from_traces([data], ids=[data.label or "trace"])
    if isinstance(data, (list, tuple)) and data and all(hasattr(x, "attempts_df") for x in data):
        return Result.from_traces(list(data))
    if isinstance(data, (str, Path)):
        p = Path(data)
        if p.suffix.lower() == ".csv":
            return load_csv(p)
        if p.suffix.lower() == ".har":
            return from_har(p)
        from .compare import load

        return load(p)
    raise ConfigError(
        "data", type(data).__name__, "expected a kit.Trace, a list of Traces, a Result, or a path (.csv, .har, bundle)"
    )


def features(data: Any) -> pd.DataFrame:
    """One row per call of ``data`` (Trace, Traces, Result, or a path) with the :data:`FEATURES` columns.

    The index is the ``trial_id``. Counts and times are the last attempt's (as in
    ``Result.trials``); ``message_start`` is True/False, or None when no events were
    recorded at all (a CSV without an ``event`` column, a plain HAR).
    """
    res = _as_result(data)
    trials = res.trials
    if not len(trials):
        return pd.DataFrame(columns=list(FEATURES)).rename_axis("trial_id")
    ev = res.events
    att = res.attempts
    last = att.sort_values(["trial_id", "attempt"]).groupby("trial_id")["attempt"].max()
    out = pd.DataFrame(index=pd.Index(trials["trial_id"].astype(str), name="trial_id"))
    for name in ("phase", "cause"):
        out[name] = trials[name].astype(str).to_numpy()
    started: dict[str, Any] = {}
    # the kit's own traces always log events, so none means none; a CSV or HAR may just not say
    has_log = len(ev) > 0 or res.meta.get("source") not in ("csv", "har")
    for tid in out.index:
        e = ev[(ev["trial_id"] == tid) & (ev["attempt"] == last.get(tid, 1))] if len(ev) else ev
        if len(e) or has_log:
            started[tid] = bool((e["type"] == "message_start").any()) if len(e) else False
        else:
            chunks = float(trials.loc[trials["trial_id"] == tid, "chunks"].iloc[0] or 0)
            # no event log at all: an empty body certainly had no message_start; otherwise unknown
            started[tid] = False if chunks == 0 else None
    out["message_start"] = pd.Series(started, dtype=object)
    for name in ("chunks", "events", "attempts", "first_chunk_s", "max_gap_s", "duration_s"):
        out[name] = pd.to_numeric(trials[name], errors="coerce").to_numpy(dtype=float)
    return out


# ----------------------------------------------------------------- reference


def build_reference(
    path: str | Path | None = REFERENCE_PATH, *, trials: int = 3, seed: int = 11, presets: Iterable[str] | None = None
) -> pd.DataFrame:
    """Measure every scenario preset under :data:`REFERENCE_POLICIES` and store the features.

    Each (preset, policy) row holds the median of each number and the most common
    category over ``trials`` runs. Takes about 15 s (the slowest presets wait 3 s).
    ``path=None`` returns the table without writing it.
    """
    from .experiment import Experiment
    from .policy import Policy
    from .scenarios import Scenario

    names = list(presets) if presets is not None else Scenario.presets()
    policies = [Policy(name=label, **kw) for label, kw in REFERENCE_POLICIES.items()]
    result = Experiment(scenarios=names, policies=policies, trials=trials, seed=seed, name="evidence-reference").run(
        progress=False
    )
    f = features(result)
    t = result.trials.set_index(result.trials["trial_id"].astype(str))
    f["scenario"] = t.loc[f.index, "scenario"].to_numpy()
    f["policy"] = t.loc[f.index, "policy"].to_numpy()

    def mode(s: pd.Series) -> Any:
        s = s.dropna()
        return s.astype(str).mode().iloc[0] if len(s) else None

    rows = []
    for (sc, pol), g in f.groupby(["scenario", "policy"], sort=False):
        row: dict[str, Any] = {"scenario": sc, "policy": pol, "trials": len(g)}
        for name, (kind, *_rest) in FEATURES.items():
            row[name] = mode(g[name]) if kind == "category" else float(g[name].median())
        rows.append(row)
    ref = pd.DataFrame(rows)
    ref["message_start"] = ref["message_start"].map({"True": True, "False": False, None: None})
    for name, (kind, *_rest) in FEATURES.items():
        if kind == "number":
            ref[name] = ref[name].round(4)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ref.to_csv(path, index=False)
    return ref


def reference(path: str | Path | None = None) -> pd.DataFrame:
    """The stored reference outcomes (``data/atlas/evidence_reference.csv``), one row per preset x policy."""
    path = Path(path) if path is not None else REFERENCE_PATH
    if not path.is_file():
        raise BundleError(f"{path}: no reference table; build it with kit.evidence.build_reference()")
    ref = pd.read_csv(path)
    ref["message_start"] = ref["message_start"].map(lambda v: None if pd.isna(v) else str(v).strip().lower() == "true")
    return ref


# --------------------------------------------------------------------- match


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _cost(name: str, a: Any, b: Any) -> float:
    kind, w, scale, _ = FEATURES[name]
    if kind == "category":
        if _missing(a) or _missing(b):
            return w / 2
        return 0.0 if str(a) == str(b) else w
    if _missing(a) and _missing(b):
        return 0.0
    if _missing(a) or _missing(b):
        return w
    return w * min(1.0, abs(math.log10((max(a, 0.0) + scale) / (max(b, 0.0) + scale))))


def _why(costs: Mapping[str, float], a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    same = [n for n in ("phase", "cause", "message_start") if costs[n] == 0]
    diff = sorted(((c, n) for n, c in costs.items() if c > 0), reverse=True)[:2]
    parts = []
    if same:
        parts.append("same " + ", ".join(same))
    for c, n in diff:
        parts.append(f"{n} {_fmt(a[n])} vs {_fmt(b[n])} (-{c:.2g})")
    return "; ".join(parts)


def _fmt(v: Any) -> str:
    if _missing(v):
        return "none"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def match(data: Any, ref: pd.DataFrame | None = None, *, top: int = 3) -> pd.DataFrame:
    """The ``top`` closest reference outcomes for each call of ``data``, best first.

    ``data``: a Trace, Traces, a Result (``kit.load``, ``kit.from_har``,
    :func:`load_csv`), a features table from :func:`features`, or a path. Columns:
    ``trial_id``, ``rank``, ``scenario``, ``policy``, ``similarity`` (see the module
    docstring), ``why`` (what agreed and the two largest differences) and one
    ``cost.<feature>`` column per feature.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError("top", top, "expected a whole number >= 1")
    f = data if isinstance(data, pd.DataFrame) and set(FEATURES) <= set(data.columns) else features(data)
    ref = reference() if ref is None else ref
    total = sum(w for _, w, _, _ in FEATURES.values())
    rows = []
    for tid, a in f.iterrows():
        scored = []
        for _, b in ref.iterrows():
            costs = {n: _cost(n, a[n], b[n]) for n in FEATURES}
            scored.append((1 - sum(costs.values()) / total, b, costs))
        scored.sort(key=lambda x: -x[0])
        for rank, (sim, b, costs) in enumerate(scored[:top], start=1):
            row = {
                "trial_id": tid,
                "rank": rank,
                "scenario": b["scenario"],
                "policy": b["policy"],
                "similarity": round(sim, 3),
                "why": _why(costs, a, b),
            }
            row.update({f"cost.{n}": round(c, 3) for n, c in costs.items()})
            rows.append(row)
    cols = ["trial_id", "rank", "scenario", "policy", "similarity", "why", *(f"cost.{n}" for n in FEATURES)]
    return pd.DataFrame(rows, columns=cols)
