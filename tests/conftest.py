"""Shared fixtures: one real FaultServer on loopback per test module."""

from __future__ import annotations

import pytest

import kit


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    """A CA made at test time (trustme) and its PEM file: (ca, path)."""
    import trustme

    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="module")
def tls_server(tls_ca):
    """A FaultServer serving HTTPS with a certificate from ``tls_ca``: a provider stand-in."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca[0].issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    with kit.FaultServer(tls=ctx) as srv:
        yield srv


def pytest_terminal_summary(terminalreporter):
    """Say loudly, at the end of the run, that the browser test did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "test_browser" in r.nodeid]
    if skipped:
        reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
        terminalreporter.write_sep("!", "BROWSER TEST SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{len(skipped)} browser test(s) did not run: {reason}", red=True)
