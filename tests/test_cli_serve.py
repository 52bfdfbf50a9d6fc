"""`kit serve`: a foreground fault server that answers curl, SDKs and Node, one line per request."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading

import httpx
import pytest

import kit
from kit import node
from kit.cli import serve as _cli_serve


class Serve:
    """`kit serve --port 0` in a subprocess, with its output lines on a queue."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kit.cli", "serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.banner = self.until(lambda ln: ln.startswith("Ctrl-C"))
        self.url = re.search(r"listening on (http://\S+)", self.banner[0]).group(1)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, pred, timeout: float = 20.0) -> list[str]:
        seen = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if pred(line):
                return seen

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        out = []
        try:
            out = self.until(lambda ln: ln.startswith("kit serve stopped"), timeout=10)
        finally:
            self.proc.wait(timeout=10)
        return out[-1]


@pytest.fixture(scope="module")
def serve():
    s = Serve()
    yield s
    if s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait()


def test_banner_lists_scenario_urls(serve):
    text = "\n".join(serve.banner)
    assert serve.url.startswith("http://127.0.0.1:")
    for name in ("empty_200", "headers_then_close", "overloaded_529"):
        assert f"{serve.url}/s/{name}\n" in text + "\n"
    assert "OpenAI protocol" in text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_and_one_line_per_request(serve):
    out = subprocess.run(
        ["curl", "-sN", "-X", "POST", f"{serve.url}/s/ok/v1/messages", "-d", "{}", "--max-time", "10"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert "event: message_stop" in out.stdout
    line = serve.until(lambda ln: "scenario=ok" in ln)[-1]
    assert "attempt=1" in line and "status=200" in line and "ended cleanly" in line and "POST /s/ok/v1/messages" in line


def test_faults_as_the_server_saw_them(serve):
    with httpx.Client(trust_env=False) as c:
        r = c.post(f"{serve.url}/s/overloaded_529/v1/messages", json={}, headers={"x-stainless-retry-count": "2"})
        assert r.status_code == 529
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(f"{serve.url}/s/headers_then_close/v1/messages", json={})
    line = serve.until(lambda ln: "scenario=overloaded_529" in ln)[-1]
    assert "attempt=3" in line and "status=529" in line
    line = serve.until(lambda ln: "scenario=headers_then_close" in ln)[-1]
    assert "closed (FIN) before the body ended" in line


def test_a_python_sdk_pointed_at_it(serve):
    r = kit.sdk.run("anthropic-python", f"{serve.url}/s/empty_200", timeout=5)
    assert r.exception == "AssertionError" and r.attempts is None  # the server is another process
    serve.until(lambda ln: "scenario=empty_200" in ln)


@pytest.mark.node
@pytest.mark.skipif(node.unavailable() is not None, reason=f"{node.unavailable()}")
def test_node_sdk_pointed_at_it(serve):
    try:
        r = node.run("anthropic-node", f"{serve.url}/s/pings_only", timeout=5)
    except node.NodeUnavailable as exc:  # e.g. no registry access on this machine
        pytest.skip(str(exc))
    assert r.message == "request ended without sending any chunks"
    line = serve.until(lambda ln: "scenario=pings_only" in ln)[-1]
    assert "status=200" in line and "ended cleanly" in line


def test_format_request_line():
    info = {"t_ns": 2_500_000_000, "method": "POST", "path": "/s/x/v1/messages", "scenario": "x", "attempt": 2}
    line = _cli_serve.format_request({**info, "status": 200, "end": "reset"}, 0)
    assert line.startswith("[    2.500s]") and "attempt=2" in line and "reset (RST)" in line


def test_stops_on_sigint():
    s = Serve()
    try:
        assert s.stop().startswith("kit serve stopped after 0 requests")
        assert s.proc.returncode == 0
    finally:
        if s.proc.poll() is None:
            s.proc.kill()


def test_port_taken_is_a_clear_error():
    with kit.FaultServer() as srv:
        port = srv.address[1]
        out = subprocess.run(
            [sys.executable, "-m", "kit.cli", "serve", "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert out.returncode == 2 and "cannot bind" in out.stderr
