"""The symptom atlas: which scenario makes which real client say what.

Every scenario preset is run through every available real client (the Python SDKs,
and the Node SDKs where node is installed); the table of what each one raised is stored
in ``data/atlas/atlas.csv`` with the environment it was made in
(``data/atlas/environment.json``). Analysts start from the message they saw::

    kit.atlas.lookup("Error: request ended without sending any chunks")
    #  client          client_version  scenario               exception      message                       score
    #  anthropic-node  0.39.0          empty_200              AnthropicError request ended without ...     1.0

Matching ignores case, numbers, hex ids and punctuation, and accepts the message inside
a longer line (a stack trace) or a close variant. ``kit atlas build`` regenerates it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import json
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from ._errors import BundleError, ConfigError
from ._redact import redact_text
from ._sdkrun import SDKRun, ServerCount, _with_protocol, scenario_url
from .scenarios import Close, Scenario, Stall

__all__ = ["COLUMNS", "DEFAULT_CLIENTS", "EXTRA_SCENARIOS", "MODES", "build", "load", "lookup", "normalize", "scenario"]

ATLAS_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "atlas"
COLUMNS = [
    "client",
    "client_version",
    "method",
    "mode",
    "scenario",
    "outcome",
    "exception",
    "message",
    "attempts",
    "requests",
    "elapsed",
    "options",
    "trace_phase",
    "trace_cause",
    "bytes",
]
#: clients the atlas runs by default (Node ones are skipped, with a row saying why, where node is absent)
DEFAULT_CLIENTS = (
    "anthropic-python",
    "anthropic-python:create",
    "openai-python",
    "openai-python:stream",
    "anthropic-node@0.39",
    "anthropic-node",
    "anthropic-node:create",
    "openai-node",
    "openai-node:stream",
    "claude-code",
)

#: scenarios of the atlas that are not presets: bodies that never come (hangs), and the controls of
#: the empty-body story (``message_start`` then a clean end; a FIN cut right after ``message_start``)
EXTRA_SCENARIOS: dict[str, Scenario] = {
    "message_start_then_end": Scenario(name="message_start_then_end", events=5, faults=(Close(after=1, clean=True),)),
    "cut_after_message_start": Scenario(name="cut_after_message_start", events=5, faults=(Close(after=1),)),
    "stall_forever_first_byte": Scenario(name="stall_forever_first_byte", events=5, gap=0.01, faults=(Stall(after=0),)),
    "stall_forever_mid_stream": Scenario(
        name="stall_forever_mid_stream", events=20, gap=0.01, faults=(Stall(after=10),)
    ),
}
SHORT = 1.0  # s: the explicit short timeout of `timeout` rows, and when `abort` rows abort
#: mode -> (scenarios, what the caller does); ``default`` runs every preset plus EXTRA_SCENARIOS
MODES = {
    "default": "each client's own settings (Claude Code: CLAUDE_CODE_MAX_RETRIES=2, to keep 529 runs short)",
    "timeout": f"an explicit client timeout of {SHORT:g} s (SDK timeout=; Claude Code API_TIMEOUT_MS)",
    "abort": f"the caller aborts after {SHORT:g} s (Node AbortSignal.timeout, Python task.cancel())",
}
TIMEOUT_SCENARIOS = (
    "slow_headers",
    "slow_first_byte",
    "stall_mid_stream",
    *(n for n in EXTRA_SCENARIOS if "stall" in n),
)
ABORT_SCENARIOS = ("slow_first_byte", "stall_mid_stream", "empty_200", "stall_forever_first_byte")
CLAUDE_CODE_KNOBS = {"max_retries": 2}
CLAUDE_CODE_WATCH = 2.5  # Claude Code is watched this many times hang_after (its start-up takes seconds)

_ID = re.compile(
    r"\b(?:req|msg|toolu|chatcmpl|resp)[_-][0-9a-z]+\b|\b[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b|\b[0-9a-z]*\d[0-9a-z]*\b"
)
_PUNCT = re.compile(r"[^a-z#]+")


def scenario(name: str) -> Scenario:
    """The scenario an atlas row names (a preset, or one of :data:`EXTRA_SCENARIOS`)."""
    if name in EXTRA_SCENARIOS:
        return EXTRA_SCENARIOS[name]
    return Scenario.preset(name)


def normalize(message: str) -> str:
    """A message as words: lower case, ids, numbers and positions as ``#``, no punctuation."""
    text = _ID.sub(" # ", str(message).lower())
    return " ".join(_PUNCT.sub(" ", text).split())


