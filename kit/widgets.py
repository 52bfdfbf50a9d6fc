"""Notebook panels: turn the knobs, the stream reruns, the charts redraw.

- :class:`Explorer` (``kit.widgets.Explorer()``): controls for the scenario, the network
  and the client policy. Every change (sliders use ``continuous_update=False``) reruns
  one stream with :func:`kit.astream` as a task on the kernel's event loop, so the
  kernel never blocks, and a run that a newer change supersedes is cancelled. The
  timeline and cumulative-bytes charts are ``alt.JupyterChart`` widgets whose
  ``.chart`` is replaced, and an outcome line says what happened in plain words.
- :class:`SweepPanel` (``kit.widgets.SweepPanel()``): two axes and their values, an
  :class:`~kit.experiment.Experiment` with a progress bar and a Stop button, the outcome
  heatmap; clicking a cell shows that cell's timelines.

The parts compose: :class:`ScenarioControls`, :class:`NetworkControls` and
:class:`PolicyControls` each give a ``.value`` (a Scenario, network keywords, a
Policy) and ``.on_change(callback)``; :func:`describe_outcome` is the outcome line.

Each panel starts its own :class:`~kit.FaultServer` (and a network proxy) lazily on
the first run and stops them on :meth:`close`.

Why over 600 lines: two panels (Explorer, SweepPanel) and their shared controls; a
``widgets/`` package split by panel is the next step.
"""

from __future__ import annotations

import asyncio
import html
import sys
import time
from collections.abc import Callable
from typing import Any

import altair as alt
import ipywidgets as w
import pandas as pd

from . import charts
from ._clock import ns_to_s
from ._errors import ConfigError
from .charts._grid import axis_labels
from .charts._output import EMBED_OPTIONS
from .client import astream
from .policy import TIMEOUTS, Policy
from .scenarios import Close, ErrorEvent, Malformed, NoTerminator, Reset, Scenario, Stall, TruncatedChunk
from .server import FaultServer

__all__ = [
    "Explorer",
    "NetworkControls",
    "PolicyControls",
    "ScenarioControls",
    "SweepPanel",
    "describe_outcome",
]

_STYLE = {"description_width": "130px"}
_LAYOUT = w.Layout(width="290px")
# the three control columns keep their width (a column squeezed by its neighbours cut its
# dropdowns off on the right) and wrap onto a second row when the notebook is narrow
_COLUMN = w.Layout(flex="0 0 auto", margin="0 10px 0 0")
_COLUMNS = w.Layout(flex_flow="row wrap")

# Fault kinds the explorer's "fault" dropdown offers, as (label -> builder(after)).
FAULTS: dict[str, Callable[[int], Any] | None] = {
    "none": None,
    "close (FIN mid-body)": lambda n: Close(after=n),
    "close (clean end)": lambda n: Close(after=n, clean=True),
    "reset (RST)": lambda n: Reset(after=n),
    "error event": lambda n: ErrorEvent(after=n),
    "malformed event": lambda n: Malformed(after=n),
    "truncated chunk": lambda n: TruncatedChunk(after=n),
    "no terminator": lambda n: NoTerminator(after=0),
}
_FAULT_LABEL = {
    Close: lambda f: "close (clean end)" if f.clean else "close (FIN mid-body)",
    Reset: lambda f: "reset (RST)",
    ErrorEvent: lambda f: "error event",
    Malformed: lambda f: "malformed event",
    TruncatedChunk: lambda f: "truncated chunk",
    NoTerminator: lambda f: "no terminator",
}


def _slider(desc: str, value: float, lo: float, hi: float, step: float, tip: str = "") -> w.FloatSlider:
    return w.FloatSlider(
        value=value,
        min=lo,
        max=hi,
        step=step,
        description=desc,
        continuous_update=False,
        readout_format=".2f",
        style=_STYLE,
        layout=_LAYOUT,
        tooltip=tip or desc,
    )


