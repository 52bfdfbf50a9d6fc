"""``kit run experiment.toml -o data/runs/NAME``: run an experiment config from a file.

The TOML (or JSON) file holds the same fields as :meth:`kit.Experiment.from_dict`::

    name = "timeout-sweep"
    trials = 30
    seed = 7
    concurrency = "auto"                    # optional run option (or a number)
    scenarios = ["ok", {preset = "slow_first_byte", first_byte_delay = 2.0}]
    networks = ["direct", {latency = "200ms"}]
    policies = [{first_chunk = 1.0}, {first_chunk = 4.0}]

A progress line goes to stderr; Ctrl-C keeps the finished trials (saved to the folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from .._errors import BundleError, ConfigError

__all__ = ["load_config", "main", "register"]


def load_config(path: str | Path) -> dict[str, Any]:
    """The experiment config in a ``.toml`` or ``.json`` file (BundleError names a bad file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise BundleError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({exc})") from None


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run",
        help="run an experiment config (TOML) and save the result as a bundle",
        description="Run the grid in an experiment.toml and save it as a bundle folder (see kit.Experiment).",
    )
    parser.add_argument("config", help="experiment.toml (or .json)")
    parser.add_argument("-o", "--out", required=True, help="bundle folder to write, e.g. data/runs/NAME")
    parser.add_argument(
        "--concurrency",
        default=None,
        help="trials in flight: a number, or 'auto' (default: the file's, else auto: adapt to the kit's fidelity budget)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per two cores; 0: in this process)"
    )
    parser.add_argument("--trials", type=int, default=None, help="override the trials per cell")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from .._signals import sigterm_as_sigint
    from ..experiment import DEFAULT_CONCURRENCY, Experiment

    sigterm_as_sigint()  # `kill` keeps the finished trials, as Ctrl-C does

    cfg = load_config(args.config)
    if not isinstance(cfg, dict):
        raise ConfigError("config", type(cfg).__name__, "expected a table of experiment fields")
    concurrency = args.concurrency or cfg.get("concurrency") or DEFAULT_CONCURRENCY
    if args.trials is not None:
        cfg["trials"] = args.trials
    experiment = Experiment.from_dict(cfg)
    print(f"kit run: {experiment!r} -> {args.out}", file=sys.stderr)
    if isinstance(concurrency, str) and concurrency != "auto":
        try:
            concurrency = int(concurrency)
        except ValueError:
            raise ConfigError("--concurrency", concurrency, "a whole number >= 1 or 'auto'") from None
    result = experiment.run(
        concurrency, workers=args.workers, out=args.out, overwrite=args.overwrite, progress=not args.quiet
    )
    t = result.trials
    state = "complete" if result.complete else "INTERRUPTED (finished trials kept)"
    ok = int(t["ok"].sum()) if len(t) else 0
    flagged = int((~t["within_budget"]).sum()) if "within_budget" in t else 0
    meta = getattr(result, "meta", {})
    print(
        f"kit run: {len(t)} trials, {ok} ok, {state}; concurrency {meta.get('concurrency')} "
        f"({meta.get('concurrency_mode')}); {flagged} over the fidelity budget; bundle: {args.out}"
    )
    return 0 if result.complete else 130
