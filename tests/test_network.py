"""Toxics and Network as data: construction, validation, serialization, sampling."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from kit._errors import ConfigError
from kit.network import (
    Bandwidth,
    Down,
    Latency,
    LimitData,
    Loss,
    Network,
    ResetPeer,
    Slicer,
    SlowClose,
    Stall,
    Timeout,
    Toxic,
    toxic_from_dict,
    toxics_from_kwargs,
)

EVERY_KIND = [
    Latency(0.2, jitter=0.05, distribution="normal"),
    Bandwidth(20_000, stream="upstream"),
    Slicer(100, size_variation=20, delay=0.001),
    Timeout(2.0, toxicity=0.5),
    Timeout(None, name="blackhole"),
    ResetPeer(0.5),
    SlowClose(0.3),
    LimitData(1234),
    Down(),
    Stall(4000, duration=2.0),
    Stall(10, name="forever"),
    Loss(0.1, rto=0.3),
]


def test_defaults_and_common_shape() -> None:
    toxic = Latency(0.2)
    assert (toxic.name, toxic.stream, toxic.toxicity) == ("latency", "downstream", 1.0)
    assert toxic.jitter == 0 and toxic.distribution == "uniform"
    assert Latency(0.1, name="extra", stream="upstream", toxicity=0.3).name == "extra"
    with pytest.raises(TypeError):
        Toxic()


def test_string_units_in_constructors() -> None:
    assert Latency("200ms", jitter="50ms") == Latency(0.2, jitter=0.05)
    assert Bandwidth("20KB/s").rate == 20_000
    assert Bandwidth("160kbps").rate == 20_000
    assert Slicer("1KiB", size_variation="100B").average_size == 1024
    assert Stall("4KB", duration="2s") == Stall(4000, duration=2.0)
    assert LimitData("1MB").bytes == 1_000_000
    assert Loss("5%", rto="200ms") == Loss(0.05, rto=0.2)
    assert Latency(0.1, toxicity="50%").toxicity == 0.5


def test_timeout_zero_is_the_blackhole() -> None:
    assert Timeout(0) == Timeout(None) == Timeout()
    assert Timeout(0).timeout is None


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Latency(-1), "latency.latency"),
        (lambda: Latency("fast"), "latency.latency"),
        (lambda: Latency(0.1, distribution="lognormal"), "latency.distribution"),
        (lambda: Latency(0.1, stream="sideways"), "latency.stream"),
        (lambda: Latency(0.1, toxicity=1.5), "latency.toxicity"),
        (lambda: Bandwidth(0), "bandwidth.rate"),
        (lambda: Bandwidth("20kb/s"), "bandwidth.rate"),
        (lambda: Slicer(0), "slicer.average_size"),
        (lambda: Slicer(10, size_variation=10), "slicer.size_variation"),
        (lambda: LimitData(-1), "limit_data.bytes"),
        (lambda: Stall(10, duration="forever"), "stall.duration"),
        (lambda: Loss(2), "loss.probability"),
    ],
)
def test_invalid_values_name_the_field(build, field) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_suggestions_for_unknown_names() -> None:
    with pytest.raises(ConfigError, match="did you mean 'normal'"):
        Latency(0.1, distribution="norml")
    with pytest.raises(ConfigError, match="did you mean 'latency'"):
        toxic_from_dict({"kind": "latancy", "latency": 0.1})
    with pytest.raises(ConfigError, match="did you mean 'jitter'"):
        toxic_from_dict({"kind": "latency", "latency": 0.1, "jiter": 0.1})


@pytest.mark.parametrize("toxic", EVERY_KIND, ids=lambda t: t.name)
def test_dict_and_json_roundtrip(toxic: Toxic) -> None:
    data = toxic.to_dict()
    assert data["kind"] == toxic.kind
    assert toxic_from_dict(data) == toxic
    assert toxic_from_dict(json.loads(json.dumps(data))) == toxic
    assert type(toxic).from_dict(data) == toxic
    assert hash(toxic) == hash(toxic_from_dict(data))
    assert toxic.describe()


def test_from_dict_accepts_units() -> None:
    toxic = toxic_from_dict({"kind": "latency", "latency": "200ms", "jitter": "50ms"})
    assert toxic == Latency(0.2, jitter=0.05)


def test_network_roundtrip_and_equality() -> None:
    network = Network(EVERY_KIND, name="everything")
    again = Network.from_dict(json.loads(json.dumps(network.to_dict())))
    assert again == network
    assert again.toxics == tuple(EVERY_KIND)
    assert Network([t.to_dict() for t in EVERY_KIND], name="everything") == network
    assert Network() == Network.from_dict({"toxics": []})
    assert Network().describe() == "direct"
    assert network.label == "everything"


def test_network_rejects_duplicate_names() -> None:
    with pytest.raises(ConfigError, match="unique names"):
        Network([Latency(0.1), Latency(0.2)])
    Network([Latency(0.1), Latency(0.2, name="second")])  # stacking needs a name


def test_network_from_kwargs() -> None:
    network = Network.from_kwargs(
        latency="200ms", jitter="50ms", bandwidth="20KB/s", stall_after="4KB", stall_for="2s", name="slow"
    )
    assert network.toxics == (
        Latency(0.2, jitter=0.05),
        Bandwidth(20_000),
        Stall(4000, duration=2.0),
    )
    assert network.name == "slow"
    assert all(t.stream == "downstream" for t in network.toxics)
    assert network.describe() == "latency 200ms +-50ms, bandwidth 20kB/s, stall after 4kB for 2s"
    with pytest.raises(ConfigError, match="did you mean 'latency'"):
        Network.from_kwargs(latncy=0.1)


def test_kwargs_merge_with_current_and_remove() -> None:
    current = [Latency(0.2, jitter=0.05, toxicity=0.5), Bandwidth(1000)]
    built, removed = toxics_from_kwargs(current, jitter=0.1, bandwidth=None)
    assert built == [Latency(0.2, jitter=0.1, toxicity=0.5)]
    assert removed == ["bandwidth"]
    built, removed = toxics_from_kwargs([], down=True, reset_after="1s", toxicity=0.25)
    assert built == [Down(toxicity=0.25), ResetPeer(1.0, toxicity=0.25)]
    assert toxics_from_kwargs([Down()], down=False) == ([], ["down"])
    with pytest.raises(ConfigError, match="loss="):
        toxics_from_kwargs([], rto=0.5)


def _samples(toxic: Latency, n: int = 20_000) -> list[float]:
    rng = random.Random(1)
    return [toxic.sample(rng) for _ in range(n)]


def test_latency_distributions() -> None:
    uniform = _samples(Latency(0.2, jitter=0.05))
    assert min(uniform) >= 0.15 and max(uniform) <= 0.25
    assert statistics.fmean(uniform) == pytest.approx(0.2, abs=0.002)
    normal = _samples(Latency(0.2, jitter=0.05, distribution="normal"))
    assert statistics.fmean(normal) == pytest.approx(0.2, abs=0.002)
    assert statistics.stdev(normal) == pytest.approx(0.05, rel=0.05)
    pareto = _samples(Latency(0.2, jitter=0.05, distribution="pareto"))
    assert statistics.fmean(pareto) == pytest.approx(0.2, abs=0.003)
    assert statistics.median(pareto) < 0.2 < max(pareto) - 0.1  # a heavy right tail
    assert min(_samples(Latency(0.01, jitter=0.05, distribution="normal"))) == 0  # never negative
    assert set(_samples(Latency(0.2), 10)) == {0.2}


def test_slicer_and_loss_sampling() -> None:
    rng = random.Random(2)
    sizes = [Slicer(100, size_variation=20).piece_size(rng) for _ in range(2000)]
    assert min(sizes) == 80 and max(sizes) == 120
    extra = [Loss(0.25, rto=0.2).sample(rng) for _ in range(4000)]
    assert set(extra) == {0.0, 0.2}
    assert extra.count(0.2) / len(extra) == pytest.approx(0.25, abs=0.03)
