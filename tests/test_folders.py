"""Folders kit writes: only a folder kit provably wrote is ever replaced; replacing is a swap.

Every test keeps sentinels (a sibling folder, a file beside the target, files inside a
refused target) and checks that not one byte of them changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kit
from kit._folders import MARKER
from kit.experiment import Experiment


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with a hash of its content."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def result(server):
    return Experiment(scenarios=[kit.Scenario(events=2, gap=0.0)], trials=2, seed=1).run(
        2, server=server, progress=False
    )


def project(root: Path) -> Path:
    """A user's project folder that happens to hold a file named like a kit file."""
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print('mine')\n")
    (root / "experiment.json").write_text("{}")
    (root / "trials.jsonl").write_text("")
    (root / "bundle.json").write_text('{"format": "kit.bundle"}')
    return root


def with_sentinels(tmp_path: Path) -> Path:
    (tmp_path / "sibling").mkdir()
    (tmp_path / "sibling" / "keep.txt").write_text("sentinel")
    (tmp_path / "beside.txt").write_text("sentinel")
    return tmp_path


def test_overwrite_refuses_a_folder_kit_did_not_write_and_names_what_would_be_lost(result, tmp_path):
    with_sentinels(tmp_path)
    target = project(tmp_path / "proj")
    before = snapshot(tmp_path)
    with pytest.raises(kit.ConfigError, match=r"would delete: \.git, src"):
        result.save(target, overwrite=True)
    with pytest.raises(kit.ConfigError, match=r"would delete: \.git, src"):
        Experiment(scenarios=["ok"], trials=1).run(1, out=target, overwrite=True, progress=False)
    assert snapshot(tmp_path) == before


def test_a_kit_bundle_with_a_users_file_added_is_refused(result, tmp_path):
    with_sentinels(tmp_path)
    path = result.save(tmp_path / "run")
    (path / "report.html").write_text("<p>my notes</p>")
    before = snapshot(tmp_path)
    with pytest.raises(kit.ConfigError, match=r"report\.html"):
        result.save(path, overwrite=True)
    assert snapshot(tmp_path) == before


def test_replacing_a_kit_bundle_swaps_and_leaves_nothing_beside(result, tmp_path):
    with_sentinels(tmp_path)
    path = result.save(tmp_path / "run")
    assert (path / MARKER).is_file()
    result.save(path, overwrite=True)
    assert kit.load(path).equals(result)
    assert sorted(os.listdir(tmp_path)) == ["beside.txt", "run", "sibling"]


def test_a_failed_save_keeps_the_old_bundle(result, tmp_path, monkeypatch):
    path = result.save(tmp_path / "run")
    before = snapshot(tmp_path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("kit.bundle._write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        result.save(path, overwrite=True)
    assert snapshot(tmp_path) == before


def test_the_working_directory_is_never_replaced(result, tmp_path, monkeypatch):
    with_sentinels(tmp_path)
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    before = snapshot(tmp_path)
    for target in (".", "..", str(proj)):
        with pytest.raises(kit.ConfigError, match="working directory"):
            result.save(target, overwrite=True)
    assert snapshot(tmp_path) == before


def test_kit_run_dash_o_dot_deletes_nothing(tmp_path):
    with_sentinels(tmp_path)
    proj = project(tmp_path / "proj")
    (proj / "exp.toml").write_text('trials = 1\nscenarios = ["ok"]\n')
    before = snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(kit.__file__).parent.parent)}
    out = subprocess.run(
        [sys.executable, "-m", "kit.cli", "run", "exp.toml", "-o", ".", "--overwrite", "--quiet"],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 2, out.stderr
    assert "working directory" in out.stderr and "Traceback" not in out.stderr
    assert snapshot(tmp_path) == before


NAMES = st.sampled_from(
    ["bundle.json", "experiment.json", "trials.jsonl", "tables", ".git", "src", "notes.txt", "data.csv"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.sets(NAMES, max_size=6), marked=st.booleans(), table_extra=st.booleans())
def test_overwrite_either_refuses_untouched_or_replaces_only_kit_files(
    result, tmp_path_factory, names, marked, table_extra
):
    root = with_sentinels(tmp_path_factory.mktemp("h"))
    target = root / "target"
    target.mkdir()
    for name in names:
        if name == "tables":
            (target / "tables").mkdir()
            (target / "tables" / "trials.parquet").write_bytes(b"x")
            if table_extra:
                (target / "tables" / "mine.py").write_text("x")
        elif name == ".git":
            (target / ".git").mkdir()
            (target / ".git" / "HEAD").write_text("x")
        else:
            (target / name).write_text("x")
    if marked:
        from kit._folders import write_marker

        write_marker(target)
    before = snapshot(root)
    user_files = {n for n in names if n in (".git", "src", "notes.txt", "data.csv")} | (
        {"tables/mine.py"} if "tables" in names and table_extra else set()
    )
    try:
        result.save(target, overwrite=True)
    except kit.ConfigError:
        assert snapshot(root) == before
    else:
        assert not user_files and (marked or not names)  # replaced: nothing of the user's was there
        assert kit.load(target).equals(result)
        after = snapshot(root)
        assert {k: v for k, v in after.items() if not k.startswith("target")} == {
            k: v for k, v in before.items() if not k.startswith("target")
        }
