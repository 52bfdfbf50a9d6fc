"""kit: reproduce streaming API failures on one laptop and see when every chunk arrived.

The curated public names; see docs/architecture.md for the map of the package.
"""

from __future__ import annotations

# submodules: kit.atlas.lookup, kit.sdk.run...
from . import atlas, claude_code, evidence, node, postmortem, records, sdk, tables, vantage
from ._errors import BundleError, ConfigError, KitError, ServerError
from ._progress import progress
from ._redact import unredact
from ._version import __version__ as __version__
from .client import astream, stream
from .compare import compare, load, rerun
from .evidence import from_har
from .experiment import Experiment
from .faults import (
    Buffer,
    Close,
    ErrorEvent,
    Hostile,
    HttpStatus,
    Malformed,
    NoTerminator,
    Reset,
    Stall,
    TruncatedChunk,
    WrongFormat,
)
from .instrument import Instrumented, instrument
from .network import Network
from .policy import Policy
from .proxy import NetworkProxy
from .recorder import Recorder
from .replay import replay_scenario
from .replay_compare import fidelity as replay_fidelity
from .result import Result
from .scenarios import Gap, Scenario
from .server import FaultServer, ScenarioURL
from .trace import CAUSES, METRICS, PHASES, Attempt, Outcome, Trace

__all__ = [
    "CAUSES",
    "METRICS",
    "PHASES",
    "Attempt",
    "Experiment",
    "Instrumented",
    "Result",
    "compare",
    "from_har",
    "load",
    "progress",
    "replay_fidelity",
    "replay_scenario",
    "rerun",
    "BundleError",
    "Buffer",
    "Close",
    "ConfigError",
    "ErrorEvent",
    "FaultServer",
    "Gap",
    "Hostile",
    "HttpStatus",
    "KitError",
    "Malformed",
    "Network",
    "NetworkProxy",
    "NoTerminator",
    "Outcome",
    "Policy",
    "Recorder",
    "Reset",
    "Scenario",
    "ScenarioURL",
    "ServerError",
    "Stall",
    "Trace",
    "TruncatedChunk",
    "WrongFormat",
    "astream",
    "atlas",
    "claude_code",
    "evidence",
    "instrument",
    "node",
    "postmortem",
    "records",
    "sdk",
    "stream",
    "tables",
    "unredact",
    "vantage",
]