def _contains(words: list[str], part: list[str]) -> bool:
    """``part`` occurs in ``words`` as a run of whole words."""
    n = len(part)
    return n > 0 and any(words[i : i + n] == part for i in range(len(words) - n + 1))


def _score(query: str, message: str) -> float:
    """1.0 when one holds the other as whole words; otherwise a word-level similarity."""
    if not query or not message:
        return 0.0
    q, m = query.split(), message.split()
    if _contains(m, q) or (len(message) >= 6 and _contains(q, m)):
        return 1.0
    return difflib.SequenceMatcher(None, q, m, autojunk=False).ratio()


def describe(sc: Scenario) -> str:
    """The bytes of a scenario in a few words (what the server sends)."""
    parts = [sc.protocol, f"{sc.events} events", sc.framing]
    if sc.headers_delay:
        parts.append(f"headers after {sc.headers_delay:g} s")
    if sc.first_byte_delay:
        parts.append(f"first byte after {sc.first_byte_delay:g} s")
    if sc.ping_every:
        parts.append(f"pings every {sc.ping_every:g} s")
    for f in sc.faults:
        fields = {k: v for k, v in f.to_dict().items() if k not in ("kind", "headers") and v not in (None, ())}
        parts.append(f"{f.kind}({', '.join(f'{k}={v}' for k, v in fields.items())})")
    if sc.attempts:
        parts.append("per attempt: " + " | ".join(describe(a) for a in sc.attempts))
    return "; ".join(parts)


def load(path: str | pathlib.Path | None = None) -> pd.DataFrame:
    """The stored atlas (``data/atlas/atlas.csv``) as a DataFrame."""
    file = pathlib.Path(path) if path is not None else ATLAS_DIR / "atlas.csv"
    if file.is_dir():
        file = file / "atlas.csv"
    if not file.is_file():
        raise BundleError(f"no atlas at {file}; build one with `kit atlas build`")
    df = pd.read_csv(file, dtype={"client_version": str}, keep_default_na=False, na_values={"attempts": [""]})
    df["attempts"] = pd.to_numeric(df["attempts"], errors="coerce").astype("Int64")
    return df


def environment(path: str | pathlib.Path | None = None) -> dict[str, Any]:
    """Where and with what the stored atlas was made (``data/atlas/environment.json``)."""
    file = pathlib.Path(path) if path is not None else ATLAS_DIR / "environment.json"
    return json.loads(file.read_text())