def _int_slider(desc: str, value: int, lo: int, hi: int, tip: str = "") -> w.IntSlider:
    return w.IntSlider(
        value=value,
        min=lo,
        max=hi,
        description=desc,
        continuous_update=False,
        style=_STYLE,
        layout=_LAYOUT,
        tooltip=tip or desc,
    )


class _Controls(w.VBox):
    """A box of controls with a ``value`` and one change callback for all of them."""

    def __init__(self, title: str, controls: dict[str, w.Widget]) -> None:
        self.controls = controls
        self._callbacks: list[Callable[[], None]] = []
        self._quiet = False
        super().__init__([w.HTML(f"<b>{title}</b>"), *controls.values()], layout=_COLUMN)
        for c in controls.values():
            c.observe(self._changed, names="value")

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after any control changes (once per user change)."""
        self._callbacks.append(callback)

    def _changed(self, _change: Any = None) -> None:
        if self._quiet:
            return
        for cb in self._callbacks:
            cb()

    def set(self, **values: Any) -> None:
        """Set several controls at once, firing one change."""
        self._quiet = True
        try:
            for k, v in values.items():
                if k not in self.controls:
                    raise ConfigError.unknown("control", k, self.controls)
                self.controls[k].value = v
        finally:
            self._quiet = False
        self._changed()


class ScenarioControls(_Controls):
    """Preset, first-byte delay, gap, stall after/for, and a fault after N events.

    ``value`` is the :class:`~kit.Scenario`: the preset with these fields replaced
    (faults the controls cannot show, e.g. an HTTP status, are kept from the preset).
    """

    def __init__(self, preset: str = "slow_first_byte", **overrides: Any) -> None:
        super().__init__(
            "Scenario (server)",
            {
                "preset": w.Dropdown(
                    options=Scenario.presets(), value=preset, description="preset", style=_STYLE, layout=_LAYOUT
                ),
                "first_byte_delay": _slider(
                    "first-byte delay (s)", 0.0, 0.0, 10.0, 0.1, "seconds between the headers and the first body byte"
                ),
                "gap": _slider("gap (s)", 0.01, 0.0, 0.5, 0.005, "seconds between consecutive events"),
                "stall_after": _int_slider("stall after (events)", 10, 0, 40, "events written before the stall"),
                "stall_for": _slider("stall for (s)", 0.0, 0.0, 10.0, 0.1, "0: no stall"),
                "fault": w.Dropdown(
                    options=list(FAULTS), value="none", description="fault", style=_STYLE, layout=_LAYOUT
                ),
                "fault_after": _int_slider("fault after (events)", 10, 0, 40, "events written before the fault"),
            },
        )
        self.controls["preset"].observe(self._preset_changed, names="value")
        self._load(preset)
        if overrides:
            self.set(**overrides)

    def _preset_changed(self, change: Any) -> None:
        self._load(change["new"])
        self._changed()

    def _load(self, name: str) -> None:
        sc = Scenario.preset(name)
        c = self.controls
        self._quiet = True
        try:
            n = sc.unit_count()
            for k in ("stall_after", "fault_after"):
                c[k].max = max(n, 1)
            c["first_byte_delay"].value = sc.first_byte_delay
            gap = dict(sc.gap.params).get("value") if sc.gap.dist == "constant" else None
            c["gap"].value = gap if gap is not None else 0.01
            stall = next((f for f in sc.faults if isinstance(f, Stall)), None)
            c["stall_for"].value = (stall.duration or 10.0) if stall else 0.0
            c["stall_after"].value = stall.after if stall else min(10, n)
            other = next((f for f in sc.faults if type(f) in _FAULT_LABEL), None)
            c["fault"].value = _FAULT_LABEL[type(other)](other) if other else "none"
            c["fault_after"].value = other.after if other else min(10, n)
        finally:
            self._quiet = False

    @property
    def value(self) -> Scenario:
        c = {k: v.value for k, v in self.controls.items()}
        base = Scenario.preset(c["preset"])
        kept = tuple(f for f in base.faults if not isinstance(f, Stall) and type(f) not in _FAULT_LABEL)
        faults = list(kept)
        if c["stall_for"] > 0:
            faults.append(Stall(after=c["stall_after"], duration=c["stall_for"]))
        build = FAULTS[c["fault"]]
        if build is not None:
            faults.append(build(c["fault_after"]))
        gap = base.gap if base.gap.dist != "constant" and c["gap"] == self._preset_gap(base) else c["gap"]
        return base.replace(first_byte_delay=c["first_byte_delay"], gap=gap, faults=tuple(faults), name=None)

    @staticmethod
    def _preset_gap(sc: Scenario) -> float:
        return dict(sc.gap.params).get("value", 0.01) if sc.gap.dist == "constant" else 0.01


class NetworkControls(_Controls):
    """Latency, jitter, bandwidth and a stall, applied by a network proxy (downstream).

    ``value`` is the keyword dict for :meth:`kit.proxy.NetworkProxy.set` (``None``
    removes a toxic), so a change applies live to the proxy's connections.
    """

    def __init__(self, **overrides: Any) -> None:
        super().__init__(
            "Network (proxy, server to client)",
            {
                "latency": _slider("latency (s)", 0.0, 0.0, 2.0, 0.01, "delay added to every forward"),
                "jitter": _slider("jitter (s)", 0.0, 0.0, 0.5, 0.01, "spread of the latency"),
                "bandwidth": _int_slider("bandwidth (KB/s)", 0, 0, 1000, "0: unlimited"),
                "stall_after": _int_slider("stall after (bytes)", 1000, 0, 20000, "bytes forwarded before the stall"),
                "stall_for": _slider("stall for (s)", 0.0, 0.0, 10.0, 0.1, "0: no network stall"),
            },
        )
        if overrides:
            self.set(**overrides)

    @property
    def value(self) -> dict[str, Any]:
        c = {k: v.value for k, v in self.controls.items()}
        latency = c["latency"] > 0 or c["jitter"] > 0
        return {
            "latency": c["latency"] if latency else None,
            **({"jitter": c["jitter"]} if latency else {}),
            "bandwidth": c["bandwidth"] * 1000 if c["bandwidth"] > 0 else None,
            "stall_after": c["stall_after"] if c["stall_for"] > 0 else None,
            **({"stall_for": c["stall_for"]} if c["stall_for"] > 0 else {}),
        }

    @property
    def active(self) -> bool:
        return any(v is not None for k, v in self.value.items() if k in ("latency", "bandwidth", "stall_after"))


#: causes a failure before the first body byte has (what "retry before first chunk" retries)
_BEFORE_FIRST_CHUNK = ("timeout.first_chunk", "ended")


class PolicyControls(_Controls):
    """The client's timeouts (0 = no limit) and retries."""

    def __init__(self, policy: Policy | None = None, **overrides: Any) -> None:
        policy = policy or Policy(first_chunk=5.0, idle=5.0, total=30.0)
        tips = {
            "connect": "TCP connect",
            "headers": "request sent to response headers",
            "first_chunk": "response headers to the first body byte",
            "idle": "longest silence between body chunks",
            "total": "the whole call, retries included",
        }
        controls: dict[str, w.Widget] = {
            k: _slider(f"{k.replace('_', '-')} (s)", getattr(policy, k) or 0.0, 0.0, 30.0, 0.1, tips[k] + "; 0: none")
            for k in TIMEOUTS
        }
        controls["max_retries"] = _int_slider("retries", policy.max_retries, 0, 5, "retries after a failed attempt")
        controls["retry_before_first_chunk"] = w.Checkbox(
            value=policy.retry_before_first_chunk,
            description="retry before first chunk",
            indent=False,  # its label in full (indented, 130 px of a 290 px row cut it off)
            layout=w.Layout(width="290px", margin="2px 0 0 60px"),
        )
        self._base = policy
        super().__init__("Policy (client): timeouts, 0 = none", controls)
        if overrides:
            self.set(**overrides)

    @property
    def value(self) -> Policy:
        c = {k: v.value for k, v in self.controls.items()}
        changes: dict[str, Any] = {k: (c[k] if c[k] > 0 else None) for k in TIMEOUTS}
        changes["max_retries"] = c["max_retries"]
        changes["retry_before_first_chunk"] = c["retry_before_first_chunk"]
        # the failures that happen before the first body byte must also be retryable
        # causes, as in the watchdog preset; unticked, the base policy's list stands
        before = _BEFORE_FIRST_CHUNK if c["retry_before_first_chunk"] else ()
        changes["retry_on"] = (*self._base.retry_on, *(x for x in before if x not in self._base.retry_on))
        return self._base.replace(**changes, name=None)


