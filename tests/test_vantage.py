"""kit.vantage: server-sent / proxy-forwarded / client-received per write, joined by bytes.

Real FaultServer, real NetworkProxy, real client on loopback. Tolerances are generous
(a loaded 2-core machine): the proxy stamps a forward just *after* its write returns, so
the client, on another thread, can stamp the same bytes first by up to a GIL switch.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
import numpy as np
import pandas as pd
import pytest

import kit
from kit import vantage
from kit.charts import vantage_points
from kit.network import Slicer, Stall
from kit.vantage import COLUMNS

STEP = 0.030  # how far the client may stamp before the proxy (GIL switches on a busy machine)

SCENARIO = kit.Scenario(protocol="anthropic", events=12, gap=0.01, name="vantage")


def _check_consistent(df: pd.DataFrame, trace: kit.Trace) -> None:
    """Every write was received, forwarded and read, in that order, and the bytes add up."""
    assert list(df.columns) == COLUMNS
    assert (df["server_sent_s"].diff().dropna() >= 0).all()
    assert df[["proxy_received_s", "proxy_forwarded_s", "client_received_s"]].notna().all().all()
    assert (df["proxy_received_s"] >= df["server_sent_s"]).all()
    assert (df["proxy_forwarded_s"] >= df["proxy_received_s"]).all()
    assert (df["client_received_s"] >= df["proxy_forwarded_s"] - STEP).all()
    assert not df["dropped"].any()
    for a in trace.attempts:
        mine = df[df["attempt"] == a.index]
        assert int(mine["body_bytes"].sum()) == a.bytes_received  # payload sizes as the server logged them
        assert int(mine["nbytes"].sum()) == int(
            trace.server.query("attempt == @a.index and kind != 'request'")["nbytes"].sum()
        )


def test_latency_is_the_network_delay_of_every_write(server):
    with kit.NetworkProxy(upstream=server, latency=0.1) as net:
        trace = kit.stream(net.url_for(SCENARIO))
        df = vantage.table(trace, net)
    assert trace.ok
    assert len(df) == len(trace.server.query("nbytes > 0 and kind != 'request'"))
    assert df["kind"].iloc[0] == "headers" and df["kind"].iloc[-1] == "end"
    assert df["conn"].nunique() == 1 and df["conn"].iloc[0] == 0
    _check_consistent(df, trace)
    # the proxy held every write 100 ms (+ scheduling noise), the last hop added ~nothing
    assert df["network_delay_s"].between(0.095, 0.25).all(), df["network_delay_s"].describe()
    assert (df["client_delay_s"] < 0.05).all()
    assert df["total_delay_s"].between(0.09, 0.3).all()
    assert (df["pieces"] >= 1).all()
    # the thin method on Trace is the same table
    pd.testing.assert_frame_equal(trace.vantage(net.forwards_df()), df)


def test_slicer_cuts_writes_but_the_join_holds(server):
    slicer = Slicer(average_size=40, size_variation=20, delay=0.0005)
    with kit.NetworkProxy(upstream=server, network=[slicer], seed=3) as net:
        trace = kit.stream(net.url_for(SCENARIO))
        df = vantage.table(trace, net)
        forwards = net.forwards_df()
    assert trace.ok
    _check_consistent(df, trace)
    big = df[df["nbytes"] > 120]
    assert (big["pieces"] >= 2).all()  # a write in several pieces...
    assert df["pieces"].sum() >= len(forwards[forwards["direction"] == "downstream"])  # ...every piece counted
    assert (df["network_delay_s"] < 0.1).all()


def test_latency_through_a_slicer_still_adds_up(server):
    slicer = Slicer(average_size=64, size_variation=16)
    with kit.NetworkProxy(upstream=server, network=[slicer], latency=0.05) as net:
        trace = kit.stream(net.url_for(SCENARIO))
        df = trace.vantage(net)
    _check_consistent(df, trace)
    assert df["network_delay_s"].between(0.045, 0.2).all(), df["network_delay_s"].describe()


def test_a_stall_shows_in_the_writes_after_it(server):
    after = 1000
    with kit.NetworkProxy(upstream=server, network=[Stall(after_bytes=after, duration=0.3)]) as net:
        trace = kit.stream(net.url_for(SCENARIO))
        df = vantage.table(trace, net)
    assert trace.ok
    _check_consistent(df, trace)
    before = df[df["wire_end"] <= after]
    later = df[df["wire_end"] > after]
    assert len(before) and len(later)
    assert (before["network_delay_s"] < 0.05).all()
    # the write that straddles the boundary waited the whole stall; later ones queued behind it
    assert later["network_delay_s"].iloc[0] >= 0.25
    assert later["proxy_forwarded_s"].min() - before["proxy_forwarded_s"].max() >= 0.25


def test_direct_call_has_server_and_client_only(server):
    trace = kit.stream(server.url_for(SCENARIO))
    df = vantage.table(trace)
    assert trace.ok and len(df)
    assert df[["proxy_received_s", "proxy_forwarded_s", "network_delay_s"]].isna().all().all()
    assert df["conn"].isna().all()
    assert (df["client_delay_s"] >= -STEP).all() and (df["client_delay_s"] < 0.05).all()
    np.testing.assert_allclose(df["client_delay_s"], df["total_delay_s"])


def test_keep_alive_and_concurrent_calls_join_to_their_own_connection(server):
    """Two calls on one keep-alive connection, and a third at the same time on another."""

    async def main(url: str) -> tuple[kit.Trace, kit.Trace, kit.Trace]:
        async with httpx.AsyncClient(timeout=None, trust_env=False) as shared:
            first = await kit.astream(url, client=shared)
            second, other = await asyncio.gather(kit.astream(url, client=shared), kit.astream(url))
        return first, second, other

    with kit.NetworkProxy(upstream=server, latency=0.05) as net:
        first, second, other = asyncio.run(main(net.url_for(SCENARIO)))
    forwards = net.forwards_df()  # once stopped, the proxy's log is complete: a snapshot will do
    assert first.ok and second.ok and other.ok
    tables = [vantage.table(t, forwards) for t in (first, second, other)]
    conns = [int(df["conn"].iloc[0]) for df in tables]
    assert conns[0] == conns[1] != conns[2]  # the second call reused the first's connection
    for trace, df in zip((first, second, other), tables, strict=True):
        _check_consistent(df, trace)
        assert df["network_delay_s"].between(0.045, 0.2).all()
    # the proxy rows of each call: its own bytes only, from its own response
    for trace, df in zip((first, second, other), tables, strict=True):
        mine = vantage.forwards_for(trace, forwards)
        assert set(mine["conn"]) == {int(df["conn"].iloc[0])}
        assert int(mine["nbytes"].sum()) == int(df["nbytes"].sum())
    assert vantage.connections(second, forwards) == {1: conns[1]}


def test_many_concurrent_calls_join_by_the_client_s_address(server):
    """Each attempt recorded its socket's address; the proxy logged it per connection: the join is exact."""

    async def main(url: str) -> list[kit.Trace]:
        async with httpx.AsyncClient(timeout=None, trust_env=False) as shared:
            first = await kit.astream(url, client=shared)
            rest = await asyncio.gather(kit.astream(url, client=shared), *(kit.astream(url) for _ in range(5)))
        return [first, *rest]

    with kit.NetworkProxy(upstream=server, latency=0.02) as net:
        traces = asyncio.run(main(net.url_for(SCENARIO)))
        clients = dict(zip(net.connections_df()["conn"], net.connections_df()["client"], strict=True))
        joined = [vantage.connections(t, net)[1] for t in traces]
    assert all(t.ok for t in traces)
    addrs = [t.attempt.local_addr for t in traces]
    assert addrs[0] == addrs[1]  # the kept-alive connection: its address read from the response's stream
    assert len(set(addrs[1:])) == 6
    assert [clients[c] for c in joined] == addrs
    assert len(set(joined[1:])) == 6


