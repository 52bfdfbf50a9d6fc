"""Experiments: grids of scenario x network x policy x trials, run on worker processes.

- :mod:`._plan`: grid values, :class:`Cell`, derived per-trial seeds, trial ids.
- :mod:`._grid`: ``Grid``, the grid as a JSON-ready value (cells, ``to_dict``/``from_dict``).
- :mod:`._experiment`: :class:`Experiment`, a ``Grid`` that runs (``run``, ``arun``,
  ``replay``).
- :mod:`._driver`: the driver of a run: chunks of trials to an executor (the kit's
  :mod:`._pool` of local worker processes, any ``concurrent.futures.Executor``, a Dask
  ``Client``), one progress bar, stopping, lost trials.
- :mod:`._worker`: a chunk in a worker process, with its own fault server and proxies.
- :mod:`._parts`: the Parquet parts a worker returns (the tables of its trials), read back.
- :mod:`._scheduler`: trials on one event loop: staggered starts, adaptive concurrency.
- :mod:`._journal`: ``trials.jsonl``, the run folder, the bundle, resuming.

See ``docs/architecture.md`` ("Running an experiment") for how they fit together.
"""

from __future__ import annotations

from ._experiment import DEFAULT_CONCURRENCY, Experiment
from ._journal import CONFIG_FILE, JOURNAL, PARTS
from ._plan import Cell, network_seed, parse_trial_id, trial_id, trial_seed
from ._scheduler import DEFAULT_BUDGET

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_BUDGET",
    "DEFAULT_CONCURRENCY",
    "JOURNAL",
    "PARTS",
    "Cell",
    "Experiment",
    "network_seed",
    "parse_trial_id",
    "trial_id",
    "trial_seed",
]
