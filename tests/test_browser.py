"""JupyterLab in a real browser (Debian's chromium, Playwright), used as a person uses it.

One JupyterLab session (``conftest.Notebooks.lab``, started as ``make lab`` starts it, in a
clone-alike of this repository) runs every notebook with Run All and saves it; then
``git status`` must show no notebook (the nbstripout filter keeps outputs out of git) and
no saved notebook may hold an error. Before the explorer is saved, each of its "What to
try" steps is done with the mouse and keyboard, and its effect asserted. The other notebook
tests judge the same saved files, so no notebook runs twice. A last test puts several
charts on one page: each must draw all its rows. Offline by design: the charts use
vl-convert's bundled JavaScript. ``KIT_SCREENSHOT_DIR`` keeps screenshots.
"""

from __future__ import annotations

import os
import pathlib
import re
import time

import pytest
from labrun import CHROMIUM, errors_of

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium not found: install it (README, 'Two commands') or set KIT_CHROMIUM",
    ),
]

EXPLORER = "01_explorer.ipynb"


@pytest.mark.timeout(1800)  # every notebook, one after the other
def test_every_notebook_runs_and_saves_clean_in_jupyterlab(notebooks):
    lab = notebooks.lab()
    print("seconds per notebook in JupyterLab:", {k: round(v) for k, v in lab.seconds.items()})
    print("of which open / run / save / close:", lab.phases)
    assert sorted(lab.saved) == sorted(p.name for p in (lab.repo / "notebooks").glob("*.ipynb"))  # + the charts page
    for name, nb in lab.saved.items():
        assert not errors_of(nb), f"{name}: {errors_of(nb)}"
        assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code"), f"{name}: not every cell ran"
        assert any(c.get("outputs") for c in nb.cells), f"{name} was saved without its outputs"
    # outputs are on disk, yet git sees every notebook as committed
    assert not [line for line in lab.git_status.splitlines() if line.endswith(".ipynb")], lab.git_status


@pytest.mark.timeout(1800)
def test_explorer_what_to_try_steps_do_what_they_say(notebooks):
    """Notebook 01's "What to try" list, each step done in the browser (``explorer_steps``)."""
    _check(notebooks, EXPLORER)


def _check(notebooks, name: str) -> None:
    """Raise what the session's check on notebook ``name`` raised in the browser, if anything."""
    lab = notebooks.lab()
    assert name in lab.checks, f"the check on {name} did not run"
    if lab.checks[name] is not None:
        raise lab.checks[name]


# ------------------------------------------------------------------ the explorer, by hand


def _outcome(page) -> str:
    return page.evaluate(
        r"""() => Array.from(document.querySelectorAll('.widget-html-content'))
              .map(e => e.textContent).filter(t => /[a-z_]+\/[a-z_.]+/.test(t) && !/run \d+,/.test(t)).join('\n')"""
    )


def _runs(page) -> int:
    """The explorer's run counter ("run 3, 1.52 s")."""
    text = page.evaluate(
        "() => Array.from(document.querySelectorAll('.widget-html-content')).map(e => e.textContent).join(' ')"
    )
    found = re.findall(r"run (\d+),", text)
    return int(found[-1]) if found else 0


def _wait_for(page, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(100)
    shot = pathlib.Path(os.environ.get("KIT_SCREENSHOT_DIR") or "/tmp") / "explorer-failure.png"
    page.screenshot(path=str(shot), full_page=True)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; outcome now: {_outcome(page)!r}; see {shot}")


def _slider(page, label: str, value: float) -> None:
    """Type ``value`` into the readout of the slider labelled ``label`` (as a person can)."""
    slider = page.locator(".widget-slider", has=page.get_by_text(label, exact=True)).first
    slider.scroll_into_view_if_needed()
    slider.locator(".widget-readout").click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{value:g}")
    page.keyboard.press("Enter")


def _preset(page, name: str) -> None:
    box = page.locator(".widget-dropdown", has=page.get_by_text("preset", exact=True)).first
    box.locator("select").select_option(name)


def _tick(page, label: str, on: bool) -> None:
    box = page.locator(".widget-checkbox", has_text=label).first.locator("input[type=checkbox]")
    box.check() if on else box.uncheck()


def _after(page, change, expect, what: str, timeout: float = 60) -> str:
    """Make ``change``; wait for a later run whose outcome line satisfies ``expect``."""
    before = _runs(page)
    change()
    return _wait_for(
        page,
        lambda: _runs(page) > before and "running" not in _status(page) and expect(_outcome(page)) and _outcome(page),
        timeout,
        what,
    )


def _status(page) -> str:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.widget-html-content')).map(e => e.textContent).join(' ')"
    )


