"""kit.progress: a counted loop (a bar in notebooks, lines on a terminal or log)."""

from __future__ import annotations

import pytest

import kit


def test_progress_yields_every_item_and_counts_them(capsys):
    seen = list(kit.progress((i * i for i in range(20)), "squares"))
    assert seen == [i * i for i in range(20)]
    err = capsys.readouterr().err
    assert "squares: 20/20" in err and "squares: 2/20" in err  # a line per 10% when not a terminal


def test_progress_says_where_a_stopped_loop_stopped(capsys):
    with pytest.raises(RuntimeError):
        for i in kit.progress(range(10), "calls"):
            if i == 3:
                raise RuntimeError("boom")
    last = capsys.readouterr().err.splitlines()[-1]
    assert "calls: 3/10" in last and "(stopped)" in last


def test_disabled_progress_is_silent(capsys):
    assert list(kit.progress([1, 2, 3], "quiet", enabled=False)) == [1, 2, 3]
    assert capsys.readouterr().err == ""


def test_ask_counts_its_clients(capsys, server):
    rows = kit.postmortem.ask(
        "empty_200", ["anthropic-node@0.39", "anthropic-node"], server=server, live_node=False, progress=True
    )
    assert len(rows) == 2
    assert "empty_200: 2/2" in capsys.readouterr().err
