"""The sweep notebook runs in a real kernel, saves a bundle and reloads it equal."""

from __future__ import annotations

import pytest

import kit


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first notebook test runs every notebook (see conftest.Notebooks)
def test_sweep_notebook(notebooks):
    nb = notebooks.run("04_timeout_sweep.ipynb")  # TRIALS = 3, 2 latencies, its bundle in notebooks.run_dir
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "tables equal: True" in text
    assert "settled at" in text and "TTFB p50: concurrent" in text  # the adaptive runner and the one-at-a-time check
    assert "dask tcp://127.0.0.1" in text and "same outcome per trial as the local run:" in text
    result = kit.load(notebooks.run_dir)
    assert len(result.trials) == 3 * 5 * 2  # trials x timeouts x latencies (labrun.PARAMETERS)
    t = result.trials
    assert {"client_lag_s", "kit_added_s", "within_budget"} <= set(t.columns)  # the fidelity columns
    # on the direct path the outcome is a step at the server's 1 s think time; 2.5 s is enough on any network
    direct = t[t["network"] == "direct"]
    assert set(direct.loc[direct["policy.first_chunk"] < 1.0, "cause"]) == {"timeout.first_chunk"}
    assert direct.loc[direct["policy.first_chunk"] > 1.0, "ok"].all()
    assert t.loc[t["policy.first_chunk"] >= 2.5, "ok"].all()
    assert any(
        o.get("data", {}).get("application/vnd.vegalite.v6+json") or o.get("data", {}).get("text/html")
        for o in outputs
        if o.output_type in ("display_data", "execute_result")
    )
