"""Shared fixtures: one real FaultServer on loopback per test module."""

from __future__ import annotations

import pytest

import kit


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as srv:
        yield srv
