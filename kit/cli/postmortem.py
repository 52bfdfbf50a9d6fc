"""``kit postmortem new NAME [-o DIR]``: start an incident write-up from the postmortem template."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .._errors import ConfigError

__all__ = ["TEMPLATE", "main", "new", "register"]

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "postmortem.ipynb"


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.")
    if not slug:
        raise ConfigError("name", name, "expected a name with letters or digits, e.g. 'empty-200-march'")
    return slug


def new(name: str, out_dir: str | Path = ".", *, bundle: str | None = None, overwrite: bool = False) -> Path:
    """Write ``<out_dir>/<name>.ipynb`` from the postmortem template; returns its path.

    The title becomes ``name``; ``bundle`` (a bundle folder, HAR or CSV path) fills the
    template's ``EVIDENCE`` parameter, else the notebook builds a small demo bundle of
    its own so it runs as created. Refuses to replace a file unless ``overwrite``.
    """
    import nbformat

    slug = _slug(name)
    dest = Path(out_dir) / f"{slug}.ipynb"
    if dest.exists() and not overwrite:
        raise ConfigError("name", name, f"{dest} exists; pick another name or pass --force")
    nb = nbformat.read(TEMPLATE, as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace("{{TITLE}}", name.strip())
        if "parameters" in cell.metadata.get("tags", []) and bundle is not None:
            cell.source = cell.source.replace("EVIDENCE = None", f"EVIDENCE = {str(bundle)!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "postmortem",
        help="start a postmortem notebook from the template (kit postmortem new NAME)",
        description="Creates a notebook with the postmortem's shape, its cells wired to a bundle of evidence.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p_new = sub.add_parser("new", help="create NAME.ipynb from the template")
    p_new.add_argument("name", help="the incident's name; also the file name")
    p_new.add_argument("-o", "--out", default=".", help="folder to write into (default: here)")
    p_new.add_argument("--bundle", default=None, help="evidence to wire in: a bundle folder, a .har or a .csv")
    p_new.add_argument("--force", action="store_true", help="replace an existing notebook")
    p_new.set_defaults(func=main)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    return parser


def main(args: argparse.Namespace) -> int:
    path = new(args.name, args.out, bundle=args.bundle, overwrite=args.force)
    print(f"kit postmortem: created {path}")
    print(f"  open it with: jupyter lab {path}")
    return 0
