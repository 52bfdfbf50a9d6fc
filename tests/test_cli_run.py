"""`kit run` and `kit report`: a TOML config to a bundle to an offline HTML report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kit
from kit.cli import main

CONFIG = """
name = "cli-sweep"
trials = 3
seed = 7
scenarios = ["ok", {preset = "slow_first_byte", first_byte_delay = 0.3}]
policies = [{first_chunk = 0.1}, {first_chunk = 1.0}]
"""


def test_run_then_report(tmp_path, capsys):
    cfg = tmp_path / "experiment.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "runs" / "sweep"
    assert main(["run", str(cfg), "-o", str(out), "--concurrency", "4"]) == 0
    err = capsys.readouterr().err
    assert "trials: 12/12" in err  # the progress line
    result = kit.load(out)
    assert len(result.trials) == 12
    t = result.trials.set_index(["scenario", "policy"])
    assert set(t.loc[("slow_first_byte", "first_chunk=0.1s"), "cause"]) == {"timeout.first_chunk"}
    assert t.loc[("slow_first_byte", "first_chunk=1s"), "ok"].all()

    report = tmp_path / "report.html"
    assert main(["report", str(out), "-o", str(report)]) == 0
    page = report.read_text()
    assert page.count("<svg") >= 3 and "cli-sweep" in page
    assert "<script" not in page.lower()  # nothing to load or run: opens offline
    urls = set(re.findall(r"(?:src|href)\s*=\s*['\"]([^'\"]+)", page))
    assert not urls, urls
    for metric in ("ttfb_s", "first_chunk_s", "inter_chunk_gap_s", "tpot_s"):
        assert metric in page

    # the same folder again is refused, unless asked
    assert main(["run", str(cfg), "-o", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["report", str(out), "-o", str(report)]) == 2


def test_bad_configs_name_the_problem(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('scenarios = ["ok"]\ntrails = 3\n')
    assert main(["run", str(cfg), "-o", str(tmp_path / "x")]) == 2
    assert "trails" in (err := capsys.readouterr().err) and "did you mean 'trials'" in err
    cfg.write_text('scenarios = ["ok"\n')
    assert main(["run", str(cfg), "-o", str(tmp_path / "x")]) == 2
    assert "bad.toml: not valid TOML" in capsys.readouterr().err
    cfg.write_text("scenarios = []\n")
    assert main(["run", str(cfg), "-o", str(tmp_path / "x")]) == 2
    assert "0 cells" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_keeps_finished_trials_on_disk(tmp_path):
    proc, out = _run_until_trials(tmp_path, 4)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "INTERRUPTED" in stdout
    result = kit.load(Path(out))
    assert 4 <= len(result.trials) < 200 and not result.complete
    assert result.trials["ok"].all()


def _run_until_trials(tmp_path: Path, n: int) -> tuple[subprocess.Popen, Path]:
    cfg = tmp_path / "slow.json"
    cfg.write_text(json.dumps({"scenarios": [{"events": 2, "first_byte_delay": 0.2, "gap": 0}], "trials": 200}))
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", "run", str(cfg), "-o", str(out), "--concurrency", "2", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    journal = out / "trials.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= n:
            break
        time.sleep(0.02)
    return proc, out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals to a child process")
@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGTERM,),
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGTERM),
    ],
    ids=["term", "int-int", "term-term", "int-term"],
)
def test_sigterm_and_a_second_interrupt_still_leave_a_loadable_bundle(tmp_path, signals):
    proc, out = _run_until_trials(tmp_path, 4)
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.05)
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    result = kit.load(out)
    assert 4 <= len(result.trials) < 200 and not result.complete
    if len(signals) > 1 and "saving the finished trials" in stderr:
        assert f"kit.load({str(out)!r}, recover=True)" in stderr  # the exact recovery command
