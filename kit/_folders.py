"""Folders kit writes (bundles, run folders): only ever replaced when kit provably wrote them.

A folder kit creates holds a marker file (:data:`MARKER`, JSON with kit's signature and
the names kit put there). ``overwrite=True`` replaces a folder only when the marker (or,
for bundles written before markers, a ``bundle.json`` of format ``kit.bundle``) says it
is kit's AND every entry in it is one kit writes. Anything else is refused with a
:class:`~kit.ConfigError` naming what would have been lost. The working directory and
its parents are never replaced.

Replacing is write beside, then swap: the new folder is complete in a hidden sibling
before the old one is renamed aside, the new one renamed in, and the old one removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ._errors import ConfigError

__all__ = ["MARKER", "check_replaceable", "check_target", "discard_aside", "prepare_folder", "swap_in", "write_marker"]

MARKER = ".kit-folder"
SIGNATURE = "kit.folder/1"
# every name kit itself writes at the top of a bundle / run folder
KIT_FILES = frozenset({MARKER, "bundle.json", "experiment.json", "trials.jsonl", "parts", "tables", "recording.har"})
TABLE_SUFFIXES = (".parquet", ".csv")


def write_marker(path: Path) -> None:
    """Mark ``path`` as a folder kit wrote (so a later ``overwrite`` may replace it)."""
    (path / MARKER).write_text(json.dumps({"signature": SIGNATURE, "files": sorted(KIT_FILES)}) + "\n")


def _is_marked(path: Path) -> bool:
    try:
        doc = json.loads((path / MARKER).read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("signature") == SIGNATURE:
            return True
    except (OSError, ValueError):
        pass
    # bundles saved before markers existed: a finished bundle's manifest vouches for it
    try:
        with (path / "bundle.json").open(encoding="utf-8") as f:
            head = f.read(4096)
        return '"format": "kit.bundle"' in head
    except (OSError, ValueError):
        return False


def _foreign_entries(path: Path) -> list[str]:
    """Entries of ``path`` kit does not write (what an overwrite would lose)."""
    foreign = []
    for entry in sorted(os.listdir(path)):
        p = path / entry
        if entry not in KIT_FILES or p.is_symlink():
            foreign.append(entry)
        elif entry == "tables":
            if not p.is_dir():
                foreign.append(entry)
                continue
            for sub in sorted(os.listdir(p)):
                q = p / sub
                if q.is_symlink() or not q.is_file() or not sub.endswith(TABLE_SUFFIXES):
                    foreign.append(f"tables/{sub}")
        elif entry == "parts" and p.is_dir():  # a run's worker journals and Parquet parts
            foreign += [f"parts/{x}" for x in _foreign_parts(p)]
        elif not p.is_file():
            foreign.append(entry + "/")
    return foreign


def _foreign_parts(path: Path) -> list[str]:
    """Entries of a run's ``parts`` folder kit does not write: it holds ``chunk-<n>.jsonl``
    files and ``part-<n>/`` (or a hidden ``.part-<n>...tmp/`` being written) of ``.parquet`` files."""
    foreign = []
    for entry in sorted(os.listdir(path)):
        p = path / entry
        if p.is_symlink():
            foreign.append(entry)
        elif entry.startswith("chunk-") and entry.endswith(".jsonl") and p.is_file():
            continue
        elif entry.startswith(("part-", ".part-")) and p.is_dir():
            foreign += [
                f"{entry}/{f}"
                for f in sorted(os.listdir(p))
                if (p / f).is_symlink() or not (p / f).is_file() or not f.endswith(".parquet")
            ]
        else:
            foreign.append(entry)
    return foreign


def _under_cwd(path: Path) -> bool:
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    target = path.resolve()
    return target == cwd or target in cwd.parents


def check_target(path: Path, *, overwrite: bool) -> None:
    """Raise :class:`~kit.ConfigError` unless kit may write a folder at ``path``.

    Refused: the working directory or a parent of it (even empty), an existing non-empty
    path without ``overwrite``, and with it anything :func:`check_replaceable` refuses.
    """
    if _under_cwd(path):
        raise ConfigError(
            "path", str(path), "is the working directory (or contains it); kit writes a new folder, e.g. runs/NAME"
        )
    if _nonempty(path):
        if not overwrite:
            raise ConfigError("path", str(path), "exists already; pass overwrite=True to replace it")
        check_replaceable(path)


def check_replaceable(path: Path) -> None:
    """Raise :class:`~kit.ConfigError` unless ``path`` is a folder kit wrote and may replace."""
    if path.is_symlink() or path.is_file():
        raise ConfigError("path", str(path), "is a file or a link, not a folder kit wrote; refusing to replace it")
    foreign = _foreign_entries(path)
    if not _is_marked(path):
        listing = ", ".join(foreign[:8] or sorted(os.listdir(path))[:8])
        raise ConfigError(
            "path",
            str(path),
            f"was not written by kit (no {MARKER} marker); refusing to replace it (it holds {listing})",
        )
    if foreign:
        more = f" and {len(foreign) - 8} more" if len(foreign) > 8 else ""
        raise ConfigError(
            "path",
            str(path),
            f"holds files kit did not write, which overwrite would delete: {', '.join(foreign[:8])}{more}; "
            "move them out or pick a new folder",
        )


def _nonempty(path: Path) -> bool:
    return path.exists() and (path.is_file() or path.is_symlink() or any(path.iterdir()))


def prepare_folder(path: Path, *, overwrite: bool) -> Path | None:
    """Make ``path`` ready for a run; returns where an old kit folder was set aside (or None).

    An existing non-empty folder is refused unless ``overwrite`` and :func:`check_replaceable`
    pass; it is then renamed aside (not deleted) until the caller's new bundle is in place
    (:func:`discard_aside`), so a crash mid-run never loses both.
    """
    path = Path(path)
    aside = None
    check_target(path, overwrite=overwrite)
    if _nonempty(path):
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, aside / "old")
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path)
    return aside


def discard_aside(aside: Path | None) -> None:
    """Remove a folder :func:`prepare_folder` set aside (the new one is complete)."""
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def swap_in(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Move the complete folder ``tmp`` to ``path``, replacing a kit folder there (checked)."""
    write_marker(tmp)
    check_target(path, overwrite=overwrite)
    if not path.exists():
        os.replace(tmp, path)
        return
    if not _nonempty(path):
        path.rmdir()
        os.replace(tmp, path)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, aside / "old")
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(aside / "old", path)  # put the old one back
        raise
    discard_aside(aside)