def lookup(message: str, atlas: pd.DataFrame | None = None, *, min_score: float = 0.8) -> pd.DataFrame:
    """Rows of the atlas whose message (or exception class) matches ``message``, best first.

    Matching is by whole words: case, ids (``req_...``), numbers and positions are
    normalised, punctuation ignored. A message found inside ``message`` (a log line, a
    stack trace) or ``message`` inside it scores 1, so ``"terminated"`` finds
    ``TypeError: terminated`` but not ``Unterminated string in JSON``; otherwise the
    word-level similarity must reach ``min_score``. Each hit says which bytes caused it
    (``scenario``, ``bytes``, and ``trace_phase`` x ``trace_cause``: the kit's own
    classification of the same bytes) and ``printed_by``: every client that prints it.
    """
    if not isinstance(message, str) or not message.strip():
        raise ConfigError("message", message, "expected the text of an error message")
    df = load() if atlas is None else atlas
    q = normalize(message)
    norm = [normalize(m) for m in df["message"].astype(str)]
    scores = []
    for msg, exc in zip(norm, df["exception"].astype(str), strict=False):
        name = normalize(exc.rsplit(".", 1)[-1]) if exc not in ("", "nan", "None") else ""
        s = max(_score(q, msg), _score(q, f"{name} {msg}".strip()) if name and msg else 0.0)
        if name and q == name:
            s = 1.0
        scores.append(s)
    out = df.assign(score=scores, _norm=norm)
    who: dict[str, str] = {}
    for m, g in out.groupby("_norm"):
        who[m] = ", ".join(sorted({f"{c} {v}".strip() for c, v in zip(g["client"], g["client_version"], strict=False)}))
    out = out[out["score"] >= min_score]
    out = out.assign(printed_by=[who.get(m, "") if m else "" for m in out["_norm"]]).drop(columns="_norm")
    out = out.sort_values(["score", "client", "scenario"], ascending=[False, True, True])
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------- build


def _node_version() -> str | None:
    node = shutil.which("node")
    if not node:
        return None
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _pins() -> dict[str, str]:
    from .node import PINNED

    return {pkg: f"{v} (engines checked against {_node_version() or 'no node'})" for pkg, v in PINNED.items()}


