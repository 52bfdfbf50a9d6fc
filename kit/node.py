"""The Node SDKs (``@anthropic-ai/sdk``, ``openai``) against a scenario: where the incident's message comes from.

Packages are installed with npm, once per exact version, into a cache folder
(``~/.cache/kit/node/<package>-<version>``, or ``$KIT_NODE_CACHE``), never into the
project. Each run starts ``node`` on a small script that makes one streaming call and
prints what the SDK threw (``err.constructor.name`` and ``err.message``) or returned::

    kit.node.run("anthropic-node@0.39", "empty_200", server=server)   # incident era, early 2025
    kit.node.run("anthropic-node", url)                                # latest

Client names: ``anthropic-node[@version]`` (``messages.stream``),
``anthropic-node:create[@version]`` (``messages.create({stream: true})``),
``openai-node[@version]`` (``chat.completions.create({stream: true})``). Without node
or npm, :func:`unavailable` says why and :func:`run` returns a ``skipped`` run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

from ._errors import ConfigError, KitError
from ._sdkrun import SDKRun, ServerCount, resolve
from .scenarios import Scenario
from .server import FaultServer

__all__ = ["PACKAGES", "NodeUnavailable", "ensure_package", "installed", "run", "unavailable"]

#: client name -> (npm package, SDK family, call)
PACKAGES = {
    "anthropic-node": ("@anthropic-ai/sdk", "anthropic", "stream"),
    "anthropic-node:create": ("@anthropic-ai/sdk", "anthropic", "create"),
    "openai-node": ("openai", "openai", "create"),
    "openai-node:stream": ("openai", "openai", "stream"),
}
METHODS = {
    ("anthropic", "stream"): "messages.stream",
    ("anthropic", "create"): "messages.create({stream: true})",
    ("openai", "create"): "chat.completions.create({stream: true})",
    ("openai", "stream"): "chat.completions.stream",
}
#: the exact versions a bare client name runs (the atlas's clients): the newest releases whose
#: ``engines`` accept Node 20, checked when they were pinned; change them here, then `kit atlas build`
PINNED = {
    "@anthropic-ai/sdk": "1.15.0",
    "openai": "6.39.1",
    "@anthropic-ai/claude-code": "2.1.197",
}
INSTALL_TIMEOUT = 180.0  # seconds npm may take for one package (a few seconds on a normal link)

_RUNNER = r"""
const cfg = JSON.parse(process.env.KIT_NODE_CFG);
const path = require('path');
const t0 = process.hrtime.bigint();
let finished = false;
// side_abort: an unrelated child process killed by its own AbortController (as a CLI's
// tool timer does); its AbortError is reported next to, not instead of, the SDK's result
let side = null, sidePending = false;
const sideWaiters = [];
if (cfg.sideAbort !== null && cfg.sideAbort !== undefined) {
  sidePending = true;
  const ac = new AbortController();
  require('child_process').execFile(process.execPath, ['-e', 'setTimeout(() => {}, 600000)'], { signal: ac.signal }, (err) => {
    side = { exception: err ? err.name : null, message: err ? String(err.message) : 'exited',
             t: Number(process.hrtime.bigint() - t0) / 1e9 };
    sidePending = false;
    sideWaiters.splice(0).forEach((f) => f());
  });
  setTimeout(() => ac.abort(), cfg.sideAbort);
}
function done(obj) {
  if (finished) return;
  finished = true;
  obj.elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const write = () => {
    if (side) obj.side = side;
    process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(0));
  };
  if (sidePending) sideWaiters.push(write); else write();
}
function fail(err, how) {
  const cause = err && err.cause ? String(err.cause.message || err.cause) : null;
  done({
    outcome: 'raised',
    how: how,
    exception: err && err.constructor ? err.constructor.name : typeof err,
    message: String(err && err.message !== undefined ? err.message : err),
    cause: cause,
  });
}
process.on('unhandledRejection', (err) => fail(err, 'unhandledRejection'));
process.on('uncaughtException', (err) => fail(err, 'uncaughtException'));
async function main() {
  const mod = require(path.join(cfg.dir, 'node_modules', cfg.pkg));
  const Client = mod.default || mod.Anthropic || mod.OpenAI || mod;
  const opts = { apiKey: 'kit-dummy-key', baseURL: cfg.baseURL };
  if (cfg.timeout !== null) opts.timeout = cfg.timeout;
  if (cfg.maxRetries !== null) opts.maxRetries = cfg.maxRetries;
  const client = new Client(opts);
  const messages = [{ role: 'user', content: 'Say hello, slowly.' }];
  // signal_timeout: the caller's own AbortController deadline on the whole request; first a probe
  // (HEAD, not counted by the fault server) so that the deadline is not spent loading the HTTP stack
  if (cfg.signalTimeout !== null && cfg.signalTimeout !== undefined) {
    await fetch(cfg.baseURL, { method: 'HEAD' }).catch(() => {});
  }
  const reqOpts = cfg.signalTimeout !== null && cfg.signalTimeout !== undefined
    ? { signal: AbortSignal.timeout(cfg.signalTimeout) } : undefined;
  let result;
  if (cfg.sdk === 'anthropic' && cfg.method === 'stream') {
    const s = client.messages.stream({ model: 'claude-kit-1', max_tokens: 1024, messages }, reqOpts);
    const msg = await s.finalMessage();
    result = { stop_reason: msg.stop_reason, text_chars: msg.content.map((b) => b.text || '').join('').length };
  } else if (cfg.sdk === 'anthropic') {
    let n = 0, last = null;
    const s = await client.messages.create({ model: 'claude-kit-1', max_tokens: 1024, messages, stream: true }, reqOpts);
    for await (const ev of s) { n++; last = ev.type; }
    result = { events: n, last_event: last };
  } else if (cfg.method === 'stream') {
    const api = client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions;
    const s = api.stream({ model: 'gpt-kit-1', messages, stream: true }, reqOpts);
    const c = await s.finalChatCompletion();
    result = { finish_reason: c.choices[0] && c.choices[0].finish_reason,
               text_chars: ((c.choices[0] && c.choices[0].message.content) || '').length };
  } else {
    let n = 0, finish = null, text = 0;
    const s = await client.chat.completions.create({ model: 'gpt-kit-1', messages, stream: true }, reqOpts);
    for await (const c of s) {
      n++;
      for (const ch of c.choices || []) {
        finish = ch.finish_reason || finish;
        text += ((ch.delta && ch.delta.content) || '').length;
      }
    }
    result = { chunks: n, finish_reason: finish, text_chars: text };
  }
  done({ outcome: 'returned', result });
}
main().catch((err) => fail(err, 'await'));
"""


class NodeUnavailable(KitError, RuntimeError):
    """node or npm is missing, or a package could not be installed; the message says which."""


def unavailable() -> str | None:
    """Why Node clients cannot run here (None if ``node`` and ``npm`` are on PATH)."""
    missing = [t for t in ("node", "npm") if shutil.which(t) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH; install Node.js 18+ (e.g. apt-get install nodejs npm)"
    return None


def cache_dir() -> pathlib.Path:
    """Where npm packages are installed (``$KIT_NODE_CACHE`` or ``~/.cache/kit/node``)."""
    env = os.environ.get("KIT_NODE_CACHE")
    base = pathlib.Path(env) if env else pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "kit"
    return (base if env else base / "node").resolve()


def _safe(pkg: str) -> str:
    return pkg.replace("@", "").replace("/", "-")


_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


def _key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v.split("-")[0])[:3])


def installed(pkg: str) -> list[str]:
    """Exact versions of ``pkg`` in the cache, oldest first."""
    root = cache_dir()
    prefix = _safe(pkg) + "-"
    if not root.is_dir():
        return []
    found = [
        p.name[len(prefix) :]
        for p in root.iterdir()
        if p.name.startswith(prefix) and (p / "node_modules" / pkg / "package.json").is_file()
    ]
    return sorted((v for v in found if _VERSION.match(v)), key=_key)


_RESOLVED: dict[tuple[str, str], str] = {}  # npm answers for this process (latest does not move mid-session)


def _resolve_version(pkg: str, spec: str) -> str:
    if spec == "latest" and pkg in PINNED:
        spec = PINNED[pkg]
    if _VERSION.match(spec):
        return spec
    if (pkg, spec) in _RESOLVED:
        return _RESOLVED[(pkg, spec)]
    _RESOLVED[(pkg, spec)] = exact = _npm_version(pkg, spec)
    return exact


def _npm_version(pkg: str, spec: str) -> str:
    have = installed(pkg)
    if spec != "latest":
        match = [v for v in have if v == spec or v.startswith(spec + ".")]
        if match:
            return match[-1]
    try:
        out = subprocess.run(
            ["npm", "view", f"{pkg}@{spec}", "version", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        value = json.loads(out)
        versions = value if isinstance(value, list) else [value]
        return max(versions, key=_key)
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        if spec == "latest" and have:
            return have[-1]  # offline: the newest we have
        raise NodeUnavailable(f"cannot resolve {pkg}@{spec} with npm ({exc})") from None


def ensure_package(pkg: str, version: str = "latest", *, timeout: float = INSTALL_TIMEOUT) -> tuple[pathlib.Path, str]:
    """Install ``pkg@version`` into the cache unless there; returns (folder, exact version)."""
    reason = unavailable()
    if reason:
        raise NodeUnavailable(reason)
    exact = _resolve_version(pkg, version)
    root = cache_dir()
    final = root / f"{_safe(pkg)}-{exact}"
    if (final / "node_modules" / pkg / "package.json").is_file():
        return final, exact
    _check_engines(pkg, exact)
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        (tmp / "package.json").write_text('{"private": true}\n')
        proc = subprocess.run(
            ["npm", "install", "--prefix", str(tmp), "--no-audit", "--no-fund", "--loglevel=error", f"{pkg}@{exact}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise NodeUnavailable(f"npm install {pkg}@{exact} failed: {proc.stderr.strip()[-500:]}")
        try:
            tmp.rename(final)  # atomic: a concurrent installer of the same version may win, which is fine
        except OSError:
            if not (final / "node_modules" / pkg / "package.json").is_file():
                raise
    except subprocess.TimeoutExpired:
        raise NodeUnavailable(f"npm install {pkg}@{exact} took over {timeout:g} s") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final, exact


def node_version() -> tuple[int, ...] | None:
    """The installed node's version as numbers (None without node)."""
    if shutil.which("node") is None:
        return None
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return _key(out.strip().lstrip("v")) or None


