"""notebooks/03_real_clients.ipynb runs top to bottom and tells its story (the session's run:
fewer faults, the incident-era Node SDK only; ``labrun.PARAMETERS``)."""

from __future__ import annotations

import pytest
from labrun import errors_of, text_of


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first notebook test runs every notebook (see conftest.Notebooks)
def test_real_clients_notebook_runs(notebooks):
    nb = notebooks.run("03_real_clients.ipynb")
    assert not errors_of(nb), errors_of(nb)
    text = text_of(nb)
    assert "AssertionError" in text and "OverloadedError" in text
    assert "request ended without sending any chunks" in text  # the atlas lookup (and Node, where present)
