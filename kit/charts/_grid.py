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


def _hidden_axes(tr: pd.DataFrame, shown: list[str], varying: list[str]) -> list[str]:
    """Varying columns the chosen axes do not already determine (each would be pooled)."""
    hidden: list[str] = []
    keys = [tr[c].astype("object").map(_label) for c in shown]
    for c in varying:
        if c in shown:
            continue
        col = tr[c].astype("object").map(_label)
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
        tr["_rows"] = [
            ", ".join(f"{c.split('.', 1)[-1]}={_label(v)}" for c, v in zip(rows, vals, strict=True))
            for vals in tr[rows].astype("object").itertuples(index=False)
        ]
        y = "_rows"
        y_title: str | None = " · ".join(rows)
    else:
        y_title = _unit(y) if y else None
        if hidden:
            notes.append(f"pooled over {', '.join(hidden)} (not on an axis)")
    tr["x"] = tr[x].astype("object").map(_label)
    tr["y"] = tr[y].astype("object").map(_label) if y is not None else "all"
    tr["_o"] = tr[outcome].astype(str)
    counts = tr.groupby(["x", "y", "_o"], sort=False).size().rename("n").reset_index()
    totals = counts.groupby(["x", "y"], sort=False)["n"].transform("sum")
    counts["share"] = counts["n"] / totals
    counts = counts.sort_values(["x", "y", "share"], ascending=[True, True, False], kind="stable")

    def describe(g: pd.DataFrame) -> str:
        return " · ".join(f"{o} {s:.0%}" for o, s in zip(g["_o"], g["share"], strict=True))

    cells = counts.groupby(["x", "y"], sort=False).agg(
        outcome=("_o", "first"), share=("share", "first"), n=("n", "sum")
    )
    cells["shares"] = counts.groupby(["x", "y"], sort=False)[["_o", "share"]].apply(describe)
    cells = cells.reset_index()
    cells["text"] = cells["share"].map(lambda s: f"{s:.0%}") + " " + cells["outcome"].str.replace("timeout.", "t/o ")
    x_sort = _ordered_labels(tr[x])
    y_sort = _ordered_labels(tr[y]) if y is not None else ["all"]
    pick = alt.selection_point(name="cell", fields=["x", "y"], on="click", clear="dblclick")
    base = alt.Chart(cells).encode(
        x=alt.X("x:O", title=_unit(x), sort=x_sort),
        y=alt.Y("y:O", title=y_title, sort=list(reversed(y_sort))),
        tooltip=[
            alt.Tooltip("x:O", title=x),
            *([alt.Tooltip("y:O", title=y_title or y)] if y else []),
            alt.Tooltip("n:Q", title="trials"),
            alt.Tooltip("shares:N", title=f"share of each {outcome}"),
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
    text = base.mark_text(fontSize=10, color="black").encode(text="text:N")
    w = width or max(160, min(900, 110 * len(x_sort)))
    return alt.layer(rect, text).properties(
        width=w,
        height=max(60, min(600, 40 * len(y_sort))),
        title=_title(
            title,
            "; ".join(
                [f"{len(tr):,} trials", f"colour: most common {outcome}", "opacity: its share", "click a cell", *notes]
            ),
        ),
    )