def engines_fit(range_: str | None, version: tuple[int, ...]) -> bool:
    """Whether a package's ``engines.node`` range (``>=18.0.0``, ``^20 || >=22``...) accepts ``version``."""
    if not range_ or range_.strip() in ("*", ""):
        return True
    for alt in range_.split("||"):
        ok = True
        for part in alt.split():
            m = re.match(r"^(>=|<=|>|<|\^|~|=)?v?(\d+(?:\.\d+){0,2})", part)
            if not m:
                continue
            op, want = m.group(1) or "=", _key(m.group(2))
            have = version[: len(want)]
            ok &= {
                ">=": have >= want,
                ">": have > want,
                "<=": have <= want,
                "<": have < want,
                "^": have[:1] == want[:1] and version >= want,
                "~": have[:2] == want[:2] and version >= want,
                "=": have == want,
            }[op]
        if ok:
            return True
    return False


def _check_engines(pkg: str, exact: str) -> None:
    """Refuse (before installing) a version whose ``engines.node`` does not accept this node."""
    have = node_version()
    if have is None:
        return
    try:
        out = subprocess.run(
            ["npm", "view", f"{pkg}@{exact}", "engines", "--json"], capture_output=True, text=True, timeout=60
        ).stdout
        engines = json.loads(out) if out.strip() else {}
    except (subprocess.SubprocessError, OSError, ValueError):
        return  # offline: npm install decides
    need = engines.get("node") if isinstance(engines, dict) else None
    if not engines_fit(need, have):
        raise NodeUnavailable(
            f"{pkg}@{exact} needs node {need} (engines) but this node is v{'.'.join(map(str, have))}: not installed; "
            f"pick a version that supports it (kit pins {pkg}@{PINNED.get(pkg, '?')})"
        )