def test_the_join_follows_the_recorded_address_not_timing(server):
    with kit.NetworkProxy(upstream=server) as net:
        a, b = kit.stream(net.url_for(SCENARIO)), kit.stream(net.url_for(SCENARIO))
        by_timing = [vantage.connections(t, net.forwards_df())[1] for t in (a, b)]
        assert [vantage.connections(t, net)[1] for t in (a, b)] == by_timing
        b.attempt.local_addr = a.attempt.local_addr  # as if b had gone out on a's (earlier) connection
        assert vantage.connections(b, net)[1] == by_timing[0] != by_timing[1]


def test_retries_get_a_row_set_per_attempt(server):
    sc = kit.Scenario(
        name="vantage-retry",
        events=5,
        gap=0.01,
        attempts=(
            kit.Scenario(events=5, faults=[kit.HttpStatus(status=529, retry_after_ms=10)]),
            kit.Scenario(events=5, gap=0.01),
        ),
    )
    with kit.NetworkProxy(upstream=server, latency=0.03) as net:
        trace = kit.stream(net.url_for(sc), policy=kit.Policy(max_retries=2))
        df = trace.vantage(net)
    assert trace.ok and len(trace.attempts) == 2
    assert set(df["attempt"]) == {1, 2}
    assert df[["proxy_forwarded_s"]].notna().all().all()
    assert df["network_delay_s"].between(0.025, 0.2).all()
    ok = df[df["attempt"] == 2]
    assert int(ok["body_bytes"].sum()) == trace.attempts[1].bytes_received


