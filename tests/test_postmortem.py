"""The postmortem notebook's conclusions, asserted from the data it produces.

The notebook runs once per session (the ``notebooks`` fixture; test settings in
``labrun.PARAMETERS``: ``TRIALS = 20``) and writes its checked conclusions as JSON; these
tests read them, so the story in ``notebooks/05_postmortem_no_chunks.ipynb`` cannot drift
from its evidence.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from labrun import errors_of
from test_notebooks import NOTEBOOKS, execute

import kit

NB = "05_postmortem_no_chunks.ipynb"
# live Node runs and a 500-call sweep, and the first notebook test runs every notebook
pytestmark = pytest.mark.timeout(1800)
SYMPTOM = "request ended without sending any chunks"


@pytest.fixture(scope="module")
def conclusions(notebooks):
    nb = notebooks.run(NB)
    assert not errors_of(nb), errors_of(nb)
    return json.loads(notebooks.conclusions.read_text())


@pytest.mark.slow
def test_empty_200_gives_the_reported_message_in_node(conclusions):
    if kit.node.unavailable():
        # no node here: the notebook read the recorded atlas rows, which must say the same
        assert conclusions["node_source"] == ["atlas"]
    assert conclusions["1_empty_200_gives_symptom_in_node"] is True
    assert set(conclusions["node_clients_checked"]) == {"anthropic-node@0.39", "anthropic-node"}


@pytest.mark.slow
def test_only_hypothesis_a_reproduces_the_symptom(conclusions):
    assert "(a) 200, empty body" in conclusions["a_shapes_reproducing"]
    assert all(h.startswith("(a)") for h in conclusions["a_shapes_reproducing"])


@pytest.mark.slow
def test_two_second_deadline_against_five_second_first_byte_aborts_with_zero_chunks(conclusions):
    assert conclusions["b_deadline_outcome"] == "first_chunk/timeout.total"
    assert conclusions["b_deadline_chunks"] == 0
    assert 1.5 < conclusions["b_deadline_elapsed_s"] < 4.0  # fired at the 2 s deadline, not at the 5 s byte


@pytest.mark.slow
def test_deadlines_resets_and_aborts_say_something_else(conclusions):
    others = conclusions["b_node_messages"] + conclusions["c_messages"] + conclusions["e_signal_messages"]
    assert SYMPTOM not in others
    if not kit.node.unavailable():
        assert conclusions["e_signal_messages"] == ["Request was aborted."]
        assert conclusions["e_side_abort"] == ["AbortError: The operation was aborted"]


@pytest.mark.slow
def test_watchdog_beats_the_sdk_default_in_the_outage(conclusions):
    assert conclusions["watchdog_beats_sdk_default_in_empty_200_outage"] is True
    s = conclusions["remedy_success"]
    assert s["empty 200s 50% watchdog"] > s["empty 200s 50% SDK default"]
    # a fixed server ("upgrade") always succeeds; longer timeouts cannot fix an empty 200
    assert s["empty 200s 50% upgrade"] == 1.0
    assert s["empty 200s 50% longer timeouts"] < s["empty 200s 50% watchdog"]


def test_atlas_rows_back_the_fallback():
    """Without node the notebook reads these rows: both SDK eras must give the symptom for an empty 200."""
    atlas = kit.atlas.load()
    rows = atlas[(atlas.client == "anthropic-node") & (atlas.scenario == "empty_200")]
    assert {v.split(".")[0] for v in rows.client_version} >= {"0", "1"}
    assert (rows.message == SYMPTOM).all()


def test_total_deadline_before_first_byte_is_an_abort_with_zero_chunks():
    """The (b) claim at unit scale: no notebook, a 2 s total deadline against a 5 s first byte."""
    with kit.FaultServer() as server:
        sc = kit.Scenario.preset("slow_first_byte").replace(first_byte_delay=5.0)
        t = kit.stream(server.url_for(sc), policy=kit.Policy(total=2.0))
    assert (t.outcome.phase, t.outcome.cause) == ("first_chunk", "timeout.total")
    assert t.attempt.chunks_received == 0
    assert 1.5 < t.duration < 4.0


def test_watchdog_retries_an_empty_200_the_sdk_default_does_not():
    sc = kit.Scenario(events=5, gap=0.0, attempts=(kit.Scenario.preset("empty_200"), kit.Scenario(events=5, gap=0.0)))
    sdk = kit.Policy.preset("anthropic-typescript")
    wd = kit.Policy.preset("watchdog").replace(backoff_initial=0.01)
    res = kit.Experiment(scenarios=[sc], policies=[sdk, wd], trials=2, seed=1).run(progress=False)
    by = res.trials.groupby("policy").agg(ok=("ok", "mean"), attempts=("attempts", "mean"))
    assert isinstance(by, pd.DataFrame)
    assert by.loc["anthropic-typescript", "ok"] == 0 and by.loc["anthropic-typescript", "attempts"] == 1
    assert by.loc["watchdog", "ok"] == 1 and by.loc["watchdog", "attempts"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["03_real_clients.ipynb", "05_postmortem_no_chunks.ipynb"])
def test_notebooks_run_without_node(name):
    """Where node is absent the story reads the recorded atlas rows instead, and must not crash."""
    overrides = "RUN_NODE = False\n" + (
        "TRIALS = 10\nNET_STALL = 1.0\nPY_CLIENTS = ('anthropic-python',)"
        if name.startswith("05")
        else 'SCENARIOS = ["empty_200"]\nPY_CLIENTS = ["anthropic-python"]'
    )
    nb = execute(NOTEBOOKS / name, overrides, timeout=400)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
