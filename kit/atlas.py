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

__all__ = ["COLUMNS", "DEFAULT_CLIENTS", "build", "load", "lookup", "normalize"]

ATLAS_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "atlas"
COLUMNS = [
    "client",
    "client_version",
    "method",
    "scenario",
    "outcome",
    "exception",
    "message",
    "attempts",
    "elapsed",
    "trace_phase",
    "trace_cause",
]
#: clients the atlas runs by default (Node ones are skipped where node is absent)
DEFAULT_CLIENTS = (
    "anthropic-python",
    "anthropic-python:create",
    "openai-python",
    "anthropic-node@0.39",
    "anthropic-node",
    "anthropic-node:create",
    "openai-node",
)

_ID = re.compile(r"\b(?:req|msg|toolu|chatcmpl|resp)_[0-9a-z]+\b|\b[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b")
_NUM = re.compile(r"\d+(?:\.\d+)?")
_PUNCT = re.compile(r"[^a-z#]+")


def normalize(message: str) -> str:
    """A message with case, ids, numbers and punctuation taken out (for matching)."""
    text = _ID.sub(" # ", str(message).lower())
    text = _NUM.sub("#", text)
    return " ".join(_PUNCT.sub(" ", text).split())


def _score(query: str, message: str) -> float:
    if not query or not message:
        return 0.0
    if query in message or (len(message) >= 6 and message in query):
        return 1.0
    return difflib.SequenceMatcher(None, query, message, autojunk=False).ratio()


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

    Case, numbers, ids and punctuation are ignored; a message found inside ``message``
    (a log line, a stack trace) or ``message`` inside it scores 1, otherwise the
    similarity ratio must reach ``min_score``.
    """
    if not isinstance(message, str) or not message.strip():
        raise ConfigError("message", message, "expected the text of an error message")
    df = load() if atlas is None else atlas
    q = normalize(message)
    scores = []
    for msg, exc in zip(df["message"].astype(str), df["exception"].astype(str), strict=False):
        s = _score(q, normalize(msg))
        name = exc.rsplit(".", 1)[-1].lower()
        if name and name not in ("", "nan") and q == normalize(name):
            s = max(s, 1.0)
        scores.append(s)
    out = df.assign(score=scores)
    out = out[out["score"] >= min_score].sort_values(["score", "client", "scenario"], ascending=[False, True, True])
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
        "options": options,
    }
    for mod in ("httpx", "httpx2"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return env


def build(
    clients: Iterable[str] = DEFAULT_CLIENTS,
    scenarios: Iterable[str] | None = None,
    *,
    timeout: float = 5.0,
    max_retries: int | None = None,
    hang_after: float = 20.0,
    out: str | pathlib.Path | None = ATLAS_DIR,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run every scenario through every client; store and return the table.

    ``timeout`` (s) is given to every SDK (as in the DESIGN table: 5 s), ``max_retries``
    None keeps each SDK's default. Node clients are skipped (with a row saying why) where
    node is absent. ``out=None`` only returns the table.
    """
    from . import node, sdk
    from .scenarios import PRESETS
    from .server import FaultServer

    clients = list(clients)
    names = list(scenarios) if scenarios is not None else list(PRESETS)
    for n in names:
        if n not in PRESETS:
            raise ConfigError.unknown("scenario", n, PRESETS)
    rows = []
    with FaultServer() as server:
        for client in clients:
            is_node = client.split("@", 1)[0] in node.PACKAGES
            if is_node and node.unavailable():
                reason = node.unavailable()
                if progress:
                    progress(f"{client}: skipped ({reason})")
                continue
            for name in names:
                t = time.monotonic()
                kwargs: dict[str, Any] = {"server": server, "timeout": timeout, "max_retries": max_retries}
                if is_node:
                    kwargs["hang_after"] = hang_after
                r = sdk.run(client, name, **kwargs)
                row = r.row()
                # an SDK's message may echo the error body (and a key in it): the atlas is shared
                row["message"] = redact_text(str(row["message"] or ""))
                row["scenario"] = name
                rows.append(row)
                if progress:
                    what = f"{r.exception}: {r.message[:60]}" if r.exception else r.outcome
                    progress(f"{client:<24} {name:<24} {what}  ({r.attempts} attempts, {time.monotonic() - t:.1f}s)")
    df = pd.DataFrame(rows, columns=COLUMNS)
    if out is not None:
        folder = pathlib.Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        df.to_csv(folder / "atlas.csv", index=False)
        options = {
            "clients": list(clients),
            "scenarios": names,
            "timeout": timeout,
            "max_retries": max_retries,
            "hang_after": hang_after,
        }
        (folder / "environment.json").write_text(json.dumps(_environment(options, df), indent=2) + "\n")
    return df
