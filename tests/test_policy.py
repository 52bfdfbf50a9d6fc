"""Policy: timeouts, retry fields, presets, JSON round-trip and bad input."""

from __future__ import annotations

import json
import math

import pytest

import kit
from kit.policy import PRESETS


def test_defaults_make_one_attempt_with_sdk_retry_rules():
    p = kit.Policy()
    assert p.max_retries == 0
    assert p.retry_statuses == (408, 409, 429, "5xx")
    assert p.retries_status(529) and p.retries_status(500) and p.retries_status(429)
    assert not p.retries_status(400) and not p.retries_status(404)
    assert not p.retry_before_first_chunk and not p.retry_mid_stream


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_json(name):
    p = kit.Policy.preset(name)
    assert p.name == name
    again = kit.Policy.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p
    assert PRESETS[name].__doc__ and "Source" in PRESETS[name].__doc__


def test_preset_figures_match_the_sdks():
    py = kit.Policy.preset("anthropic-python")
    assert (py.connect, py.headers, py.first_chunk, py.idle, py.max_retries) == (5, 600, None, 600, 2)
    oa = kit.Policy.preset("openai-python")
    assert oa.retry_after_max == 120 and oa.retry_after_beyond == "give_up"
    ts = kit.Policy.preset("anthropic-typescript")
    assert ts.idle is None and ts.first_chunk is None and ts.headers == 600 and ts.max_retries == 2
    assert ts.retry_after_max == 60 and ts.retry_after_beyond == "backoff"
    nf = kit.Policy.preset("node-fetch")
    assert nf.idle == 300 and nf.max_retries == 0
    wd = kit.Policy.preset("watchdog")
    assert wd.first_chunk and wd.idle and wd.max_retries >= 1 and wd.retry_before_first_chunk
    assert not wd.retry_mid_stream


def test_preset_overrides_and_fresh_values():
    p = kit.Policy.preset("anthropic-python", max_retries=0, idle=2)
    assert p.max_retries == 0 and p.idle == 2 and p.name == "anthropic-python"
    assert kit.Policy.presets() == list(PRESETS)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(kit.ConfigError) as err:
        kit.Policy.preset("anthropic-pyhton")
    assert "anthropic-python" in str(err.value) and "watchdog" in str(err.value)


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_retries", -1),
        ("max_retries", math.inf),
        ("max_retries", None),
        ("max_retries", 1.5),
        ("backoff_initial", math.inf),
        ("backoff_initial", -0.1),
        ("backoff_max", math.nan),
        ("retry_after_max", math.inf),
        ("backoff_jitter", 1.5),
        ("retry_on", ("timeout.total",)),
        ("retry_on", ("ok",)),
        ("retry_statuses", (99,)),
        ("retry_statuses", ("6xx",)),
        ("retry_after_beyond", "forever"),
        ("retry_mid_stream", "yes"),
        ("seed", 1.5),
        ("idle", 0),
        ("connect", math.inf),
    ],
)
def test_settings_that_cannot_terminate_or_make_no_sense_are_rejected(field, value):
    with pytest.raises(kit.ConfigError) as err:
        kit.Policy(**{field: value})
    assert err.value.field == field


def test_unknown_field_in_dict():
    with pytest.raises(kit.ConfigError):
        kit.Policy.from_dict({"max_retry": 2})


def test_strings_and_labels():
    p = kit.Policy(first_chunk="200ms", retry_statuses=["429", "5xx"], max_retries=2.0)
    assert p.first_chunk == 0.2 and p.retry_statuses == (429, "5xx") and p.max_retries == 2
    assert "retries=2" in p.label
    assert kit.Policy().label == "no limits"