def _first_chunk_s(outcome: str) -> float:
    found = re.search(r"first chunk at ([0-9.]+) s", outcome)
    assert found, outcome
    return float(found.group(1))


def _chart(page) -> str:
    """The explorer's timeline as drawn (canvas pixels or SVG markup)."""
    return page.evaluate(
        """() => {
            const v = document.querySelector('.vega-embed');
            if (!v) return '';
            const c = v.querySelector('canvas');
            if (c) return c.toDataURL();
            const s = v.querySelector('svg');
            return s ? s.outerHTML : '';
        }"""
    )


def explorer_steps(page) -> None:
    """Each "What to try" step of notebook 01, by hand, on short delays (first byte at 1 s)."""
    delay = 1.0
    page.wait_for_selector(".vega-embed canvas, .vega-embed svg", timeout=60_000)
    assert "Error loading script" not in page.content()
    ok = lambda t: "done/ok" in t  # noqa: E731
    _after(page, lambda: _slider(page, "first-byte delay (s)", delay), lambda t: "/" in t, "a run at the new delay")

    # 1. first-chunk timeout below the first-byte delay: no chunks; above it: done
    _after(
        page,
        lambda: _slider(page, "first-chunk (s)", delay / 2),
        lambda t: "first_chunk/timeout.first_chunk" in t,
        "step 1: timeout",
    )
    before = _chart(page)
    t0 = time.monotonic()
    done = _after(page, lambda: _slider(page, "first-chunk (s)", 5), ok, "step 1: done/ok")
    latency = time.monotonic() - t0
    _wait_for(page, lambda: _chart(page) != before, 10, "the timeline to redraw")
    assert latency < delay + 0.3 + 5.0  # the run itself takes ~1 s; generous for a shared CI machine
    base = _first_chunk_s(done)

    # 2. no first-chunk limit, idle below the delay: the idle timeout covers the first byte
    _slider(page, "first-chunk (s)", 0)
    _after(page, lambda: _slider(page, "idle (s)", delay / 2), lambda t: "timeout.idle" in t, "step 2: timeout.idle")
    _after(page, lambda: _slider(page, "idle (s)", 10), ok, "step 2: back to done/ok")

    # 3. network latency shifts the whole stream right
    shifted = _after(page, lambda: _slider(page, "latency (s)", 0.5), ok, "step 3: done/ok through the proxy")
    assert _first_chunk_s(shifted) >= base + 0.4, (base, shifted)
    _after(page, lambda: _slider(page, "latency (s)", 0), ok, "step 3: latency back to 0")

    # 4. stall_mid_stream with an idle timeout shorter than the stall: chunks, then silence
    _after(page, lambda: _preset(page, "stall_mid_stream"), lambda t: "/" in t, "step 4: the preset ran")
    stalled = _after(
        page,
        lambda: _slider(page, "idle (s)", 0.3),
        lambda t: "stream/timeout.idle" in t,
        "step 4: stream/timeout.idle",
    )
    assert not re.search(r"\(0 chunks", stalled), stalled

    # 5. the server cuts the body (closed), or ends it cleanly with nothing (ended)
    for preset, cause in (("close_mid_stream", "/closed"), ("headers_then_close", "/closed"), ("empty_200", "/ended")):
        _after(page, lambda p=preset: _preset(page, p), lambda t, c=cause: c in t, f"step 5: {preset} -> {cause}")

    # 6. retries before the first chunk: another attempt after each first-chunk timeout
    _after(page, lambda: _preset(page, "slow_first_byte"), lambda t: "/" in t, "step 6: slow_first_byte")
    _slider(page, "first-byte delay (s)", delay)
    _slider(page, "idle (s)", 10)
    _tick(page, "retry before first chunk", False)
    _slider(page, "retries", 2)
    once = _after(
        page, lambda: _slider(page, "first-chunk (s)", 0.3), lambda t: "timeout.first_chunk" in t, "step 6: one attempt"
    )
    assert "attempts" not in once, once
    thrice = _after(
        page, lambda: _tick(page, "retry before first chunk", True), lambda t: "3 attempts" in t, "step 6: 3 attempts"
    )
    assert "timeout.first_chunk" in thrice, thrice
    shot = os.environ.get("KIT_SCREENSHOT_DIR")
    if shot:
        page.screenshot(path=str(pathlib.Path(shot) / "explorer-steps.png"), full_page=True)


