"""JupyterLab integration for working in a clone of this repository (``make lab``).

The repository strips notebook outputs in git (the nbstripout filter, ``.gitattributes``),
so a notebook run and saved in JupyterLab has the same *content* in git's eyes as the
commit. Git still lists it in ``git status`` because the file's size changed, and it only
compares contents after ``git add``. :func:`refresh_git_stat` is a JupyterLab post-save
hook that does exactly that refresh, and only when the stripped file equals what git
already has, so it never stages an edit of yours.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

__all__ = ["refresh_git_stat"]


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def refresh_git_stat(model: dict[str, Any], os_path: str, contents_manager: Any = None) -> None:
    """After a notebook is saved: if git, through its clean filter, sees it unchanged from
    the index, refresh the index entry (``git add``) so ``git status`` stays clean."""
    if model.get("type") != "notebook":
        return
    path = Path(os_path)
    cwd = path.parent
    if _git(cwd, "config", "filter.nbstripout.clean") is None:  # no filter: leave git alone
        return
    staged = _git(cwd, "ls-files", "-s", "--", path.name)
    cleaned = _git(cwd, "hash-object", "--path", path.name, "--", path.name)
    if staged and cleaned and staged.split()[1] == cleaned:
        _git(cwd, "add", "--", path.name)