# -------------------------------------------------------------------- outcome line


# server log kinds that are not a write of the response (see kit.records.ServerLogEntry)
_NOT_WRITES = frozenset({"accept", "request", "headers", "endless_headers", "stall_start", "client_closed", "error"})


def _due_text(attempt: Any) -> str:
    """When the server meant to send what the client gave up waiting for, from the server's log.

    Its ``scheduled_ns`` says when each write was due; when the client went away first,
    ``client_closed``'s says when the write the server was still waiting to make was due.
    Empty when the attempt has no server log (another server) or the log cannot say.
    """
    log = list(attempt.server_log)
    cause = attempt.outcome.cause if attempt.outcome is not None else ""
    if not log:
        return ""
    at = {e.kind: e for e in log}
    pending = at.get("client_closed")  # equal times: the server was waiting for nothing it had planned
    due = pending.scheduled_ns if pending is not None and pending.scheduled_ns != pending.t_ns else None
    request, headers = at.get("request"), at.get("headers")
    writes = [e for e in log if e.kind not in _NOT_WRITES and e.nbytes > 0]
    if cause == "timeout.headers" and request is not None:
        when = headers.scheduled_ns if headers is not None else due
        if when is not None:
            return f": the server's headers were due at {ns_to_s(when - request.t_ns):.2f} s"
        return ""
    if headers is None:
        return ""
    if cause == "timeout.first_chunk" or (cause == "timeout.idle" and not attempt.chunk_t):
        when = writes[0].scheduled_ns if writes else due
        if when is not None:
            return f": the server's first byte was due at {ns_to_s(when - headers.t_ns):.2f} s"
        if "stall_start" in at:
            return ": the server stalled before its first byte, with no end"
        return ""
    if cause == "timeout.idle":
        if due is not None and writes:
            quiet = ns_to_s(due - writes[-1].scheduled_ns)
            return f": the server stalled after {len(writes)} events; its next was due {quiet:.2f} s after the last"
        if "stall_start" in at:
            return f": the server stalled after {len(writes)} events, with no end"
        return ": the server (or the network) went quiet"
    return ""