def test_vantage_chart_draws_only_this_calls_bytes(server):
    async def main(url: str) -> tuple[kit.Trace, kit.Trace]:
        return tuple(await asyncio.gather(kit.astream(url), kit.astream(url)))  # type: ignore[return-value]

    with kit.NetworkProxy(upstream=server, latency=0.02) as net:
        mine, _ = asyncio.run(main(net.url_for(SCENARIO)))
        chart = vantage_points(mine, net)
    spec = chart.to_dict()
    rows = [r for d in spec["datasets"].values() for r in d if r.get("layer") == "proxy forwarded"]
    wire = int(mine.server.query("kind != 'request'")["nbytes"].sum())
    assert sum(r["bytes"] for r in rows) == wire  # the other call's bytes are not drawn


@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
def test_the_server_logs_the_payload_of_every_write(server, framing):
    trace = kit.stream(server.url_for(kit.Scenario(events=5, gap=0.0, framing=framing, name=f"payload-{framing}")))
    writes = trace.server.query("kind != 'request'")
    assert trace.ok and int(writes["body_bytes"].sum()) == trace.attempt.bytes_received
    framed = writes[writes["kind"] != "headers"]
    extra = (framed["nbytes"] - framed["body_bytes"]).tolist()
    if framing == "chunked":  # size line and CRLF per chunk, then the last chunk "0\r\n\r\n"
        assert extra[:-1] == [len(b"%x\r\n\r\n" % n) for n in framed["body_bytes"][:-1]] and extra[-1] == 5
    else:
        assert not any(extra)


def test_a_truncated_chunk_logs_the_bytes_it_sent_as_payload(server):
    trace = kit.stream(server.url_for("truncated_chunk"), policy=kit.Policy(idle=5))
    cut = trace.server.query("kind == 'truncate'").iloc[0]
    assert cut["nbytes"] == len(b"%x\r\n" % (2 * cut["body_bytes"])) + cut["body_bytes"]
    writes = trace.server.query("kind != 'request'")
    assert int(writes["body_bytes"].sum()) == trace.attempt.bytes_received


def test_a_log_without_payload_sizes_joins_headers_only(server):
    trace = kit.stream(server.url_for(SCENARIO))
    a = trace.attempt
    a.server_log = [dataclasses.replace(e, body_bytes=None) for e in a.server_log]  # a log from older kits
    df = vantage.table(trace)
    body = df[~df["kind"].isin(["headers", "end"])]
    assert len(body) and body["body_bytes"].isna().all() and body["client_received_s"].isna().all()
    assert df.loc[df["kind"] == "headers", "client_received_s"].notna().all()


def test_bad_proxy_argument_is_a_config_error(server):
    trace = kit.stream(server.url_for(SCENARIO))
    with pytest.raises(kit.ConfigError):
        vantage.table(trace, 42)
    with pytest.raises(kit.ConfigError):
        vantage.table(trace, pd.DataFrame({"conn": [0]}))
