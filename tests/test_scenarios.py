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


# ------------------------------------------- issue 14 item 7: every parameter is bounded

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kit.scenarios import MAX_EVENTS, MAX_SECONDS  # noqa: E402

UNBOUNDED = [
    ("events", lambda: kit.Scenario(events=10**7)),
    ("event_size", lambda: kit.Scenario(events=10, event_size=10**10)),
    ("event_size", lambda: kit.Scenario(events=MAX_EVENTS, event_size=4096)),
    ("ping_every", lambda: kit.Scenario(ping_every=1e-6)),
    ("headers_delay", lambda: kit.Scenario(headers_delay=1e300)),
    ("first_byte_delay", lambda: kit.Scenario(first_byte_delay=1e12)),
    ("gap.lognormal.sigma", lambda: kit.Scenario(gap=kit.Gap.lognormal(0.01, 1e6))),
    ("gap.pareto.alpha", lambda: kit.Scenario(gap=kit.Gap.pareto(0.01, 1e-9))),
    ("gap.constant.value", lambda: kit.Scenario(gap=kit.Gap.constant(1e300))),
    ("stall.duration", lambda: kit.Stall(after=1, duration=1e300)),
    ("hostile.size", lambda: kit.Hostile(what="huge_event", size=10**12)),
    ("gap.replay.values", lambda: kit.Gap.replay([0.0] * (MAX_EVENTS + 1))),
]


@pytest.mark.parametrize(("field", "make"), UNBOUNDED, ids=[f for f, _ in UNBOUNDED])
def test_unbounded_parameters_are_a_config_error_naming_field_and_range(field, make):
    with pytest.raises(kit.ConfigError) as info:
        make()
    assert info.value.field == field
    assert any(ch in info.value.allowed for ch in "[<=")  # the allowed range is named


@settings(max_examples=150, deadline=None)
@given(
    median=st.floats(0, MAX_SECONDS),
    sigma=st.floats(0, 10),
    scale=st.floats(0, MAX_SECONDS),
    alpha=st.floats(0.1, MAX_SECONDS),
)
def test_any_allowed_gap_samples_finite_values_without_error(median, sigma, scale, alpha):
    import random

    for gap in (kit.Gap.lognormal(median, sigma), kit.Gap.pareto(scale, alpha)):
        values = gap.sample(random.Random(1), 50)
        assert all(0 <= v <= MAX_SECONDS for v in values)


def test_toml_and_bundle_rerun_refuse_unbounded_scenarios(tmp_path, capsys):
    import json

    from kit.cli import main

    cfg = tmp_path / "exp.toml"
    cfg.write_text("trials = 1\nscenarios = [{events = 10000000}]\n")
    assert main(["run", str(cfg), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "events=10000000" in err and "[0, 100,000]" in err and not (tmp_path / "out").exists()
    bundle = tmp_path / "b"
    bundle.mkdir()
    doc = {"format": "kit.bundle", "schema_version": 1, "tables": {}, "experiment": {"scenarios": [{"events": 10**7}]}}
    (bundle / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(kit.BundleError, match=r"events=10000000.*\[0, 100,000\]"):
        kit.rerun(bundle, progress=False)
