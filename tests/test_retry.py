"""Retry decisions (pure) and the retry loop of kit.stream against the fault server."""

from __future__ import annotations

import email.utils
import random

import pytest

import kit
from kit.retry import backoff, decide, parse_retry_after
from kit.trace import Outcome

SDK = kit.Policy.preset("anthropic-python")
STATUS = Outcome("headers", "http_status", "529 overloaded")


@pytest.mark.parametrize("n,expected", [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (50, 8.0)])
def test_backoff_formula(n, expected):
    assert backoff(SDK, n, 0.0) == pytest.approx(expected)
    assert backoff(SDK, n, 1.0) == pytest.approx(expected * 0.75)
    u = random.Random(n).random()
    assert backoff(SDK, n, u) == pytest.approx(min(0.5 * 2**n, 8) * (1 - 0.25 * u))


def test_retry_after_headers():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5", "retry-after-ms": "junk"}) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_statuses_and_server_waits():
    d = decide(SDK, STATUS, retries_done=0, status=529, u=0.0)
    assert d.retry and d.wait == 0.5
    d = decide(SDK, STATUS, retries_done=1, status=429, headers={"retry-after": "3"})
    assert d.retry and d.wait == 3
    assert not decide(SDK, STATUS, retries_done=2, status=529).retry  # 2 retries allowed
    assert not decide(SDK, STATUS, retries_done=0, status=400).retry
    # x-should-retry overrides the status rules both ways
    assert decide(SDK, STATUS, retries_done=0, status=400, headers={"x-should-retry": "true"}).retry
    assert not decide(SDK, STATUS, retries_done=0, status=529, headers={"x-should-retry": "false"}).retry
    no_header = SDK.replace(honor_should_retry=False)
    assert decide(no_header, STATUS, retries_done=0, status=529, headers={"x-should-retry": "false"}).retry


def test_retry_after_beyond_the_cap():
    ts = kit.Policy.preset("anthropic-typescript")  # < 60 s honoured, else backoff
    d = decide(ts, STATUS, retries_done=0, status=429, headers={"retry-after": "90"}, u=0.0)
    assert d.retry and d.wait == 0.5
    oa = kit.Policy.preset("openai-python")  # > 120 s: no retry at all
    assert not decide(oa, STATUS, retries_done=0, status=429, headers={"retry-after": "121"}).retry
    assert decide(oa, STATUS, retries_done=0, status=429, headers={"retry-after": "100"}).wait == 100
    capped = SDK.replace(retry_after_max=10, retry_after_beyond="cap")
    assert decide(capped, STATUS, retries_done=0, status=429, headers={"retry-after": "90"}).wait == 10


@pytest.mark.parametrize(
    "phase,cause,sdk,watchdog",
    [
        ("connect", "refused", True, True),
        ("connect", "timeout.connect", True, True),
        ("headers", "closed", True, True),
        ("headers", "timeout.headers", True, True),
        ("first_chunk", "closed", False, True),
        ("first_chunk", "ended", False, True),
        ("first_chunk", "timeout.first_chunk", False, True),
        ("stream", "closed", False, False),
        ("stream", "error_event", False, False),
        ("stream", "timeout.idle", False, False),
        ("done", "ok", False, False),
        ("stream", "timeout.total", False, False),
    ],
)
def test_failures_are_retried_only_before_the_stream_unless_the_policy_says(phase, cause, sdk, watchdog):
    o = Outcome(phase, cause)
    assert decide(SDK, o, retries_done=0).retry is sdk
    assert decide(kit.Policy.preset("watchdog"), o, retries_done=0).retry is watchdog


def test_mid_stream_retry_when_asked():
    p = kit.Policy(max_retries=1, retry_on=("closed",), retry_mid_stream=True)
    assert decide(p, Outcome("stream", "closed"), retries_done=0).retry


# -- the loop, against the fault server ---------------------------------------------


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as s:
        yield s


