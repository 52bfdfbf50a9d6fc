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