def describe_outcome(trace: Any, scenario: Scenario | None = None) -> str:
    """The outcome in plain words, e.g. ``first_chunk/timeout.first_chunk: timeout.first_chunk
    after 2.00 s: the server's first byte was due at 3.00 s`` (both counted from the
    response headers, where the first-chunk limit starts).

    The limit is the deadline the client recorded as fired; when the server meant to
    write comes from its log (``scheduled_ns``), so it is what this attempt met, not a
    replay of the scenario. ``scenario`` is accepted for older calls and not used."""
    o = trace.outcome
    s = trace.summary()
    head = f"{o.phase}/{o.cause}"
    if o.ok:
        return (
            f"{head}: complete in {trace.duration:.2f} s, {int(s['chunks'])} chunks, {int(s['bytes']):,} bytes; "
            f"first chunk at {s['first_chunk_s']:.2f} s"
            + (f"; {len(trace.attempts)} attempts" if len(trace.attempts) > 1 else "")
        )
    if o.cause.startswith("timeout."):
        fired = trace.attempt.fired
        limit = fired.limit_s if fired is not None else None
        text = f"{head}: {o.cause} after {limit:.2f} s" if limit is not None else f"{head}: {o.cause}"
        text += _due_text(trace.attempt)
    else:
        text = f"{head}: {o.message}" if o.message else head
    got = int(s["chunks"])
    text += f" ({got} chunks, {int(s['bytes']):,} bytes received" + (
        f", {len(trace.attempts)} attempts)" if len(trace.attempts) > 1 else ")"
    )
    return text


