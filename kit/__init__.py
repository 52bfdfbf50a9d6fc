"""kit: reproduce streaming API failures on one laptop and see when every chunk arrived.

The curated public names; see docs/architecture.md for the map of the package.
"""

from __future__ import annotations

from ._errors import BundleError, ConfigError, KitError, ServerError
from .client import astream, stream
from .policy import Policy
from .scenarios import (
    Buffer,
    Close,
    ErrorEvent,
    Gap,
    HttpStatus,
    Malformed,
    NoTerminator,
    Reset,
    Scenario,
    Stall,
    TruncatedChunk,
    WrongFormat,
)
from .server import FaultServer, ScenarioURL
from .trace import CAUSES, METRICS, PHASES, Attempt, Outcome, Trace

__version__ = "0.1.0"

__all__ = [
    "CAUSES",
    "METRICS",
    "PHASES",
    "Attempt",
    "BundleError",
    "Buffer",
    "Close",
    "ConfigError",
    "ErrorEvent",
    "FaultServer",
    "Gap",
    "HttpStatus",
    "KitError",
    "Malformed",
    "NoTerminator",
    "Outcome",
    "Policy",
    "Reset",
    "Scenario",
    "ScenarioURL",
    "ServerError",
    "Stall",
    "Trace",
    "TruncatedChunk",
    "WrongFormat",
    "astream",
    "stream",
]
