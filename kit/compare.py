"""Saved runs as Results: load a bundle (or recover a crashed run), rerun it, compare two runs.

:func:`load` reads a bundle (:mod:`kit.bundle`, the folder format) into a
:class:`~kit.Result`; :func:`rerun` runs its stored experiment again with the same
seeds; :func:`compare` tests, cell by cell, whether two runs agree (outcome
proportions: Fisher / chi-square; timings: Kolmogorov-Smirnov with a tolerance).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import BundleError, ConfigError
from .bundle import BUNDLE_JSON, read, read_journal, read_manifest
from .experiment import CONFIG_FILE, JOURNAL, PARTS, Experiment
from .result import Result

__all__ = ["compare", "load", "rerun"]


def load(path: str | Path, *, recover: bool = False) -> Result:
    """Read the bundle at ``path`` into a :class:`~kit.Result` equal to the one saved.

    Checks every table's checksum, row count and columns; any problem raises
    :class:`~kit.BundleError` naming the file. ``recover=True`` rebuilds a Result from
    what a run that never finished (no ``bundle.json``) left: its ``trials.jsonl`` journal
    and, under ``parts/``, its workers' chunk journals and Parquet parts (a trial in
    several is kept once; nothing pickled is read).
    """
    path = Path(path)
    if recover and not (path / BUNDLE_JSON).exists():
        return _recover(path)
    return Result(*read(path))


def _recover(path: Path) -> Result:
    from .experiment._parts import read_folder

    config, records = read_journal(path, CONFIG_FILE, JOURNAL)
    try:
        experiment = Experiment.from_dict(config)
    except (ValueError, ConfigError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path / CONFIG_FILE}: unreadable experiment config ({exc})") from None
    # the workers' chunk journals and Parquet parts of trials the driver had not journalled
    more, parts = read_folder(path / PARTS)
    cells = {c.index for c in experiment.cells}
    for i, p in enumerate(parts):
        stray = set(p["trials"]["cell"].tolist()) - cells
        if stray:
            raise BundleError(f"{path / PARTS}: part {i} has trials of cells this experiment lacks ({sorted(stray)})")
    meta = {"interrupted": True, "recovered": True, "trials_planned": len(experiment)}
    try:
        unique = {r["trial_id"]: r for r in [*more, *records]}  # a trial in both: the driver's line
        return experiment.result_of(list(unique.values()), meta=meta, parts=parts)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        # a journal line that parses as JSON but is not a trial record
        raise BundleError(f"{path / JOURNAL}: a record has the wrong shape ({type(exc).__name__}: {exc})") from None


def rerun(
    path: str | Path,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
    concurrency: int | str = "auto",
    progress: bool = True,
    **run_options: Any,
) -> Result:
    """Run the experiment stored in the bundle at ``path`` again (same config and seeds).

    Only ``bundle.json`` is read. ``concurrency`` is adaptive by default (not the
    original run's: what must match is the timings, and the runner keeps the kit's own
    distortion within the fidelity budget at whatever concurrency that allows);
    ``run_options`` go to :meth:`~kit.Experiment.run` (``executor``, ``workers``, ...).
    Compare the two with :func:`compare`.
    """
    doc = read_manifest(path)
    try:
        experiment = Experiment.from_dict(doc.get("experiment") or {})
    except ConfigError as exc:
        raise BundleError(f"{Path(path) / BUNDLE_JSON}: the stored experiment config is invalid ({exc})") from None
    return experiment.run(concurrency, out=out, overwrite=overwrite, progress=progress, **run_options)


TIMINGS = ("ttfb_s", "first_chunk_s", "duration_s")


def compare(
    a: Result | str | Path,
    b: Result | str | Path,
    *,
    alpha: float = 0.01,
    resolution: float = 0.01,
    within_budget: bool = True,
) -> pd.DataFrame:
    """Do two runs agree, cell by cell? One row per (cell, test), with p-values.

    Cells are matched by content (their scenario, network and policy), so a bundle and
    its :func:`rerun` line up. Tests:

    - ``outcome``: the proportions of each ``phase/cause``; Fisher's exact test when
      there are two outcomes, Pearson's chi-square test of the 2 x k table otherwise
      (``identical`` when both runs have one and the same outcome: p = 1);
    - ``ttfb_s``, ``first_chunk_s``, ``duration_s``: two-sample Kolmogorov-Smirnov test
      of the timing distributions with a tolerance of ``resolution`` seconds: the
      statistic is the largest vertical gap between the two empirical CDFs once either
      may be shifted right by up to ``resolution`` (a Levy-style distance; scheduler
      noise below it does not count), and the p-value is the KS distribution's
      (``scipy.stats.kstwo`` with n*m/(n+m) points, as scipy's asymptotic two-sample
      KS). ``resolution=0`` is the plain exact ``scipy.stats.ks_2samp``.

    ``within_budget`` (default): trials the kit itself distorted beyond its fidelity
    budget (``trials["within_budget"]`` False) are left out of every test, so two runs
    are compared on what the scenario did, not on how busy the kit was (e.g. at another
    concurrency); ``excluded_a``/``excluded_b`` count them per cell. ``False`` keeps them.

    ``agree`` is ``p_value >= alpha``. With many cells some disagreements happen by
    chance (at ``alpha=0.01``, about 1 test in 100): read the p-values, not just the flag.
    """
    from scipy import stats

    a = a if isinstance(a, Result) else load(a)
    b = b if isinstance(b, Result) else load(b)
    ka, kb = _cell_keys(a), _cell_keys(b)
    rows = []
    for key, cell_a in ka.items():
        if key not in kb:
            continue
        cell_b = kb[key]
        ta = a.trials[a.trials["cell"] == cell_a]
        tb = b.trials[b.trials["cell"] == cell_b]
        labels = ta.iloc[0][["scenario", "network", "policy"]].to_dict() if len(ta) else {}
        ta, xa = _in_budget(ta, within_budget)
        tb, xb = _in_budget(tb, within_budget)
        base = {"cell": cell_a, **labels, "excluded_a": xa, "excluded_b": xb}
        oa = (ta["phase"] + "/" + ta["cause"]).value_counts()
        ob = (tb["phase"] + "/" + tb["cause"]).value_counts()
        cats = sorted(set(oa.index) | set(ob.index))
        table = np.array([[oa.get(c, 0) for c in cats], [ob.get(c, 0) for c in cats]])
        if len(ta) == 0 or len(tb) == 0:
            method, stat, p = "n/a", np.nan, np.nan
        elif len(cats) == 1:
            method, stat, p = "identical", 0.0, 1.0
        elif len(cats) == 2:
            res = stats.fisher_exact(table)
            method, stat, p = "fisher", float(res.statistic), float(res.pvalue)
        else:
            res = stats.chi2_contingency(table)
            method, stat, p = "chi2", float(res.statistic), float(res.pvalue)
        rows.append(
            {
                **base,
                "test": "outcome",
                "method": method,
                "n_a": len(ta),
                "n_b": len(tb),
                "statistic": stat,
                "p_value": p,
            }
        )
        for col in TIMINGS:
            va = ta[col].dropna().to_numpy(dtype="float64")
            vb = tb[col].dropna().to_numpy(dtype="float64")
            if len(va) == 0 or len(vb) == 0:
                method, stat, p = "n/a", np.nan, np.nan
            elif not resolution:
                res = stats.ks_2samp(va, vb)
                method, stat, p = "ks", float(res.statistic), float(res.pvalue)
            else:
                stat = _ks_tolerant(va, vb, resolution)
                p = 1.0 if stat == 0 else float(stats.kstwo.sf(stat, round(len(va) * len(vb) / (len(va) + len(vb)))))
                method = "ks"
            rows.append(
                {**base, "test": col, "method": method, "n_a": len(va), "n_b": len(vb), "statistic": stat, "p_value": p}
            )
    cols = [
        "cell",
        "scenario",
        "network",
        "policy",
        "test",
        "method",
        "n_a",
        "n_b",
        "excluded_a",
        "excluded_b",
        "statistic",
        "p_value",
    ]
    out = pd.DataFrame(rows, columns=cols)
    out["agree"] = (out["p_value"] >= alpha) | out["p_value"].isna()
    out.attrs["alpha"] = alpha
    out.attrs["unmatched_cells"] = sorted(set(ka) ^ set(kb))
    return out


def _in_budget(t: pd.DataFrame, only: bool) -> tuple[pd.DataFrame, int]:
    """The trials within the fidelity budget (all of them without the column), and how many were left out."""
    if not only or "within_budget" not in t.columns:
        return t, 0
    keep = t["within_budget"].astype(bool)
    return t[keep], int((~keep).sum())


def _ks_tolerant(a: np.ndarray, b: np.ndarray, tol: float) -> float:
    """sup over x of F_a(x) - F_b(x + tol) and F_b(x) - F_a(x + tol), at least 0."""
    a, b = np.sort(a), np.sort(b)
    xs = np.concatenate([a, b])

    def cdf(s: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(s, x, side="right") / len(s)

    d1 = np.max(cdf(a, xs) - cdf(b, xs + tol))
    d2 = np.max(cdf(b, xs) - cdf(a, xs + tol))
    return float(max(d1, d2, 0.0))


def _cell_keys(r: Result) -> dict[str, int]:
    cells = r.meta.get("cells")
    if cells:
        return {c["key"]: c["cell"] for c in cells}
    # no keys stored (e.g. a HAR import): match by labels
    t = r.trials.drop_duplicates("cell")
    return {
        f"{s}|{n}|{p}": int(c) for c, s, n, p in zip(t["cell"], t["scenario"], t["network"], t["policy"], strict=True)
    }