def _environment(options: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
    from ._version import __version__

    versions = {c: sorted({str(v) for v in vs if v}) for c, vs in rows.groupby("client")["client_version"]}
    env: dict[str, Any] = {
        "made": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "kit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "node": _node_version(),
        "clients": versions,
        "pinned_npm": _pins(),
        "rows": {f"{m}/{o}": int(v) for (m, o), v in rows.groupby(["mode", "outcome"]).size().items()}
        if len(rows)
        else {},
        "options": options,
    }
    for mod in ("httpx", "httpx2"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return env


def _protocol(client: str) -> str:
    return "openai" if client.startswith("openai") else "anthropic"


def _jobs(clients: list[str], names: list[str], modes: Iterable[str]) -> list[tuple[str, str, str]]:
    jobs = []
    for mode in modes:
        wanted = {"default": names, "timeout": TIMEOUT_SCENARIOS, "abort": ABORT_SCENARIOS}[mode]
        for name in [n for n in names if n in wanted]:
            for client in clients:
                if mode == "abort" and client.startswith("claude-code"):
                    continue  # a CLI has no caller-side abort to give it
                jobs.append((client, mode, name))
    return jobs


def _kit_policy(mode: str, hang_after: float) -> Any:
    from .policy import Policy

    if mode == "timeout":
        return Policy(headers=SHORT, idle=SHORT)
    if mode == "abort":
        return Policy(total=SHORT)
    return Policy(headers=hang_after, idle=min(hang_after, 3.5), total=hang_after)


def _run_watched(client: str, sc: Scenario, kwargs: dict[str, Any], hang_after: float) -> Any:
    """One run; a Python client still running after ``hang_after`` s is recorded as a hang
    (its thread ends when the build's server stops)."""
    import threading

    from . import node, sdk

    base = client.split("@", 1)[0]
    if base.startswith("claude-code"):  # a 250 MB CLI: its own start-up is part of the wait
        return sdk.run(client, sc, hang_after=hang_after * CLAUDE_CODE_WATCH, **kwargs)
    if base in node.PACKAGES:
        return sdk.run(client, sc, hang_after=hang_after, **kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["run"] = sdk.run(client, sc, **kwargs)
        except BaseException as exc:  # surfaced below, in the caller's thread
            box["error"] = exc

    count = ServerCount(kwargs["server"], scenario_url(kwargs["server"], sc, _protocol(client)))
    t0 = time.monotonic()
    th = threading.Thread(target=target, daemon=True, name=f"kit-atlas-{client}")
    th.start()
    th.join(hang_after)
    if "error" in box:
        raise box["error"]
    if "run" in box:
        return box["run"]
    from importlib.metadata import version

    return SDKRun(
        client,
        version(client.split(":", 1)[0].removesuffix("-python")),
        "",
        sc.name,
        "",
        "hang",
        message=f"no result after {hang_after:g} s (stopped by the kit)",
        attempts=count.attempts(),
        elapsed=time.monotonic() - t0,
        server_requests=count.requests(settle=0),
        options={**{k: v for k, v in kwargs.items() if k != "server"}, "hang_after": hang_after},
    )


def build(
    clients: Iterable[str] = DEFAULT_CLIENTS,
    scenarios: Iterable[str] | None = None,
    *,
    modes: Iterable[str] = tuple(MODES),
    hang_after: float = 20.0,
    workers: int = 4,
    out: str | pathlib.Path | None = ATLAS_DIR,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run every scenario through every client in every mode (:data:`MODES`); store and return the table.

    ``default`` rows: each client's own settings, every preset and :data:`EXTRA_SCENARIOS`;
    ``timeout`` rows: an explicit :data:`SHORT` timeout against slow and stalled bodies;
    ``abort`` rows: the caller aborts after :data:`SHORT` s. A run with no result after
    ``hang_after`` s is a ``hang`` row (``elapsed`` says how long it was watched). Runs go
    ``workers`` at a time, each on its own copy of the scenario (so attempts are counted
    per run). Every row carries the kit's own classification of the same bytes
    (``trace_phase`` x ``trace_cause``). Node clients without node are ``skipped`` rows.
    Ctrl-C stops the build and still writes the finished rows. ``out=None`` only returns.
    """
    import concurrent.futures as cf
    import itertools

    from . import node, sdk
    from .client import stream
    from .scenarios import PRESETS
    from .server import FaultServer

    clients = list(clients)
    modes = list(modes)
    for m in modes:
        if m not in MODES:
            raise ConfigError.unknown("mode", m, MODES)
    names = list(scenarios) if scenarios is not None else [*PRESETS, *EXTRA_SCENARIOS]
    for n in names:
        if n not in PRESETS and n not in EXTRA_SCENARIOS:
            raise ConfigError.unknown("scenario", n, [*PRESETS, *EXTRA_SCENARIOS])
    jobs = _jobs(clients, names, modes)
    for c in {c.split(":", 1)[0].removesuffix("-python") for c in clients if c.split(":", 1)[0].endswith("-python")}:
        sdk._import(c)  # import before any watchdog starts: a cold import can take seconds on a busy machine
    seeds = itertools.count(1)
    rows: list[dict[str, Any]] = []
    kit_traces: dict[tuple[str, str, str], tuple[str, str]] = {}
    t_start = time.monotonic()
    interrupted = False

    def own(name: str, protocol: str) -> Scenario:
        sc = _with_protocol(scenario(name), protocol)  # per-attempt scenarios too
        return dataclasses.replace(sc, seed=next(seeds), name=name)

    # the server in its own process: the SDK threads of this one must not delay its writes (GIL)
    with FaultServer(isolate=True) as server, cf.ThreadPoolExecutor(workers, thread_name_prefix="kit-atlas") as pool:

        def one(client: str, mode: str, name: str) -> dict[str, Any]:
            sc = own(name, _protocol(client))
            kwargs: dict[str, Any] = {"server": server}
            if mode == "timeout":
                kwargs["timeout"] = SHORT
            if mode == "abort":
                kwargs["abort_after"] = SHORT
            if client.startswith("claude-code"):
                kwargs.update(CLAUDE_CODE_KNOBS)
            if client.split("@", 1)[0] in node.PACKAGES or client.startswith("claude-code"):
                kwargs.pop("instrument", None)
            else:
                kwargs["instrument"] = False  # the kit's own trace is measured separately, once per scenario
            r = _run_watched(client, sc, kwargs, hang_after)
            row = r.row()
            row.update(
                client=client.split("@", 1)[0],
                mode=mode,
                scenario=name,
                message=redact_text(str(row["message"] or "")),  # an SDK may echo the error body
                requests=" ".join(
                    "json" if q.get("stream") is False else "stream"
                    for q in r.server_requests
                    if q.get("end") != "probe"
                ),
                options=json.dumps({k: v for k, v in r.options.items() if v is not None}, sort_keys=True),
                bytes=redact_text(describe(scenario(name))),
            )
            if r.outcome == "hang" and not row["elapsed"]:
                row["elapsed"] = round(hang_after, 3)
            return row

        def kit_trace(name: str, protocol: str, mode: str) -> tuple[str, str]:
            t = stream(server.url_for(own(name, protocol)), policy=_kit_policy(mode, hang_after))
            return t.outcome.phase, t.outcome.cause

        futures: dict[cf.Future[Any], tuple[str, ...]] = {}
        for key in sorted({(n, _protocol(c), m) for c, m, n in jobs}):
            futures[pool.submit(kit_trace, *key)] = ("kit", *key)
        for job in jobs:
            base = job[0].split("@", 1)[0]
            if (base in node.PACKAGES or base.startswith("claude-code")) and node.unavailable():
                rows.append(
                    {
                        "client": base,
                        "mode": job[1],
                        "scenario": job[2],
                        "outcome": "skipped",
                        "message": node.unavailable(),
                        "bytes": redact_text(describe(scenario(job[2]))),
                    }
                )
                continue
            futures[pool.submit(one, *job)] = job
        try:
            for fut in cf.as_completed(futures):
                what = futures[fut]
                if what[0] == "kit":
                    kit_traces[what[1:]] = fut.result()
                    continue
                row = fut.result()
                rows.append(row)
                if progress:
                    said = f"{row['exception']}: {str(row['message'])[:50]}" if row["exception"] else row["outcome"]
                    progress(
                        f"[{len(rows):>3}/{len(jobs)}] {what[0]:<24} {what[1]:<8} {what[2]:<26} {said}"
                        f"  ({row['attempts']} attempts, {row['elapsed']:.1f}s)"
                    )
            # a hang where the bytes do not stall forever is more likely a busy machine: run it again, alone
            again = [i for i, r in enumerate(rows) if r["outcome"] == "hang" and r["scenario"] not in EXTRA_SCENARIOS]
            for i in again:
                r = rows[i]
                client = next(
                    c
                    for c in clients
                    if c.split("@", 1)[0] == r["client"]
                    and ("@" not in c or c.split("@", 1)[1] in str(r["client_version"]))
                )
                rows[i] = one(client, r["mode"], r["scenario"])
                if progress:
                    progress(f"[again] {client:<24} {r['mode']:<8} {r['scenario']:<26} {rows[i]['outcome']}")
        except KeyboardInterrupt:
            interrupted = True
            for fut in futures:
                fut.cancel()
            if progress:
                progress(f"interrupted: writing the {len(rows)} finished rows")
    for row in rows:
        phase_cause = kit_traces.get((row["scenario"], _protocol(row["client"]), row["mode"]))
        if phase_cause:
            row["trace_phase"], row["trace_cause"] = phase_cause
    order = {m: i for i, m in enumerate(MODES)}
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.sort_values(
        ["mode", "client", "scenario"], key=lambda c: c.map(order) if c.name == "mode" else c
    ).reset_index(drop=True)
    seconds = time.monotonic() - t_start
    if out is not None:
        folder = pathlib.Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        df.to_csv(folder / "atlas.csv", index=False)
        options = {
            "clients": clients,
            "scenarios": names,
            "modes": {m: MODES[m] for m in modes},
            "short": SHORT,
            "hang_after": hang_after,
            "workers": workers,
            "claude_code": CLAUDE_CODE_KNOBS,
            "build_seconds": round(seconds, 1),
            "interrupted": interrupted,
        }
        (folder / "environment.json").write_text(json.dumps(_environment(options, df), indent=2) + "\n")
    return df
