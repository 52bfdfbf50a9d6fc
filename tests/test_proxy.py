"""NetworkProxy on real loopback sockets: every toxic, live changes, logs, clean stops.

Timing tolerances are generous (a loaded 2-core machine); tighter figures are in
benchmarks/bench_proxy.py. The upstream servers are tiny threaded ones defined here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest

import kit
import kit.proxy
from kit._clock import now_ns
from kit._errors import ConfigError, ServerError
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
)
from kit.proxy import CONNECTION_COLUMNS, EVENT_COLUMNS, FORWARD_COLUMNS, NetworkProxy

# -- tiny upstream servers ----------------------------------------------------------


@contextlib.contextmanager
def serve(handler: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A threaded TCP server on loopback running ``handler(sock)`` per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    socks: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def handle(sock: socket.socket) -> None:
        with contextlib.suppress(OSError), sock:
            handler(sock)

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
            thread = threading.Thread(target=handle, args=(sock,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


def echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)


def sender(data: bytes, then: str = "close") -> Callable[[socket.socket], None]:
    """Send ``data`` at once, then ``close`` (FIN), ``reset`` (RST) or ``wait`` for the client."""

    def handler(sock: socket.socket) -> None:
        sock.sendall(data)
        if then == "reset":
            time.sleep(0.05)  # an RST discards unread data on Linux: let the proxy read first
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if then == "close":
            sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass

    return handler


def ticker(count: int, interval: float) -> Callable[[socket.socket], None]:
    """Send ``count`` 16-byte records (sequence, perf_counter_ns) every ``interval`` s."""

    def handler(sock: socket.socket) -> None:
        start = now_ns()
        for i in range(count):
            target = start + int(i * interval * 1e9)
            while (delay := target - now_ns()) > 0:
                time.sleep(delay / 1e9)
            sock.sendall(struct.pack("!qq", i, now_ns()))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass

    return handler


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def connect(proxy: NetworkProxy, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def rtts(sock: socket.socket, count: int, size: int = 64) -> list[float]:
    out = []
    for _ in range(count):
        t = time.perf_counter()
        sock.sendall(b"x" * size)
        assert read_exactly(sock, size) == b"x" * size
        out.append(time.perf_counter() - t)
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def mostly(values: Iterable[bool], fraction: float = 0.85) -> bool:
    """True if at least ``fraction`` of ``values`` hold: a preempted thread on a loaded
    machine may miss a timing bound once in a while; a broken toxic misses them all."""
    values = list(values)
    return sum(values) >= fraction * len(values)


def events(proxy: NetworkProxy, conn: int = 0) -> list[str]:
    return [e["event"] for e in proxy.log if e["type"] == "event" and e["conn"] == conn]


# -- basics -------------------------------------------------------------------------


def test_forwards_both_ways_and_logs() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream) as proxy:
        assert proxy.address[0] == "127.0.0.1" and proxy.address[1] > 0
        assert proxy.url == f"http://127.0.0.1:{proxy.address[1]}"
        with connect(proxy) as sock:
            sock.sendall(b"hello")
            assert read_exactly(sock, 5) == b"hello"
        wait_for(lambda: proxy.connection(0)["close_reason"] is not None)
        forwards = proxy.forwards_df()
        assert tuple(forwards.columns) == FORWARD_COLUMNS
        assert set(forwards.direction) == {"upstream", "downstream"}
        assert forwards.nbytes.sum() == 10 and not forwards.hit.any() and not forwards.dropped.any()
        assert (forwards.delay_ns >= 0).all()
        conns = proxy.connections_df()
        assert tuple(conns.columns) == CONNECTION_COLUMNS
        row = conns.iloc[0]
        assert (row.bytes_up, row.bytes_down, row.upstream) == (5, 5, "connected")
        assert row.close_reason == "client closed" and not row.reset
        assert tuple(proxy.events_df().columns) == EVENT_COLUMNS
        names = events(proxy)
        assert names[:2] == ["open", "upstream_connected"] and names[-1] == "close"
        times = [e["t_ns"] for e in proxy.log]
        assert times == sorted(times)


def test_large_transfer_is_byte_identical() -> None:
    payload = random.Random(0).randbytes(5_000_000)
    with serve(sender(payload)) as upstream, NetworkProxy(upstream) as proxy, connect(proxy) as sock:
        assert read_all(sock) == payload
    assert max(proxy.forwards_df().nbytes) <= kit.proxy.READ_SIZE  # one row per read, at most


# -- latency ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_per_direction(stream: str) -> None:
    latency, jitter = 0.05, 0.01
    with serve(echo) as upstream, NetworkProxy(upstream) as proxy, connect(proxy) as sock:
        direct = min(rtts(sock, 5))
        proxy.add(Latency(latency, jitter=jitter, stream=stream))
        added = [rtt - direct for rtt in rtts(sock, 15)]
        assert mostly(abs(a - latency) <= jitter + 0.010 for a in added), added
        assert max(added) - min(added) > 0.002  # jitter is there
        delayed = proxy.forwards_df().query("hit")
        assert set(delayed.direction) == {stream} and set(delayed.toxics) == {"latency"}
        in_proxy = delayed.delay_ns / 1e9  # the proxy's own vantage point
        assert mostly((in_proxy - latency).abs() <= jitter + 0.010, 0.9), in_proxy.tolist()
        assert in_proxy.min() >= latency - jitter - 0.002  # never (much) early


def test_stacked_latencies_add_up() -> None:
    network = Network([Latency(0.03, name="a"), Latency(0.02, name="b"), Latency(0.01, stream="upstream")])
    with serve(echo) as upstream, NetworkProxy(upstream, network=network) as proxy, connect(proxy) as sock:
        measured = rtts(sock, 8)
        assert mostly(abs(rtt - 0.06) <= 0.010 for rtt in measured), measured
        assert set(proxy.forwards_df().query("direction == 'downstream'").toxics) == {"a,b"}


def test_latency_is_pipelined_and_keeps_order() -> None:
    # 50 records 10 ms apart under 200 ms latency: each arrives ~200 ms after it was sent,
    # not 50 x 200 ms after the first (no head-of-line wait beyond order)
    with serve(ticker(50, 0.01)) as upstream, NetworkProxy(upstream, latency=0.2) as proxy, connect(proxy) as sock:
        data = read_all(sock)
    arrival = now_ns()
    records = [struct.unpack("!qq", data[i : i + 16]) for i in range(0, len(data), 16)]
    assert [seq for seq, _ in records] == list(range(50))
    delays = proxy.forwards_df().query("direction == 'downstream'").delay_ns / 1e9
    assert mostly(delays.between(0.19, 0.21), 0.9), delays.tolist()
    assert delays.min() >= 0.198
    assert (arrival - records[0][1]) / 1e9 < 1.2


# -- bandwidth, slicer --------------------------------------------------------------


def test_bandwidth_480kb_at_1000kb_per_s() -> None:
    payload = os.urandom(480_000)
    with serve(sender(payload)) as upstream, NetworkProxy(upstream, bandwidth="1000KB/s") as proxy:
        start = time.perf_counter()
        with connect(proxy) as sock:
            assert read_all(sock) == payload
        elapsed = time.perf_counter() - start
    # 480 ms of transmission; 10 % either way (Toxiproxy's own test allows more)
    pieces = proxy.forwards_df().query("direction == 'downstream'")
    assert pieces.nbytes.max() <= 10_000  # 10 ms pieces
    span = (pieces.t_sent_ns.max() - pieces.t_recv_ns.min()) / 1e9
    assert span == pytest.approx(0.480, rel=0.10), span  # Toxiproxy's own test allows more
    assert 0.480 * 0.9 <= elapsed <= 0.480 * 1.25, elapsed  # end to end, on a possibly loaded machine


def test_slicer_cuts_pieces_and_keeps_bytes() -> None:
    payload = os.urandom(10_000)
    toxic = Slicer(100, size_variation=20, delay=0.0005)
    with serve(sender(payload)) as upstream, NetworkProxy(upstream, network=[toxic]) as proxy, connect(proxy) as sock:
        assert read_all(sock) == payload
    pieces = proxy.forwards_df().query("direction == 'downstream'")
    chunks = pieces.t_recv_ns.nunique()
    assert 10_000 // 120 <= len(pieces) <= 10_000 // 80 + chunks
    assert pieces.nbytes.max() <= 120
    assert (pieces.groupby("t_recv_ns").nbytes.apply(lambda s: (s.iloc[:-1] >= 80).all())).all()


# -- cutting connections ------------------------------------------------------------


def test_reset_peer_gives_econnreset() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream, network=[ResetPeer(0.1)]) as proxy, connect(proxy) as sock:
        start = time.perf_counter()
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
        assert 0.08 <= time.perf_counter() - start <= 2
    wait_for(lambda: proxy.connection(0)["close_reason"] is not None)
    record = proxy.connection(0)
    assert record["close_reason"] == "reset_peer" and record["reset"]


def test_limit_data_delivers_exactly_n_bytes_then_eof() -> None:
    payload = os.urandom(10_000)
    with serve(sender(payload, then="wait")) as upstream, NetworkProxy(upstream, limit_data=1234) as proxy:
        with connect(proxy) as sock:
            assert read_all(sock) == payload[:1234]
        wait_for(lambda: proxy.connection(0)["close_reason"] is not None)
        assert proxy.connection(0)["close_reason"] == "limit_data"
        assert proxy.connection(0)["bytes_down"] == 1234


def test_timeout_zero_is_a_blackhole_until_removed() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream, timeout=0) as proxy, connect(proxy, timeout=0.3) as sock:
        sock.sendall(b"ping")
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing arrives ...
        assert proxy.connection(0)["close_reason"] is None  # ... and the connection stays open
        assert proxy.connection(0)["dropped_down"] == 4
        proxy.remove("timeout")
        sock.sendall(b"pong")
        assert read_exactly(sock, 4) == b"pong"  # the dropped ping is gone for good


def test_timeout_closes_after_t() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream, network=[Timeout(0.2)]) as proxy, connect(proxy) as sock:
        start = time.perf_counter()
        sock.sendall(b"ping")
        assert sock.recv(100) == b""
        assert 0.15 <= time.perf_counter() - start <= 2
    wait_for(lambda: proxy.connection(0)["close_reason"] == "timeout")


def test_stall_then_resume() -> None:
    payload = os.urandom(3000)
    stall = Stall(1000, duration=0.3)
    with serve(sender(payload)) as upstream, NetworkProxy(upstream, network=[stall]) as proxy, connect(proxy) as sock:
        head = read_exactly(sock, 1000)
        t_head = time.perf_counter()
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # stalled: nothing, and no close
        sock.settimeout(5)
        tail = read_all(sock)
        gap = time.perf_counter() - t_head
    assert head + tail == payload
    assert 0.25 <= gap <= 1.5
    assert {"stall_start", "stall_end"} <= set(events(proxy))


def test_stall_by_body_offset_skips_the_header_block() -> None:
    head = b"HTTP/1.1 200 OK\r\nx-any-length: " + b"h" * 77 + b"\r\n\r\n"
    payload = head + os.urandom(500)
    stall = Stall(10, duration=0.3, body=True)
    with serve(sender(payload)) as upstream, NetworkProxy(upstream, network=[stall]) as proxy, connect(proxy) as sock:
        first = read_exactly(sock, len(head) + 10)  # the headers and 10 body bytes, then the stall
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(5)
        assert first + read_all(sock) == payload
    assert f"after {len(head) + 10} bytes" in " ".join(e["detail"] for e in proxy.log if e["type"] == "event")


def test_stall_forever_until_removed_live() -> None:
    payload = os.urandom(3000)
    with (
        serve(sender(payload, then="wait")) as upstream,
        NetworkProxy(upstream, stall_after=1000) as proxy,
        connect(proxy, timeout=0.3) as sock,
    ):
        assert read_exactly(sock, 1000) == payload[:1000]
        with pytest.raises(TimeoutError):
            sock.recv(1)
        proxy.set(stall_after=None)
        assert read_exactly(sock, 2000) == payload[1000:]


def test_slow_close_holds_the_fin() -> None:
    with serve(sender(b"hello")) as upstream, NetworkProxy(upstream, slow_close=0.3) as proxy, connect(proxy) as sock:
        start = time.perf_counter()
        assert read_exactly(sock, 5) == b"hello"
        assert time.perf_counter() - start < 0.2
        assert sock.recv(10) == b""
        assert time.perf_counter() - start >= 0.25


def test_loss_holds_chunks_for_an_rto() -> None:
    with (
        serve(echo) as upstream,
        NetworkProxy(upstream, network=[Loss(1.0, rto=0.05)]) as proxy,
        connect(proxy) as sock,
    ):
        for rtt in rtts(sock, 4):
            assert 0.045 <= rtt <= 0.07
        proxy.set(loss=0.0)
        assert max(rtts(sock, 4)) < 0.03


def test_down_resets_new_connections_only() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream) as proxy, connect(proxy) as before:
        before.sendall(b"a")
        assert read_exactly(before, 1) == b"a"
        proxy.add(Down())
        with contextlib.suppress(ConnectionResetError), socket.create_connection(proxy.address, 5) as refused:
            assert refused.recv(10) == b""  # or the reset, at connect or here
        before.sendall(b"b")
        assert read_exactly(before, 1) == b"b"  # already open: unaffected
        wait_for(lambda: proxy.connection(1)["close_reason"] == "down")
        assert proxy.connection(1)["reset"]
        proxy.remove("down")
        with connect(proxy) as after:
            after.sendall(b"c")
            assert read_exactly(after, 1) == b"c"


def test_upstream_refused_resets_the_client() -> None:
    with NetworkProxy(("127.0.0.1", closed_port())) as proxy:
        with contextlib.suppress(ConnectionResetError), socket.create_connection(proxy.address, 5) as sock:
            assert sock.recv(10) == b""  # or the reset, at connect or here
        wait_for(lambda: proxy.connection(0)["close_reason"] is not None)
    record = proxy.connection(0)
    assert record["upstream"] == "refused" and record["close_reason"] == "upstream refused" and record["reset"]
    assert "upstream_refused" in events(proxy)


def test_upstream_reset_reaches_the_client_after_its_data() -> None:
    with serve(sender(b"partial", then="reset")) as upstream, NetworkProxy(upstream, latency=0.02) as proxy:
        with connect(proxy) as sock:
            assert read_exactly(sock, 7) == b"partial"
            with pytest.raises(ConnectionResetError):
                sock.recv(10)
        wait_for(lambda: proxy.connection(0)["close_reason"] is not None)
    assert proxy.connection(0)["close_reason"] == "upstream reset"


# -- live changes -------------------------------------------------------------------


def test_latency_change_applies_to_an_open_stream() -> None:
    with serve(ticker(40, 0.02)) as upstream, NetworkProxy(upstream) as proxy, connect(proxy) as sock:
        received: list[tuple[int, int, int]] = []
        changed_at = None
        while chunk := read_exactly(sock, 16):
            seq, sent = struct.unpack("!qq", chunk)
            received.append((seq, sent, now_ns()))
            if seq == 10:
                proxy.set(latency=0.15)
                changed_at = now_ns()
    assert changed_at is not None and len(received) == 40
    before = [(a - s) / 1e9 for _, s, a in received if s < changed_at - 5_000_000]
    after = [(a - s) / 1e9 for _, s, a in received if s > changed_at + 5_000_000]
    assert len(before) >= 8 and len(after) >= 20
    assert mostly(d < 0.02 for d in before), before
    assert mostly(0.148 <= d <= 0.165 for d in after), after
    assert min(after) >= 0.148


def test_bandwidth_removed_mid_transfer_speeds_up() -> None:
    payload = os.urandom(400_000)
    with serve(sender(payload)) as upstream, NetworkProxy(upstream, bandwidth="500KB/s") as proxy:
        start = time.perf_counter()
        with connect(proxy) as sock:
            head = read_exactly(sock, 50_000)
            proxy.set(bandwidth=None)
            tail = read_all(sock)
        elapsed = time.perf_counter() - start
    assert head + tail == payload
    assert elapsed < 0.4  # 0.8 s at 500 KB/s throughout


# -- toxicity -----------------------------------------------------------------------


def _open_and_close(proxy: NetworkProxy, count: int) -> None:
    for _ in range(count):
        socket.create_connection(proxy.address).close()
    wait_for(lambda: len(proxy.connections()) == count and all(c["close_reason"] for c in proxy.connections()))


def test_toxicity_zero_never_hits() -> None:
    upstream = ("127.0.0.1", closed_port())  # refused: cheap connections; the roll happens on open
    with NetworkProxy(upstream, network=[Latency(0.1, toxicity=0)]) as proxy:
        _open_and_close(proxy, 200)
    conns = proxy.connections_df()
    assert (conns.toxics_hit == "").all() and (conns.toxics_missed == "latency").all()


def test_toxicity_half_hits_about_half_deterministically() -> None:
    upstream = ("127.0.0.1", closed_port())
    hits = []
    for _ in range(2):
        with NetworkProxy(upstream, network=[Latency(0.1, toxicity=0.5)], seed=7) as proxy:
            _open_and_close(proxy, 200)
        conns = proxy.connections_df()
        hits.append(set(conns.conn[conns.toxics_hit == "latency"]))
    assert 70 <= len(hits[0]) <= 130  # binomial(200, 0.5): +-4.2 sd
    assert hits[0] == hits[1]  # same seed, same connections
    expected = {i for i in range(200) if random.Random(f"7:{i}:latency").random() < 0.5}
    assert hits[0] == expected


def _kit_request(trial: int, attempt: int = 1) -> bytes:
    return b"POST /s/ok HTTP/1.1\r\nx-kit-trial: %d\r\nx-kit-attempt: %d\r\ncontent-length: 2\r\n\r\n{}" % (
        trial,
        attempt,
    )


def test_toxicity_follows_the_trial_a_kit_request_names_not_connection_order() -> None:
    hits = []
    with serve(echo) as upstream:
        for order in (range(40), reversed(range(40))):
            with NetworkProxy(upstream, network=[Latency(0.001, toxicity=0.5)], seed=7) as proxy:
                for trial in order:
                    socket.create_connection(proxy.address).close()  # a non-kit connection shifts the ids
                    with socket.create_connection(proxy.address) as sock:
                        sock.sendall(_kit_request(trial))
                        assert sock.recv(100)  # echoed: the head went through
                wait_for(lambda p=proxy: all(c["close_reason"] for c in p.connections()))
            conns = proxy.connections_df()
            kit_conns = conns[conns.trials != ""]
            hits.append(set(kit_conns.trials[kit_conns.toxics_hit == "latency"]))
    assert hits[0] == hits[1]  # the same trials hit, in whatever order they came
    expected = {f"{t}:1" for t in range(40) if random.Random(f"7:{t}:1:latency").random() < 0.5}
    assert hits[0] == expected


def test_a_kept_alive_connection_is_keyed_again_by_each_trial() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream, network=[Latency(0.001, toxicity=0.5)], seed=7) as proxy:
        with socket.create_connection(proxy.address) as sock:
            for trial in (3, 4, 4):  # the same trial again (a retry on this connection): no new key
                sock.sendall(_kit_request(trial))
                assert sock.recv(100)
        wait_for(lambda: all(c["close_reason"] for c in proxy.connections()))
    assert proxy.connections_df().trials.tolist() == ["3:1,4:1"]


# -- lifecycle ----------------------------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stop_leaves_no_threads_or_sockets() -> None:
    with serve(echo) as upstream:
        threads_before = set(threading.enumerate())
        fds_before = _fds() if sys.platform == "linux" else 0
        proxy = NetworkProxy(upstream, latency=0.5)
        proxy.start()
        clients = [connect(proxy) for _ in range(5)]
        for sock in clients:
            sock.sendall(b"in flight")  # held by the latency when we stop
        wait_for(lambda: sum(c["upstream"] == "connected" for c in proxy.connections()) == 5)
        proxy.stop()
        proxy.stop()  # idempotent
        for sock in clients:
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(10) == b""
            sock.close()
        assert not [t for t in set(threading.enumerate()) - threads_before if t.name.startswith("kit")]
        assert not [t for t in threading.enumerate() if t.name.startswith("kit-network-proxy")]
        assert all(c["close_reason"] == "proxy stopped" for c in proxy.connections())
        if sys.platform == "linux":
            wait_for(lambda: _fds() <= fds_before)
        with pytest.raises(ServerError):
            _ = proxy.address


def test_clear_log_keeps_ids_and_open_connections() -> None:
    with serve(echo) as upstream, NetworkProxy(upstream) as proxy:
        _open_and_close(proxy, 1)
        with connect(proxy) as sock:
            sock.sendall(b"x")
            assert read_exactly(sock, 1) == b"x"
            proxy.clear_log()
            assert proxy.log == [] and len(proxy.forwards_df()) == 0
            assert [c["conn"] for c in proxy.connections()] == [1]  # the open one stays
            assert proxy.connection(1)["bytes_up"] == 1
            with pytest.raises(ConfigError, match="conn"):
                proxy.connection(0)


def test_async_with() -> None:
    async def main() -> bytes:
        with serve(echo) as upstream:
            async with NetworkProxy(upstream, latency="10ms") as proxy:
                reader, writer = await asyncio.open_connection(*proxy.address)
                writer.write(b"async")
                data = await reader.readexactly(5)
                writer.close()
                await writer.wait_closed()
            assert not proxy.running
            return data

    assert asyncio.run(main()) == b"async"
    assert not [t for t in threading.enumerate() if t.name.startswith("kit-network-proxy")]


def test_listen_must_be_loopback_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="allow_remote"):
        NetworkProxy(("127.0.0.1", 1), listen=("0.0.0.0", 0))
    with pytest.warns(UserWarning, match="other machines"):
        proxy = NetworkProxy(("127.0.0.1", 1), listen="0.0.0.0:0", allow_remote=True)
    assert proxy._listen == ("0.0.0.0", 0)
    assert NetworkProxy("127.0.0.1:1", listen="localhost:0")._listen == ("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="upstream"):
        NetworkProxy("nowhere")


def test_bind_failure_is_a_server_error() -> None:
    with NetworkProxy(("127.0.0.1", 1)) as first:
        taken = first.address
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            with pytest.raises(ServerError, match="cannot listen"):
                NetworkProxy(("127.0.0.1", 1), listen=sock.getsockname()).start()
        assert first.address == taken
    assert not [t for t in threading.enumerate() if t.name.startswith("kit-network-proxy")]


def test_url_for() -> None:
    class ScenarioURL(str):
        def with_origin(self, origin: str) -> ScenarioURL:
            return ScenarioURL(origin + "/s/" + self.rsplit("/", 1)[1])

    class Server:
        address = ("127.0.0.1", 5555)

        def url_for(self, scenario: str) -> ScenarioURL:
            return ScenarioURL(f"http://127.0.0.1:5555/s/{scenario}")

    with NetworkProxy(Server()) as proxy:
        port = proxy.address[1]
        assert proxy.upstream == ("127.0.0.1", 5555)
        plain = proxy.url_for("http://127.0.0.1:5555/s/ok?x=1")
        assert plain == f"http://127.0.0.1:{port}/s/ok?x=1" and type(plain) is str
        moved = proxy.url_for(ScenarioURL("http://127.0.0.1:5555/s/ok"))
        assert isinstance(moved, ScenarioURL) and moved == f"http://127.0.0.1:{port}/s/ok"
        assert proxy.url_for("stall") == f"http://127.0.0.1:{port}/s/stall"
    with NetworkProxy(("127.0.0.1", 5555)) as proxy, pytest.raises(ConfigError, match="upstream=server"):
        proxy.url_for("stall")


def test_toxic_management() -> None:
    proxy = NetworkProxy(("127.0.0.1", 1), latency="200ms", jitter="50ms", bandwidth="20KB/s")
    assert [t.name for t in proxy.toxics] == ["latency", "bandwidth"]
    proxy.set(jitter=0.01)
    assert proxy.toxics[0] == Latency(0.2, jitter=0.01)
    with pytest.raises(ConfigError, match="replace=True"):
        proxy.add(Latency(0.1))
    proxy.add({"kind": "latency", "latency": "100ms"}, replace=True)
    assert proxy.toxics[0] == Latency(0.1)
    assert proxy.remove("bandwidth") == Bandwidth(20_000)
    with pytest.raises(ConfigError, match="did you mean 'latency'"):
        proxy.remove("latncy")
    proxy.add(LimitData(10), replace=False)
    assert proxy.network == Network([Latency(0.1), LimitData(10)])
    proxy.clear()
    assert proxy.toxics == ()
    assert NetworkProxy(("127.0.0.1", 1), network=Network([SlowClose(1)]).to_dict()).toxics == (SlowClose(1.0),)


# -- the command line ---------------------------------------------------------------

CLI = (
    "import argparse, sys, kit.cli.proxy as m; p = argparse.ArgumentParser(prog='kit');"
    " m.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)


def test_cli_runs_until_ctrl_c() -> None:
    with serve(echo) as upstream:
        command = [sys.executable, "-c", CLI, "proxy", "--upstream", f"{upstream[0]}:{upstream[1]}"]
        command += ["--latency", "20ms", "--bandwidth", "1MB/s", "--stall-after", "4KB", "--stall-for", "10ms"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()
            assert first.startswith("kit proxy listening on http://127.0.0.1:"), first + proc.stderr.read()
            assert "latency 20ms" in first and "bandwidth 1MB/s" in first and "stall after 4kB for 10ms" in first
            port = int(first.split()[4].rsplit(":", 1)[1])
            assert proc.stdout.readline().startswith("Ctrl-C")
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"hi")
                assert read_exactly(sock, 2) == b"hi"
            opened = proc.stdout.readline()
            closed = proc.stdout.readline()
            assert "#0 opened from 127.0.0.1:" in opened and "toxics hit: latency,bandwidth,stall" in opened
            assert "#0 closed (client closed)" in closed and "up 2B" in closed and "down 2B" in closed
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "stopped after 1 connection" in out


def test_cli_reports_bad_values() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "proxy", "--upstream", "127.0.0.1:1", "--latency", "20 furlongs"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "latency.latency='20 furlongs' is not valid" in proc.stderr


def test_cli_register_adds_the_subcommand() -> None:
    import kit.cli.proxy as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["proxy", "--upstream", "h:1", "--jitter", "5ms", "--down"])
    assert args.func is cli.main and args.jitter == "5ms" and args.down and args.listen == "127.0.0.1:0"


# -- with the kit's fault server and client -----------------------------------------


def test_through_the_fault_server_and_client() -> None:
    import kit

    with kit.FaultServer() as server, NetworkProxy(upstream=server, latency=0.1) as net:
        url = net.url_for(server.url_for("ok"))
        assert type(url) is type(server.url_for("ok")) and url.startswith(net.url)
        trace = kit.stream(url)
        assert trace.outcome.ok
        assert trace.summary()["first_chunk_s"] >= 0.1
        net.set(latency=None, stall_after="1KB")
        stalled = kit.stream(net.url_for("ok"), policy=kit.Policy(idle=0.3))
        assert (stalled.outcome.phase, stalled.outcome.cause) == ("stream", "timeout.idle")
        assert net.connection(1)["bytes_down"] == 1000
        assert "stall_start" in events(net, 1)


def test_url_for_a_scenario_with_the_server_given_by_address() -> None:
    with kit.FaultServer() as server, NetworkProxy(upstream=server.address) as proxy:
        url = proxy.url_for(kit.Scenario(events=3, gap=0))
        assert url.startswith(proxy.url + "/s/") and kit.stream(url).ok
    with NetworkProxy(upstream=("127.0.0.1", 9)) as proxy, pytest.raises(ConfigError):
        proxy.url_for("ok")  # no fault server there to resolve the preset


def test_keep_bounds_the_log_of_a_long_running_proxy(server):
    import httpx

    with kit.NetworkProxy(upstream=server, keep=10) as proxy:
        url = proxy.url_for(server.url_for(kit.Scenario(events=2, gap=0.0))) + "/v1/messages"
        for _ in range(60):  # a new connection each time
            with httpx.Client() as client:
                client.post(url, json={"stream": True}).read()
        deadline = time.monotonic() + 5
        while proxy.connections_seen < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.connections_seen == 60
        kept = {c["conn"] for c in proxy.connections()}
        assert len(kept) <= 10 + 5 + 1
        assert set(proxy.forwards_df()["conn"]) <= kept and set(proxy.events_df()["conn"]) <= kept
        assert max(kept) >= 55  # the newest are kept