CHARTS_NOTEBOOK = """
import kit, kit.charts
kit.charts.enable_offline()
with kit.FaultServer() as server:
    one = kit.stream(server.url_for(kit.Scenario(events=3, gap=0)))
    retried = kit.Policy(first_chunk=0.05, max_retries=1, backoff_initial=0.01, retry_before_first_chunk=True,
                         retry_on=("timeout.first_chunk",))
    many = [kit.stream(server.url_for(kit.Scenario.preset("slow_first_byte", first_byte_delay=0.1)), policy=retried)
            for _ in range(CALLS)]
"""


CALLS = 12
CHARTS = "charts.ipynb"


def charts_notebook():
    """A short chart, then two tall zoomable ones, on one page (run in the session's JupyterLab)."""
    import nbformat

    cells = [
        nbformat.v4.new_code_cell(f"CALLS = {CALLS}" + CHARTS_NOTEBOOK),
        nbformat.v4.new_code_cell("kit.charts.timeline(one)"),
        nbformat.v4.new_code_cell("kit.charts.attempts_gantt(many)"),
        nbformat.v4.new_code_cell("kit.charts.timeline(many)"),
    ]
    return nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (kit)", "language": "python"},
            "language_info": {"name": "python"},  # as JupyterLab saves it (through the nbstripout filter)
        },
    )


def charts_rows(page) -> None:
    """Each chart of ``charts_notebook`` draws every row (no clip taken from another chart)."""
    page.wait_for_function("document.querySelectorAll('.vega-embed').length >= 3", timeout=180_000)
    page.wait_for_timeout(1500)
    shot_dir = os.environ.get("KIT_SCREENSHOT_DIR")
    if shot_dir:
        page.screenshot(path=str(pathlib.Path(shot_dir) / "charts.png"), full_page=True)
    orange, faint_orange, faint_green = [255, 127, 14], [255, 210, 171], [181, 222, 181]
    # the short chart first, then the tall ones: before the fix they drew 1-2 rows, clipped by the first
    assert page.evaluate(ROWS_VISIBLE_JS, [0, faint_green]) == 1
    assert page.evaluate(ROWS_VISIBLE_JS, [1, orange]) == CALLS  # a row per call, both attempts in it
    assert page.evaluate(ROWS_VISIBLE_JS, [2, faint_orange]) == 2 * CALLS  # a row per attempt


@pytest.mark.timeout(1800)
def test_several_charts_on_one_page_each_show_all_rows(notebooks):
    """A short chart, then two tall zoomable ones: each draws every row (``charts_rows``)."""
    _check(notebooks, CHARTS)


# Rows of each chart that show a bar of the given colour: pixel rows of the canvas holding a
# horizontal run of >= 16 pixels of that colour (legend swatches are narrower), grouped into bands.
ROWS_VISIBLE_JS = """([index, rgb]) => {
    const c = document.querySelectorAll('.vega-embed')[index].querySelector('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const near = (i) => Math.abs(d[i] - rgb[0]) < 14 && Math.abs(d[i + 1] - rgb[1]) < 14 && Math.abs(d[i + 2] - rgb[2]) < 14;
    let bands = 0, inBand = false;
    for (let y = 0; y < c.height; y++) {
        let run = 0, hit = false;
        for (let x = 0; x < c.width && !hit; x++) {
            run = near(4 * (y * c.width + x)) ? run + 1 : 0;
            hit = run >= 16;
        }
        if (hit && !inBand) bands++;
        inBand = hit;
    }
    return bands;
}"""