def run(
    client: str,
    url: str | Scenario,
    *,
    server: FaultServer | None = None,
    max_retries: int | None = None,
    timeout: float | None = None,
    hang_after: float = 30.0,
    instrument: bool = False,
    signal_timeout: float | None = None,
    side_abort: float | None = None,
) -> SDKRun:
    """One streaming call through a Node SDK (``anthropic-node@0.39``, ``openai-node``...).

    ``timeout`` (seconds) and ``max_retries`` go to the SDK (default: its own: 600 s until
    headers, 2 retries). If node has not answered after ``hang_after`` seconds it is
    stopped and the run's outcome is ``hang`` (the TypeScript SDK has no body timer).
    ``instrument`` is accepted for symmetry with the Python runners; Node traffic is seen
    from the server's side only (``server_requests``).

    ``signal_timeout`` (s) passes ``{signal: AbortSignal.timeout(ms)}`` to the call: the
    caller's own deadline on the whole request, body included. ``side_abort`` (s) starts an
    unrelated child process and aborts it with its own ``AbortController`` after that
    long; its ``AbortError`` lands in ``result["side_error"]`` (the stream is untouched).
    """
    del instrument
    name, _, version_spec = client.partition("@")
    if name not in PACKAGES:
        raise ConfigError.unknown("client", client, PACKAGES)
    pkg, family, call = PACKAGES[name]
    version = version_spec or "latest"
    method = METHODS[(family, call)]
    reason = unavailable()
    url_s, scenario, server = resolve(url, server, family)
    if reason:
        return SDKRun(name, version, method, scenario, url_s, "skipped", message=reason)
    folder, exact = ensure_package(pkg, version)
    base = url_s.rstrip("/") + ("/v1" if family == "openai" else "")
    cfg = {
        "dir": str(folder),
        "pkg": pkg,
        "sdk": family,
        "method": call,
        "baseURL": base,
        "timeout": None if timeout is None else int(timeout * 1000),
        "maxRetries": max_retries,
        "signalTimeout": None if signal_timeout is None else int(signal_timeout * 1000),
        "sideAbort": None if side_abort is None else int(side_abort * 1000),
    }
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env["NODE_NO_WARNINGS"] = "1"
    env["KIT_NODE_CFG"] = json.dumps(cfg)
    count = ServerCount(server, url_s)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["node", "-e", _RUNNER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(folder),
    )
    try:
        out, err = proc.communicate(timeout=hang_after)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
        return SDKRun(
            name,
            exact,
            method,
            scenario,
            url_s,
            "hang",
            message=f"no result after {hang_after:g} s (stopped by the kit)",
            attempts=count.attempts(),
            elapsed=time.monotonic() - t0,
            server_requests=count.requests(settle=0),
            options={"max_retries": max_retries, "timeout": timeout, "hang_after": hang_after},
        )
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise NodeUnavailable(f"node printed no result (exit {proc.returncode}): {err.strip()[-800:]}")
    data = json.loads(line)
    message = data.get("message", "")
    result = data.get("result") or ({"cause": data["cause"]} if data.get("cause") else None)
    if data.get("side"):
        result = {**(result or {}), "side_error": data["side"]}
    extra = {k: v for k, v in (("signal_timeout", signal_timeout), ("side_abort", side_abort)) if v is not None}
    return SDKRun(
        client=name,
        client_version=exact,
        method=method,
        scenario=scenario,
        url=url_s,
        outcome=data["outcome"],
        exception=data.get("exception"),
        message=message,
        result=result,
        attempts=count.attempts(),
        elapsed=float(data.get("elapsed", time.monotonic() - t0)),
        server_requests=count.requests(),
        options={"max_retries": max_retries, "timeout": timeout, **extra},
    )
