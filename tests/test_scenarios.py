"""Scenario values: validation, presets, JSON round trip, seeded gaps, per-attempt sequences."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kit
from kit.scenarios import PRESETS, Gap


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_json(name):
    sc = kit.Scenario.preset(name)
    assert kit.Scenario.from_dict(json.loads(json.dumps(sc.to_dict()))) == sc


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(kit.ConfigError) as info:
        kit.Scenario.preset("empty200")
    assert info.value.field == "preset"
    assert "empty_200" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"headers_delay": -1}, "headers_delay"),
        ({"first_byte_delay": "soon"}, "first_byte_delay"),
        ({"protocol": "grpc"}, "protocol"),
        ({"framing": "gzip"}, "framing"),
        ({"events": -3}, "events"),
        ({"fault_probability": 1.5}, "fault_probability"),
        ({"events": 5, "faults": [kit.Close(after=99)]}, "close.after"),
        ({"framing": "length", "faults": [kit.TruncatedChunk(after=1)]}, "truncated_chunk"),
        ({"faults": ["close"]}, "faults"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(kit.ConfigError) as info:
        kit.Scenario(**kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("dist", "params"),
    [("normal", {"mean": 0.1}), ("pareto", {"alpha": 2}), ("uniform", {"low": 0.2, "high": 0.1}), ("weibull", {})],
)
def test_gap_distribution_errors(dist, params):
    with pytest.raises(kit.ConfigError):
        Gap(dist, tuple(params.items()))


def test_unknown_field_in_dict_suggests_closest():
    with pytest.raises(kit.ConfigError) as info:
        kit.Scenario.from_dict({"first_byte_dealy": 1})
    assert "first_byte_delay" in str(info.value)


@given(seed=st.integers(0, 2**31), dist=st.sampled_from(["uniform", "normal", "lognormal", "pareto"]))
def test_seeded_gaps_are_reproducible_and_non_negative(seed, dist):
    gap = {
        "uniform": Gap.uniform(0, 0.1),
        "normal": Gap.normal(0.05, 0.05),
        "lognormal": Gap.lognormal(0.02, 1),
        "pareto": Gap.pareto(0.01, 2),
    }[dist]
    sc = kit.Scenario(events=30, gap=gap, seed=seed)
    a, b = sc.plan(1, key="t1"), sc.plan(1, key="t1")
    assert a.gaps == b.gaps and all(g >= 0 for g in a.gaps)
    assert sc.plan(1, key="t2").gaps != a.gaps


def test_replay_gaps_cycle():
    sc = kit.Scenario(events=4, gap=Gap.replay([0.1, 0.2]))
    assert sc.plan().gaps[:4] == [0.1, 0.2, 0.1, 0.2]


def test_per_attempt_sequence_last_repeats():
    sc = kit.Scenario.preset("fail_fail_succeed")
    kinds = [[f.kind for f in sc.for_attempt(n).faults] for n in (1, 2, 3, 4)]
    assert kinds == [["http_status"], ["http_status"], [], []]


def test_fault_probability_is_seeded():
    sc = kit.Scenario(faults=[kit.Reset(after=3)], fault_probability=0.5, seed=1)
    rolls = [bool(sc.for_attempt(1, key=str(i)).faults) for i in range(200)]
    assert rolls == [bool(sc.for_attempt(1, key=str(i)).faults) for i in range(200)]
    assert 60 < sum(rolls) < 140
