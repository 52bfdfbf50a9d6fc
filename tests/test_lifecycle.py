"""Starting and stopping servers many times leaves no port, thread or descriptor behind."""

from __future__ import annotations

import os
import socket
import threading

import pytest

import kit


def open_fds() -> int:
    path = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    return len(os.listdir(path))


@pytest.mark.slow
def test_fault_server_500_starts_and_stops():
    threads, fds = threading.active_count(), open_fds()
    ports = set()
    for _ in range(500):
        srv = kit.FaultServer().start()
        ports.add(srv.address[1])
        srv.stop()
    assert threading.active_count() == threads
    assert open_fds() <= fds
    port = ports.pop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_is_idempotent_and_restart_works():
    srv = kit.FaultServer()
    srv.stop()
    with srv:
        assert kit.stream(srv.url_for("ok")).ok
    srv.stop()
    with srv:
        assert kit.stream(srv.url_for("ok")).ok


# ---------------------------------------------------------------- proxy, notebooks, interrupts
# (everything below: hardening, issue 8)

import _thread  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from kit.network import Network  # noqa: E402
from kit.proxy import NetworkProxy  # noqa: E402

LINUX = sys.platform.startswith("linux")
NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"

# the same probe runs here and inside a notebook kernel (which has no test helpers)
STATE_PROBE = r"""
def _kit_state():
    import os, threading
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    listening = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            p = line.split()
            if p[3] == "0A" and p[9] in inodes:
                listening.append(int(p[1].rsplit(":", 1)[1], 16))
    me = str(os.getpid())
    children = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                children.append(int(pid))
    return {
        "threads": sorted(t.name for t in threading.enumerate()),
        "listening": sorted(listening),
        "children": children,
        "fds": len(os.listdir("/proc/self/fd")),
        "fd_targets": sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")),
    }
"""
_probe_ns: dict = {}
exec(STATE_PROBE, _probe_ns)  # the same function here
_kit_state = _probe_ns["_kit_state"]


def kit_threads(state: dict) -> list[str]:
    return [n for n in state["threads"] if n.startswith("kit-")]


def _new_fds(before: dict, after: dict) -> list[str]:
    import re
    from collections import Counter

    kind = lambda t: re.sub(r"\[\d+\]", "", t)  # noqa: E731
    diff = Counter(map(kind, after["fd_targets"])) - Counter(map(kind, before["fd_targets"]))
    return sorted(diff.elements())


def assert_nothing_left(before: dict, after: dict, fd_slack: int = 0) -> None:
    assert kit_threads(after) == kit_threads(before), after["threads"]
    assert set(after["listening"]) <= set(before["listening"]), after["listening"]
    assert set(after["children"]) <= set(before["children"]), after["children"]
    assert after["fds"] <= before["fds"] + fd_slack, _new_fds(before, after)


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_network_proxy_500_starts_and_stops(server):
    """500 proxies, some stopped with a stream or an idle client still connected."""
    before = _kit_state()
    ports = set()
    url = server.url_for(kit.Scenario(events=3, gap=0.0))
    for i in range(500):
        proxy = NetworkProxy(upstream=server, latency="1ms" if i % 2 else None).start()
        ports.add(proxy.address[1])
        if i % 50 == 0:
            assert kit.stream(proxy.url_for(url)).ok
        idle = socket.create_connection(proxy.address, timeout=2) if i % 25 == 0 else None
        if i % 100 == 0:
            proxy.set(latency="5ms")
        proxy.stop()
        if idle is not None:
            idle.settimeout(2)
            try:  # closed or reset (it came in as the proxy stopped), never left hanging
                assert idle.recv(1) == b""
            except ConnectionResetError:
                pass
            idle.close()
        assert not proxy.running
    after = _kit_state()
    assert_nothing_left(before, after)
    assert not ports & set(after["listening"])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports.pop()), timeout=1).close()


def test_network_proxy_stop_is_idempotent_and_restart_works(server):
    proxy = NetworkProxy(upstream=server, latency="2ms")
    proxy.stop()
    for _ in range(2):
        with proxy:
            assert kit.stream(proxy.url_for(server.url_for("ok"))).ok
        proxy.stop()
    assert not proxy.running


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_proxy_on_a_taken_port_is_a_clear_error(server):
    with NetworkProxy(upstream=server) as first, pytest.raises(kit.ServerError, match="cannot listen"):
        NetworkProxy(upstream=server, listen=first.address).start()
    threads = [t.name for t in threading.enumerate() if t.name.startswith("kit-network-proxy")]
    assert not threads


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="reads /proc in the kernel")
def test_quickstart_with_every_cell_run_twice():
    """A user reruns each cell: the notebook still works and leaves no server, port or thread.

    The notebook runs once (libraries open what they keep for the kernel's life, e.g. the
    chart renderer's event fds), then again with every cell run twice: the second pass
    must leave exactly what the first did.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / "00_quickstart.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    probe = "\nimport gc as _gc, json as _json\n_gc.collect()\nprint('KITSTATE' + _json.dumps(_kit_state()))"

    def run(times: int) -> list:
        out = []
        for cell in code:
            out += [nbformat.v4.new_code_cell(cell.source, metadata=cell.metadata) for _ in range(times)]
            if "parameters" in cell.metadata.get("tags", []):
                out.append(nbformat.v4.new_code_cell("EVENTS = 10"))
        return out

    nb.cells = [
        nbformat.v4.new_code_cell(STATE_PROBE + probe),
        *run(1),
        nbformat.v4.new_code_cell(probe),
        *run(2),
        nbformat.v4.new_code_cell(probe),
    ]
    client = NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]
    states = [
        json.loads(line[len("KITSTATE") :])
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
        for line in o["text"].splitlines()
        if line.startswith("KITSTATE")
    ]
    start, once, twice = states
    assert_nothing_left(start, once, fd_slack=100)  # threads, ports, processes: none after one run
    assert_nothing_left(once, twice, fd_slack=2)  # and rerunning every cell adds nothing


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_interrupting_a_sweep_leaves_nothing_and_keeps_finished_trials(tmp_path):
    """Ctrl-C (KeyboardInterrupt into the main thread) during a sweep with its own server and proxies."""
    lan = Network.from_kwargs(latency="5ms", name="lan")
    exp = kit.Experiment(
        scenarios=[kit.Scenario(events=2, first_byte_delay=0.1, gap=0.0)],
        networks=[None, lan],
        trials=200,
        seed=5,
    )
    before = _kit_state()
    out = tmp_path / "run"
    timer = threading.Timer(2.5, _thread.interrupt_main)  # what Ctrl-C or a kernel interrupt does
    timer.start()
    try:
        with pytest.warns(UserWarning, match="interrupted: kept"):
            result = exp.run(8, out=out, progress=False)  # its own isolated server and one proxy
    finally:
        timer.cancel()
    assert 1 <= len(result.trials) < 400 and not result.complete
    assert result.trials["ok"].all()
    assert result.trials["trial_id"].is_unique
    assert len(kit.load(out).trials) == len(result.trials)
    if "kit-pool-reader" not in before["threads"]:
        # this run started the kept worker pool, which stays for the next run until idle
        # (_driver.POOL_IDLE_S): close it as the idle timer would, then nothing may be left
        from kit.experiment import _driver

        _driver._close_pool()
    deadline = time.monotonic() + 10  # the isolated server's child is reaped on the way out
    while time.monotonic() < deadline and _kit_state()["children"] != before["children"]:
        time.sleep(0.05)
    assert_nothing_left(before, _kit_state(), fd_slack=0)