# ------------------------------------------------------------------------- Explorer


def _stop(part: Any) -> None:
    """Stop a server or proxy, except while the interpreter exits: ipywidgets closes widgets
    from ``__del__`` then, when the servers' threads can no longer answer (a script that built
    an explorer outside a kernel would end with a TimeoutError); the OS reclaims the sockets."""
    if part is not None and not sys.is_finalizing():
        part.stop()


def _jupyter_chart(chart: Any) -> alt.JupyterChart:
    alt.JupyterChart.enable_offline()  # vl-convert's bundle: renders without internet (once per process)
    return alt.JupyterChart(chart, embed_options=EMBED_OPTIONS)


class Explorer(w.VBox):
    """Move a knob, the stream reruns, the charts redraw: ``kit.widgets.Explorer()``.

    ``preset`` picks the starting scenario; ``policy`` the starting client policy;
    ``scenario_controls``, ``network_controls``, ``policy_controls`` replace the parts.
    After each run: ``trace`` (the :class:`~kit.Trace`), ``outcome`` (an HTML widget with
    :func:`describe_outcome`), ``timeline`` and ``cumulative`` (``alt.JupyterChart``),
    ``runs`` / ``cancelled`` (counters), ``last_latency_s`` (change to redrawn chart).
    ``await explorer.wait()`` waits for the current run. :meth:`close` stops the server.
    """

    def __init__(
        self,
        preset: str = "slow_first_byte",
        *,
        policy: Policy | None = None,
        scenario_controls: ScenarioControls | None = None,
        network_controls: NetworkControls | None = None,
        policy_controls: PolicyControls | None = None,
        autorun: bool = True,
    ) -> None:
        self.scenario_controls = scenario_controls or ScenarioControls(preset)
        self.network_controls = network_controls or NetworkControls()
        self.policy_controls = policy_controls or PolicyControls(policy)
        self.outcome = w.HTML(value="<i>not run yet</i>", layout=w.Layout(margin="6px 0", flex="1 1 auto"))
        self.status = w.HTML(value="")
        self.timeline = _jupyter_chart(charts.timeline([]))
        self.cumulative = _jupyter_chart(charts.cumulative_bytes([]))
        self.trace: Any = None
        self.scenario: Scenario | None = None
        self.runs = 0
        self.cancelled = 0
        self.last_latency_s: float | None = None
        self.error: BaseException | None = None
        self._server: FaultServer | None = None
        self._proxy: Any = None
        self._task: asyncio.Task[Any] | None = None
        self._gen = 0
        controls = w.HBox([self.scenario_controls, self.network_controls, self.policy_controls], layout=_COLUMNS)
        self.status.layout = w.Layout(flex="0 0 auto", margin="6px 0 6px 12px")  # never squeezed into two lines
        super().__init__([controls, w.HBox([self.outcome, self.status]), self.timeline, self.cumulative])
        for part in (self.scenario_controls, self.network_controls, self.policy_controls):
            part.on_change(self.rerun)
        if autorun:
            self.rerun()

    # -- servers -----------------------------------------------------------------

    @property
    def server(self) -> FaultServer:
        """The explorer's own fault server (started on first use)."""
        if self._server is None:
            self._server = FaultServer().start()
        return self._server

    def _proxy_or_none(self) -> Any:
        """A network proxy in front of the server (started on first use)."""
        if self._proxy is None:
            from .proxy import NetworkProxy

            self._proxy = NetworkProxy(upstream=self.server).start()
        return self._proxy

    def close(self) -> None:
        """Cancel any run, stop the server and proxy, close the widgets."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        _stop(self._proxy)
        _stop(self._server)
        self._proxy = self._server = None
        super().close()

    # -- running -----------------------------------------------------------------

    def rerun(self) -> None:
        """Start a run with the current controls, cancelling one still in flight."""
        self._gen += 1
        gen = self._gen
        t0 = time.perf_counter()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self.cancelled += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain script): run to completion here
            from ._loop import run_sync

            run_sync(self._run(gen, t0))
            return
        self._task = loop.create_task(self._run(gen, t0))

    async def wait(self) -> Any:
        """Wait until the latest run has finished and drawn; returns its trace."""
        while self._task is not None and not self._task.done():
            task = self._task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task is self._task:
                    raise
        return self.trace

    async def _run(self, gen: int, t0: float) -> None:
        self.status.value = "<span style='color:#888'>running…</span>"
        try:
            scenario = self.scenario_controls.value
            policy = self.policy_controls.value
            url = self.server.url_for(scenario)
            net = self.network_controls.value
            proxy = self._proxy_or_none() if (self.network_controls.active or self._proxy is not None) else None
            if proxy is not None:
                proxy.set(**net)  # live: applies to open connections too
                url = proxy.url_for(url)
            trace = await astream(url, policy=policy)
            await trace.attempt.await_server_log()  # the server notes a client that went away a moment later
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bad combination of knobs: say so, keep the kernel alive
            self.error = exc
            self.status.value = ""
            self.outcome.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        if gen != self._gen:
            return  # superseded while finishing
        self.error = None
        self.trace, self.scenario = trace, scenario
        trace.label = scenario.label
        self.timeline.chart = charts.timeline(trace)
        self.cumulative.chart = charts.cumulative_bytes(trace)
        self.runs += 1
        self.last_latency_s = time.perf_counter() - t0
        color = "#2ca02c" if trace.ok else "#d62728"
        self.outcome.value = f"<b style='color:{color}'>{html.escape(describe_outcome(trace, scenario))}</b>"
        self.status.value = (
            f"<span style='color:#888; white-space:nowrap'>run {self.runs}, {trace.duration:.2f} s</span>"
        )


# ------------------------------------------------------------------------ SweepPanel

AXES: dict[str, str] = {
    "policy.first_chunk": "0.5, 1, 2, 4",
    "policy.idle": "0.25, 0.5, 1, 2",
    "policy.total": "1, 2, 5, 10",
    "scenario.first_byte_delay": "0, 0.5, 1, 2, 3",
    "scenario.gap": "0.005, 0.01, 0.05, 0.1",
    "network.latency": "0, 0.1, 0.5, 1",
    "network.bandwidth": "1000, 10000, 100000",
}
"""Axes the sweep panel offers, with a default list of values (seconds, bytes/s)."""


def _values(field: str, text: str) -> list[float | None]:
    out: list[float | None] = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if part.lower() in ("none", "-", "off"):
            out.append(None)
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise ConfigError(field, part, "expected numbers separated by commas (or 'none')") from None
    if not out:
        raise ConfigError(field, text, "expected at least one value")
    return out


def _cell(base_scenario: Scenario, base_policy: Policy, params: dict[str, Any]) -> tuple[Any, Any, Any]:
    sc, pol, net = base_scenario, base_policy, {}
    for key, v in params.items():
        kind, field = key.split(".", 1)
        if kind == "scenario":
            sc = sc.replace(**{field: v if v is not None else 0.0})
        elif kind == "policy":
            pol = pol.replace(**{field: v})
        else:
            net[field] = v
    network = None
    net = {k: v for k, v in net.items() if v}
    if net:
        from .network import Network, toxics_from_kwargs

        network = Network(tuple(toxics_from_kwargs(**net)[0]))
    return sc, network, pol


class _BarProgress:
    """The Experiment's progress protocol (``update(n)``, ``close()``) onto a widget bar."""

    def __init__(self, bar: w.IntProgress, label: w.HTML, total: int) -> None:
        self.bar, self.label, self.total, self.done = bar, label, total, 0
        bar.max, bar.value = max(total, 1), 0

    def update(self, n: int = 1) -> None:
        self.done += n
        self.bar.value = self.done
        self.label.value = f"{self.done}/{self.total} trials"

    def close(self) -> None:
        pass


