"""Helpers a postmortem notebook uses to ask real clients a question and weigh the answers.

- :func:`ask`: one scenario through many real clients (live, or the recorded atlas rows
  where a client cannot run here), one row per client, the same columns either way;
- :func:`traced`: the same scenario through the kit's instrumented client (every chunk timed);
- :func:`said` / :func:`verdict`: what each client said, and whether a hypothesis
  reproduces the reported message.

(An experiment's Result cut down to some trials: :meth:`kit.Result.select`.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from .scenarios import Scenario

__all__ = ["ASK_COLUMNS", "ask", "mode_of", "said", "traced", "verdict"]

ASK_COLUMNS = [
    "client",
    "version",
    "mode",
    "outcome",
    "exception",
    "message",
    "attempts",
    "requests",
    "seconds",
    "source",
    "side_error",
]
_NODE_ONLY = ("hang_after", "signal_timeout", "side_abort")


def _is_node(client: str) -> bool:
    return client.startswith(("anthropic-node", "openai-node", "claude-code"))


def mode_of(options: dict[str, Any]) -> str:
    """The atlas mode a call's options amount to: ``abort``, ``timeout`` or ``default``."""
    if options.get("abort_after") is not None or options.get("signal_timeout") is not None:
        return "abort"
    return "timeout" if options.get("timeout") is not None else "default"


def _recorded(atlas: pd.DataFrame, client: str, name: str, mode: str) -> dict[str, Any]:
    base, _, ver = client.partition("@")
    rec = atlas[(atlas.client == base) & (atlas.scenario == name)]
    if "mode" in rec:
        rec = rec[rec["mode"] == mode]
    rec = rec[rec.client_version.astype(str).str.startswith(ver)] if ver else rec.tail(1)
    if not len(rec):
        return {"client": client, "mode": mode, "outcome": "not recorded", "source": "atlas"}
    r = rec.iloc[-1]
    return {
        "client": client,
        "version": r.client_version,
        "mode": mode,
        "outcome": r.outcome,
        "exception": r.exception,
        "message": r.message,
        "attempts": r.attempts,
        "requests": r.get("requests"),
        "seconds": r.elapsed,
        "source": "atlas",
    }


def ask(
    scenario: str | Scenario,
    clients: Iterable[str],
    *,
    server: Any,
    url: str | None = None,
    live_node: bool = True,
    atlas: pd.DataFrame | None = None,
    progress: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """One row per client: what it raised (or that it returned), attempts, seconds, source.

    Python clients always run live. Node clients and Claude Code run live when
    ``live_node`` (and node is here); otherwise the answer comes from the recorded atlas
    (``source="atlas"``, matched by client, version, scenario and mode), or says
    ``not recorded``. ``url`` (e.g. a proxy's) is used as given; ``options`` go to
    :func:`kit.sdk.run` (``timeout``, ``abort_after``; Node only: ``hang_after``,
    ``signal_timeout``, ``side_abort``). A caller-side abort does not apply to Claude
    Code (a CLI): its row says ``not applicable``. ``progress``: a bar over the clients.
    """
    from . import node, sdk
    from ._progress import progress as counted
    from .atlas import load

    name = scenario if isinstance(scenario, str) else scenario.label
    mode = mode_of(options)
    why_not = None if live_node else "live_node is False"
    why_not = why_not or node.unavailable()
    rows = []
    for client in counted(list(clients), name, enabled=progress):
        if client.startswith("claude-code") and mode == "abort":
            rows.append({"client": client, "mode": mode, "outcome": "not applicable", "source": "live"})
            continue
        if _is_node(client) and why_not:
            rows.append(_recorded(load() if atlas is None else atlas, client, name, mode))
            continue
        kw = dict(options)
        if not _is_node(client):
            for k in _NODE_ONLY:
                kw.pop(k, None)
        elif client.startswith("claude-code"):
            for k in ("signal_timeout", "side_abort", "abort_after"):
                kw.pop(k, None)
        run = sdk.run(client, url or scenario, server=server, **kw)
        side = (run.result or {}).get("side_error")
        rows.append(
            {
                "client": client,
                "version": run.client_version,
                "mode": mode,
                "outcome": run.outcome,
                "exception": run.exception,
                "message": run.message,
                "attempts": run.attempts,
                "requests": " ".join(
                    "json" if q.get("stream") is False else "stream"
                    for q in run.server_requests
                    if q.get("end") != "probe"
                ),
                "seconds": round(run.elapsed, 2),
                "source": "live",
                "side_error": f"{side['exception']}: {side['message']} (at {side['t']:.1f} s)" if side else None,
            }
        )
    return pd.DataFrame(rows, columns=ASK_COLUMNS)


def traced(
    scenario: str | Scenario, *, server: Any, policy: Any = None, label: str | None = None, url: str | None = None
):
    """One call through the kit's instrumented client (every chunk timed); returns its Trace."""
    from .client import stream
    from .policy import Policy

    t = stream(url or server.url_for(scenario), policy=policy or Policy(connect=5, headers=30, idle=30))
    t.label = label or (scenario if isinstance(scenario, str) else scenario.label)
    return t


def said(answers: pd.DataFrame, client: str) -> str:
    """What ``client`` said in ``answers`` (``Exception: message`` or its outcome), joined."""
    rows = answers[answers.client == client]
    texts = {
        f"{r.exception}: {r.message}" if isinstance(r.exception, str) and r.exception else str(r.outcome)
        for r in rows.itertuples()
    }
    return "; ".join(sorted(texts)) if len(rows) else "(none)"


def verdict(
    name: str, answers: pd.DataFrame, trace: Any, *, symptom: str, judge: Sequence[str], show: Sequence[str]
) -> dict[str, Any]:
    """One row of a verdict table: the kit's outcome of the bytes, what each ``show`` client
    said, and whether every ``judge`` client that answered printed exactly ``symptom``."""
    row: dict[str, Any] = {
        "hypothesis": name,
        "kit outcome": f"{trace.outcome.phase}/{trace.outcome.cause}" if trace is not None else "(no trace)",
        "chunks": trace.attempt.chunks_received if trace is not None else 0,
    }
    for c in show:
        row[c] = said(answers, c)
    judged = answers[answers.client.isin(judge) & ~answers.outcome.isin(["not recorded", "not applicable"])]
    row["reproduces symptom"] = bool(len(judged)) and bool((judged.message == symptom).all())
    return row