def test_529_is_retried_with_backoff(server):
    p = kit.Policy(max_retries=2, backoff_initial=0.05, seed=3)
    tr = kit.stream(server.url_for("overloaded_529"), policy=p)
    assert len(tr.attempts) == 3 and tr.outcome.cause == "http_status"
    rng = random.Random(3)
    expected = [0.0] + [backoff(p, n, u) for n, u in enumerate([rng.random(), rng.random()])]
    assert [a.wait_before for a in tr.attempts] == pytest.approx(expected)
    starts = tr.attempts_df["start"].tolist()
    ends = tr.attempts_df["end"].tolist()
    for i in (1, 2):  # the real gap between attempts is the wait, within scheduling noise
        assert starts[i] - ends[i - 1] == pytest.approx(expected[i], abs=0.05)
    assert tr.summary()["attempts"] == 3


def test_same_seed_same_waits(server):
    p = kit.Policy(max_retries=2, backoff_initial=0.02)
    a = kit.stream(server.url_for("overloaded_529"), policy=p, seed=11)
    b = kit.stream(server.url_for("overloaded_529"), policy=p, seed=11)
    assert [x.wait_before for x in a.attempts] == [x.wait_before for x in b.attempts]


def test_retry_after_is_honoured(server):
    p = kit.Policy(max_retries=1)
    tr = kit.stream(server.url_for("rate_limited_429"), policy=p)  # retry-after: 1
    assert len(tr.attempts) == 2 and tr.attempts[1].wait_before == 1.0
    assert tr.duration >= 0.95


def test_fail_fail_succeed_ends_ok(server):
    tr = kit.stream(server.url_for("fail_fail_succeed"), policy=kit.Policy(max_retries=3, backoff_initial=0.01))
    assert tr.ok and len(tr.attempts) == 3
    assert [a.outcome.cause for a in tr.attempts] == ["http_status", "http_status", "ok"]


def test_mid_stream_failure_is_not_retried_unless_the_policy_says(server):
    url = server.url_for("close_mid_stream")
    tr = kit.stream(url, policy=kit.Policy(max_retries=2, backoff_initial=0.01))
    assert len(tr.attempts) == 1 and tr.outcome.cause == "closed" and tr.outcome.phase == "stream"
    tr = kit.stream(url, policy=kit.Policy(max_retries=2, backoff_initial=0.01, retry_mid_stream=True))
    assert len(tr.attempts) == 3 and tr.outcome.cause == "closed"


def test_watchdog_retries_an_empty_200(server):
    wd = kit.Policy.preset("watchdog", backoff_initial=0.01)
    tr = kit.stream(server.url_for("empty_200"), policy=wd)
    assert len(tr.attempts) == wd.max_retries + 1
    assert all(a.outcome.cause == "ended" for a in tr.attempts)
    sdk = kit.stream(server.url_for("empty_200"), policy=SDK)
    assert len(sdk.attempts) == 1


def test_watchdog_first_chunk_timeout_then_retry(server):
    wd = kit.Policy.preset("watchdog", first_chunk=0.3, max_retries=1, backoff_initial=0.01)
    tr = kit.stream(server.url_for("slow_first_byte"), policy=wd)  # 3 s before the first byte
    assert [a.outcome.cause for a in tr.attempts] == ["timeout.first_chunk"] * 2
    assert tr.duration < 2.0


def test_refused_connection_is_retried():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    tr = kit.stream(f"http://127.0.0.1:{port}", policy=kit.Policy(max_retries=2, backoff_initial=0.01))
    assert len(tr.attempts) == 3 and tr.outcome.cause == "refused"


def test_total_deadline_stops_retrying(server):
    p = kit.Policy(max_retries=5, total=1.5)
    tr = kit.stream(server.url_for("rate_limited_429"), policy=p)  # 1 s per retry-after
    assert len(tr.attempts) == 2 and tr.duration < 1.6