class SweepPanel(w.VBox):
    """Run a grid over two axes and see the outcomes: ``kit.widgets.SweepPanel()``.

    Pick the x and y axes (``policy.first_chunk``, ``network.latency``, ...; see
    :data:`AXES`) and their values, the trials per cell, then Run; Stop cancels and
    keeps what finished. The heatmap shows each cell's outcome shares; click a cell to
    see its timelines. ``result`` holds the last :class:`~kit.Result`; ``await
    panel.wait()`` waits for a run.
    """

    def __init__(
        self,
        scenario: Scenario | str = "slow_first_byte",
        policy: Policy | None = None,
        *,
        x: str = "policy.first_chunk",
        y: str = "scenario.first_byte_delay",
        x_values: str | None = None,
        y_values: str | None = None,
        trials: int = 3,
        concurrency: int = 16,
    ) -> None:
        self.base_scenario = Scenario.preset(scenario) if isinstance(scenario, str) else scenario
        if isinstance(scenario, str) and scenario == "slow_first_byte":
            self.base_scenario = self.base_scenario.replace(first_byte_delay=1.0)
        self.base_policy = policy or Policy(idle=10.0, total=30.0)
        self.concurrency = concurrency
        opts = list(AXES)
        self.x = w.Dropdown(options=opts, value=x, description="x axis", style=_STYLE, layout=_LAYOUT)
        self.y = w.Dropdown(options=opts, value=y, description="y axis", style=_STYLE, layout=_LAYOUT)
        self.x_values = w.Text(value=x_values or AXES[x], description="x values", style=_STYLE, layout=_LAYOUT)
        self.y_values = w.Text(value=y_values or AXES[y], description="y values", style=_STYLE, layout=_LAYOUT)
        self.x.observe(lambda ch: setattr(self.x_values, "value", AXES[ch["new"]]), names="value")
        self.y.observe(lambda ch: setattr(self.y_values, "value", AXES[ch["new"]]), names="value")
        self.trials = w.IntSlider(
            value=trials, min=1, max=50, description="trials per cell", style=_STYLE, layout=_LAYOUT
        )
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="progress", style=_STYLE)
        self.progress_label = w.HTML("")
        self.message = w.HTML("")
        self.heatmap = _jupyter_chart(charts.outcome_heatmap([]))
        self.detail = _jupyter_chart(charts.timeline([]))
        self.result: Any = None
        self.error: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None
        self._server: FaultServer | None = None
        self._labels: dict[str, dict[str, Any]] = {}
        self.run_button.on_click(lambda _b: self.run())
        self.stop_button.on_click(lambda _b: self.stop())
        self.heatmap.observe(self._clicked, names=["_vl_selections"])  # stable across chart swaps
        super().__init__(
            [
                w.HBox([w.VBox([self.x, self.x_values]), w.VBox([self.y, self.y_values])]),
                w.HBox([self.trials, self.run_button, self.stop_button]),
                w.HBox([self.progress, self.progress_label]),
                self.message,
                self.heatmap,
                self.detail,
            ]
        )

    @property
    def server(self) -> FaultServer:
        if self._server is None:
            self._server = FaultServer().start()
        return self._server

    def experiment(self) -> Any:
        """The :class:`~kit.experiment.Experiment` the controls describe."""
        from .experiment import Experiment

        xs, ys = _values("x values", self.x_values.value), _values("y values", self.y_values.value)
        fx, fy = self.x.value, self.y.value
        cells = []
        for yv in ys:
            for xv in xs:
                params = {fx: xv} if fx == fy else {fx: xv, fy: yv}
                cells.append(_cell(self.base_scenario, self.base_policy, params))
        return Experiment(cells=cells, trials=self.trials.value, seed=0)

    def run(self) -> None:
        """Start the sweep (on the kernel's loop); a running sweep is cancelled first."""
        self.stop()
        try:
            exp = self.experiment()
        except Exception as exc:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        self._task = asyncio.get_running_loop().create_task(self._run(exp))

    def stop(self) -> None:
        """Cancel the running sweep; the trials that finished are kept and drawn."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait(self) -> Any:
        if self._task is not None:
            try:
                await asyncio.shield(self._task)
            except asyncio.CancelledError:
                pass
        return self.result

    async def _run(self, exp: Any) -> None:
        self.run_button.disabled, self.stop_button.disabled = True, False
        bar = _BarProgress(self.progress, self.progress_label, len(exp))
        self.message.value = f"running {len(exp.cells)} cells x {exp.trials} trials…"
        try:
            self.result = await exp.arun(self.concurrency, progress=bar, server=self.server)
            self.message.value = f"done: {len(self.result.trials)} trials. Click a cell to see its timelines."
        except asyncio.CancelledError:
            self.result = exp.last_result
            n = 0 if self.result is None else len(self.result.trials)
            self.message.value = f"stopped: kept {n} finished trials"
        except Exception as exc:
            self.error = exc
            self.message.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True
        if self.result is not None and len(self.result.trials):
            self.heatmap.chart = charts.outcome_heatmap(
                self.result, self.x.value, self.y.value if self.y.value != self.x.value else None
            )
            self.show_cell(*self._first_cell())

    def _first_cell(self) -> tuple[str, str]:
        tr = self.result.trials
        x = axis_labels(tr, self.x.value).iloc[0]
        y = axis_labels(tr, self.y.value).iloc[0] if self.y.value != self.x.value else "all"
        return x, y

    def cell_trials(self, x: str, y: str) -> pd.DataFrame:
        """The trials of the cell whose axis labels are ``x`` and ``y`` (as on the heatmap)."""
        tr = self.result.trials
        mask = axis_labels(tr, self.x.value) == x
        if self.y.value != self.x.value:
            mask &= axis_labels(tr, self.y.value) == y
        return tr[mask]

    def show_cell(self, x: str, y: str) -> None:
        """Draw the timelines of one cell's trials below the heatmap."""
        if self.result is None:
            return
        ids = set(self.cell_trials(x, y)["trial_id"])
        chart = charts.timeline(self.result.select(ids))
        title = f"Timelines of the cell {self.x.value}={x}" + (
            f", {self.y.value}={y}" if self.y.value != self.x.value else ""
        )
        self.detail.chart = chart.properties(title=title)

    def _clicked(self, change: Any) -> None:
        from altair.jupyter.jupyter_chart import PointSelection

        d = (change["new"] or {}).get("cell")
        if not d:
            return
        sel = PointSelection.from_vega("cell", signal=d.get("value"), store=d.get("store", []))
        if sel.value:
            self.show_cell(str(sel.value[0].get("x")), str(sel.value[0].get("y")))

    def close(self) -> None:
        self.stop()
        _stop(self._server)
        self._server = None
        super().close()
