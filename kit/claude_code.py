"""The Claude Code CLI (``@anthropic-ai/claude-code`` from npm) against a scenario.

The CLI in which the reference incident was reported. Each run starts ``claude -p`` (print
mode: one prompt, one answer, exit) in a throw-away home folder, pointed at the fault
server with a dummy key, and keeps what it printed::

    kit.claude_code.run("empty_200", server=server)
    # <SDKRun claude-code empty_200 exit 1: 'API Error: API returned an empty or malformed ...'>

Environment knobs (documented by the CLI or read by it) that change what it does on a
failing stream, passed as keyword arguments and recorded in ``SDKRun.options``:

- ``max_retries`` -> ``CLAUDE_CODE_MAX_RETRIES`` (its default is 10, with backoff);
- ``timeout`` (s) -> ``API_TIMEOUT_MS`` (the SDK timeout it passes on);
- ``env``: anything else, e.g. ``CLAUDE_CODE_DISABLE_NONSTREAMING_FALLBACK=1`` (no
  non-streaming retry after a failed stream), ``CLAUDE_ENABLE_STREAM_WATCHDOG=1`` and
  ``CLAUDE_STREAM_IDLE_TIMEOUT_MS`` (its idle watchdog on the stream).

Telemetry, auto-update and other non-essential traffic are switched off. The version run
by default is :data:`kit.node.PINNED` (a release whose ``engines`` accept Node 20).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from ._sdkrun import SDKRun, ServerCount, resolve
from .node import PINNED, ensure_package, unavailable
from .scenarios import Scenario
from .server import FaultServer

__all__ = ["PACKAGE", "QUIET_ENV", "run"]

PACKAGE = "@anthropic-ai/claude-code"
METHOD = "claude -p"
#: always set: no telemetry, no auto-update, no traffic but the API call under test
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
}


def _binary(folder: os.PathLike[str] | str) -> list[str]:
    pkg_dir = os.path.join(folder, "node_modules", *PACKAGE.split("/"))
    with open(os.path.join(pkg_dir, "package.json")) as f:
        meta = json.load(f)
    bin_ = meta.get("bin")
    rel = bin_ if isinstance(bin_, str) else (bin_ or {}).get("claude", "cli.js")
    path = os.path.join(pkg_dir, rel)
    return ["node", path] if path.endswith((".js", ".mjs", ".cjs")) else [path]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run(
    url: str | Scenario,
    *,
    server: FaultServer | None = None,
    version: str = "latest",
    max_retries: int | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    hang_after: float = 60.0,
    prompt: str = "Say hello, slowly.",
    **_ignored: Any,
) -> SDKRun:
    """One ``claude -p PROMPT`` against ``url`` (or a scenario name with ``server``).

    ``outcome``: ``returned`` (exit 0), ``raised`` (non-zero exit; ``exception`` is
    ``exit N`` and ``message`` the last line it printed), ``hang`` (no exit after
    ``hang_after`` s: stopped by the kit) or ``skipped`` (no node/npm here).
    """
    url_s, scenario, server = resolve(url, server, "anthropic")
    knobs = dict(env or {})
    if max_retries is not None:
        knobs["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    if timeout is not None:
        knobs["API_TIMEOUT_MS"] = str(int(timeout * 1000))
    options = {"max_retries": max_retries, "timeout": timeout, "env": knobs, "hang_after": hang_after}
    reason = unavailable()
    if reason:
        return SDKRun("claude-code", version, METHOD, scenario, url_s, "skipped", message=reason, options=options)
    folder, exact = ensure_package(PACKAGE, PINNED[PACKAGE] if version == "latest" else version)
    home = tempfile.mkdtemp(prefix="kit-claude-")
    child_env = {
        k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("ANTHROPIC_")
    }
    child_env.update(QUIET_ENV)
    child_env.update({"HOME": home, "ANTHROPIC_BASE_URL": url_s, "ANTHROPIC_API_KEY": "kit-dummy-key", **knobs})
    count = ServerCount(server, url_s)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            [*_binary(folder), "-p", prompt, "--model", "claude-kit-1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
            cwd=home,
        )
        try:
            out, err = proc.communicate(timeout=hang_after)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            return SDKRun(
                "claude-code",
                exact,
                METHOD,
                scenario,
                url_s,
                "hang",
                message=f"no result after {hang_after:g} s (stopped by the kit)",
                attempts=count.attempts(),
                elapsed=time.monotonic() - t0,
                server_requests=count.requests(settle=0),
                options=options,
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    elapsed = time.monotonic() - t0
    ok = proc.returncode == 0
    return SDKRun(
        client="claude-code",
        client_version=exact,
        method=METHOD,
        scenario=scenario,
        url=url_s,
        outcome="returned" if ok else "raised",
        exception=None if ok else f"exit {proc.returncode}",
        message="" if ok else _last_line(out) or _last_line(err),
        result={"text_chars": len(out.strip())} if ok else None,
        attempts=count.attempts(),
        elapsed=elapsed,
        server_requests=count.requests(),
        options=options,
    )
