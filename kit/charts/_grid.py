"""The experiment grid: outcome share per cell over two parameter axes."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

from .._errors import ConfigError
from ._common import (
    _empty,
    _label,
    _ordered_labels,
    _outcome_scale,
    _title,
    _trials_of,
    _unit,
)
from ._tables import tables

# --------------------------------------------------------------------- heatmap

_PARAM_PREFIXES = ("scenario.", "network.", "policy.")


def grid_axes(trials: pd.DataFrame) -> list[str]:
    """The flattened parameter columns that vary across the trials (the grid's axes)."""
    out = []
    for c in trials.columns:
        if str(c).startswith(_PARAM_PREFIXES) and trials[c].astype("object").map(_label).nunique() > 1:
            out.append(str(c))
    return out


def axis_labels(trials: pd.DataFrame, col: str) -> pd.Series:
    """The label of each trial on the axis ``col``, as the heatmap shows it.

    Numbers as ``0.5``, missing values as ``none``, except a ``network.*`` parameter of a
    trial that went through no network: ``direct``, the label the ``network`` column gives
    it (one name for one thing, in the table and on the chart).
    """
    labels = trials[col].astype("object").map(_label)
    if col.startswith("network.") and "network" in trials.columns:
        direct = (trials["network"].astype(str) == "direct") & trials[col].isna()
        labels = labels.mask(direct, "direct")
    return labels


def _axis_order(trials: pd.DataFrame, col: str, labels: pd.Series) -> list[str]:
    """The axis's labels in order: numeric where they are numbers, ``none`` / ``direct`` first."""
    order = _ordered_labels(trials[col])
    shown = set(labels)
    out = [lab for lab in order if lab in shown]
    return [*(["direct"] if "direct" in shown and "direct" not in out else []), *out]


def _hidden_axes(tr: pd.DataFrame, shown: list[str], varying: list[str]) -> list[str]:
    """Varying columns the chosen axes do not already determine (each would be pooled)."""
    hidden: list[str] = []
    keys = [axis_labels(tr, c) for c in shown]
    for c in varying:
        if c in shown:
            continue
        col = axis_labels(tr, c)
        if (
            pd.concat([*keys, col], axis=1).drop_duplicates().shape[0]
            > pd.concat(keys, axis=1).drop_duplicates().shape[0]
        ):
            hidden.append(c)
            keys.append(col)
    return hidden


def outcome_heatmap(
    data: Any,
    x: str | None = None,
    y: str | None = None,
    *,
    outcome: str = "cause",
    within_budget: bool = True,
    width: int | None = None,
) -> alt.LayerChart | alt.Chart:
    """Share of each outcome per grid cell, over two parameter axes (e.g. ``policy.first_chunk`` x
    ``network.latency``).

    Each rectangle is coloured by the cell's most common ``outcome`` (``cause``,
    ``phase``, ``ok`` or ``outcome`` = phase/cause), its opacity is that outcome's share,
    the text gives the share, and the tooltip lists every outcome's share. ``x`` and
    ``y`` default to the first two parameter columns that vary (``y`` may be None for a
    single row). Clicking a cell selects it (selection parameter ``cell``, fields ``x``
    and ``y`` holding the labels shown on the axes), which the sweep panel uses.

    Trials the kit itself distorted beyond its fidelity budget (``within_budget`` False in
    an experiment's trials) are never mixed in silently: by default they are left out of
    the shares, and every cell holding any has a dashed outline, ``n over budget`` in
    its text and the count in its tooltip (a cell with nothing else is grey); with
    ``within_budget=False`` they count in the shares and are still marked.

    Large inputs are **aggregated** to one row per cell (and one per outcome for the
    tooltip) before charting.
    """
    title = "Outcomes per grid cell"
    if outcome not in ("cause", "phase", "ok", "outcome"):
        raise ConfigError("outcome", outcome, "expected 'cause', 'phase', 'ok' or 'outcome'")
    t = tables(data, "trials")
    tr = _trials_of(t)
    if not len(tr):
        return _empty(title, "nothing to draw: no trials")
    tr = tr.copy()
    if outcome == "outcome":
        tr["outcome"] = tr["phase"].astype(str) + "/" + tr["cause"].astype(str)
    if outcome not in tr.columns:
        raise ConfigError("outcome", outcome, f"the trials table has no {outcome!r} column")
    varying = grid_axes(tr)
    chosen = x is not None
    if x is None:
        x = varying[0] if varying else ("cell" if "cell" in tr.columns else "trial_id")
        if y is None and len(varying) > 1:
            y = varying[1]
    for name, col in (("x", x), ("y", y)):
        if col is not None and col not in tr.columns:
            raise ConfigError(name, col, f"expected a column of the trials table: {', '.join(map(str, tr.columns))}")
    hidden = _hidden_axes(tr, [c for c in (x, y) if c is not None], varying)
    notes = []
    if hidden and not chosen:  # every varying dimension stays visible: the rows name the rest
        rows = [c for c in (y, *hidden) if c is not None]
        parts = pd.concat([axis_labels(tr, c).rename(c) for c in rows], axis=1)
        tr["_rows"] = [
            ", ".join(f"{c.split('.', 1)[-1]}={v}" for c, v in zip(rows, vals, strict=True))
            for vals in parts.itertuples(index=False)
        ]
        y = "_rows"
        y_title: str | None = " · ".join(rows)
    else:
        y_title = _unit(y) if y else None
        if hidden:
            notes.append(f"pooled over {', '.join(hidden)} (not on an axis)")
    tr["x"] = axis_labels(tr, x)
    tr["y"] = axis_labels(tr, y) if y is not None else "all"
    tr["_o"] = tr[outcome].astype(str)
    over = ~tr["within_budget"].astype(bool) if "within_budget" in tr.columns else pd.Series(False, index=tr.index)
    flagged = over.groupby([tr["x"], tr["y"]], sort=False).sum().rename("flagged").astype("int64")
    kept = tr[~over] if within_budget else tr
    counts = kept.groupby(["x", "y", "_o"], sort=False).size().rename("n").reset_index()
    totals = counts.groupby(["x", "y"], sort=False)["n"].transform("sum")
    counts["share"] = counts["n"] / totals
    counts = counts.sort_values(["x", "y", "share"], ascending=[True, True, False], kind="stable")

    def describe(g: pd.DataFrame) -> str:
        return " · ".join(f"{o} {s:.0%}" for o, s in zip(g["_o"], g["share"], strict=True))

    cells = counts.groupby(["x", "y"], sort=False).agg(
        outcome=("_o", "first"), share=("share", "first"), n=("n", "sum")
    )
    shares = {k: describe(g) for k, g in counts.groupby(["x", "y"], sort=False)}
    cells["shares"] = [shares.get(k, "") for k in cells.index]
    cells = cells.reindex(flagged.index).reset_index()  # a cell whose trials were all over budget stays
    cells["flagged"] = flagged.to_numpy()
    cells["n"] = cells["n"].fillna(0).astype("int64")
    empty = cells["outcome"].isna()
    cells["outcome"] = cells["outcome"].fillna("over budget").astype(str)
    cells["shares"] = cells["shares"].fillna("")
    cells["text"] = (
        cells["share"].map(lambda s: f"{s:.0%}" if s == s else "")
        + " "
        + cells["outcome"].str.replace("timeout.", "t/o ")
    )
    cells.loc[empty, "text"] = [f"all {n} over budget" for n in cells.loc[empty, "flagged"]]
    cells["share"] = cells["share"].fillna(1.0)
    how = "left out" if within_budget else "included"
    cells["note"] = [f"{n} over budget" if n and not e else "" for n, e in zip(cells["flagged"], empty, strict=True)]
    x_sort = _axis_order(tr, x, tr["x"])
    y_sort = _axis_order(tr, y, tr["y"]) if y is not None else ["all"]
    pick = alt.selection_point(name="cell", fields=["x", "y"], on="click", clear="dblclick")
    base = alt.Chart(cells).encode(
        x=alt.X("x:O", title=_unit(x), sort=x_sort),
        y=alt.Y("y:O", title=y_title, sort=list(reversed(y_sort))),
        tooltip=[
            alt.Tooltip("x:O", title=x),
            *([alt.Tooltip("y:O", title=y_title or y)] if y else []),
            alt.Tooltip("n:Q", title="trials in the shares"),
            alt.Tooltip("shares:N", title=f"share of each {outcome}"),
            alt.Tooltip("flagged:Q", title=f"over the fidelity budget ({how})"),
        ],
    )
    rect = (
        base.mark_rect(stroke="white", strokeWidth=1)
        .encode(
            color=alt.Color(
                "outcome:N", title=f"most common {outcome}", scale=_outcome_scale(outcome, cells["outcome"])
            ),
            opacity=alt.Opacity("share:Q", title="its share", scale=alt.Scale(domain=[0, 1], range=[0.3, 1])),
            strokeWidth=alt.condition(pick, alt.value(3), alt.value(1)),
        )
        .add_params(pick)
    )
    layers = [rect]
    if int(cells["flagged"].sum()):  # a dashed outline on every cell holding trials over the budget
        layers.append(
            alt.Chart(cells[cells["flagged"] > 0])
            .mark_rect(fill=None, stroke="#333", strokeWidth=2, strokeDash=[4, 3])
            .encode(x=alt.X("x:O", sort=x_sort), y=alt.Y("y:O", sort=list(reversed(y_sort))))
        )
    # the cell's text; in a cell holding trials over the budget, raised above a line saying how many
    noted = cells["note"] != ""
    text = base.mark_text(fontSize=10, color="black").encode(text="text:N").transform_filter("datum.note == ''")
    if noted.any():
        layers += [
            base.mark_text(fontSize=10, color="black", dy=-6)
            .encode(text="text:N")
            .transform_filter("datum.note != ''"),
            base.mark_text(fontSize=9, color="#333", dy=8, fontStyle="italic")
            .encode(text="note:N")
            .transform_filter("datum.note != ''"),
        ]
    w = width or max(160, min(900, 110 * len(x_sort)))
    n_over = int(flagged.sum())
    if n_over:
        notes.append(f"{n_over:,} trials over the kit's fidelity budget {how} (dashed cells)")
    return alt.layer(*layers, text).properties(
        width=w,
        height=max(60, min(600, 40 * len(y_sort))),
        title=_title(
            title,
            "; ".join(
                [f"{len(tr):,} trials", f"colour: most common {outcome}", "opacity: its share", "click a cell", *notes]
            ),
        ),
    )
