"""``NetworkProxy``: the public API (lifecycle, addresses, live toxics, logs).

The event loop is the kit's precise loop on a background thread (``LoopThread``), so
timers fire within tens of microseconds, and the proxy works from sync code, notebooks
and other event loops alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .. import _registry
from .._bind import check_bind
from .._clock import ns_to_s
from .._errors import ConfigError, KitError, ServerError
from .._loop import LoopThread
from .._rerun import replace_previous
from .._window import check_keep
from ..network import Network, Toxic, _coerce_toxic, toxics_from_kwargs
from . import _views
from ._connection import _Conn
from ._pipe import _Overshoot

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NetworkProxy"]


def _hostport(field: str, value: object) -> tuple[str, int]:
    """``(host, port)`` from a tuple, ``"host:port"``, ``"[::1]:port"`` or a URL."""
    if isinstance(value, str):
        text = value if "//" in value else f"//{value}"
        try:
            parts = urlsplit(text)
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host or port is None:
            raise ConfigError(field, value, "HOST:PORT such as 127.0.0.1:8080, or a (host, port) tuple")
        return host, port
    if isinstance(value, tuple | list) and len(value) >= 2:
        host, port = value[0], value[1]
        if isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool) and 0 <= port < 65536:
            return host, port
    raise ConfigError(field, value, "HOST:PORT such as 127.0.0.1:8080, or a (host, port) tuple")


class NetworkProxy:
    """A TCP proxy on loopback that applies network toxics to every connection.

    ``upstream``: ``(host, port)``, ``"host:port"``, or an object with an ``address``
    (a :class:`~kit.FaultServer`: then ``url_for`` also takes scenarios).
    ``listen``: where to listen; 127.0.0.1 on a free port by default. Addresses other
    than loopback need ``allow_remote=True`` (and warn). ``network``: a
    :class:`~kit.network.Network`, a list of toxics, or ``Network.to_dict()`` output.
    ``seed``: decides which connections each toxic's ``toxicity`` hits, and every
    random draw (jitter, slice sizes, loss), together with the trial and attempt a kit
    client names in its request headers (``x-kit-trial``, ``x-kit-attempt``), or the
    connection's order for other clients: so a replayed trial meets the same network
    (see :mod:`kit.proxy._connection`).

    Shorthand keywords (``latency=0.2, jitter=0.05, bandwidth="20KB/s", stall_after="4KB",
    stall_for=2, loss=0.01, ...``; see :func:`kit.network.toxics_from_kwargs`) build
    toxics on the **downstream** direction (server -> client), where a streamed
    response travels; use toxic objects with ``stream="upstream"`` for the other way.

    ``on_event``: called on the proxy's thread with every connection event dict.

    ``keep=N`` keeps only the last N finished connections and their log rows, so a
    long-running proxy's memory stays flat (``kit proxy`` keeps 1,000); the default keeps
    everything (:meth:`clear_log` forgets). ``connections_seen`` counts them all.

    ``isolate=True`` runs the proxy in a child process (as ``FaultServer(isolate=True)``
    does the server), so clients in this process cannot make its forwards late by
    holding the interpreter lock; the API is the same (see :mod:`kit.proxy._isolated`).

    Use it as a context manager (``with`` from sync code and notebooks, ``async with``
    from async code) or call :meth:`start` and :meth:`stop`. It runs on its own thread
    either way. Toxics can change at any time with :meth:`set`, :meth:`add`,
    :meth:`remove` and :meth:`clear`; changes apply to open connections at once.
    """

    def __new__(cls, *args: Any, isolate: bool = False, **kwargs: Any) -> NetworkProxy:
        if isolate and cls is NetworkProxy:
            from ._isolated import IsolatedProxy

            return super().__new__(IsolatedProxy)
        return super().__new__(cls)

    def __init__(
        self,
        upstream: tuple[str, int] | str | Any,
        listen: tuple[str, int] | str = ("127.0.0.1", 0),
        network: Network | Iterable[Toxic] | Mapping[str, Any] | None = None,
        seed: int | str = 0,
        *,
        allow_remote: bool = False,
        isolate: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        keep: int | None = None,
        **toxics: Any,
    ) -> None:
        self._upstream_obj = upstream if hasattr(upstream, "address") else None
        self.upstream: tuple[str, int] = _hostport("upstream", upstream.address if self._upstream_obj else upstream)
        host, port = _hostport("listen", listen)
        if host == "localhost":
            host = "127.0.0.1"  # one socket, one address: not ::1 and 127.0.0.1 both
        check_bind("listen", listen, host, allow_remote, "the network proxy")
        self._listen = (host, port)
        self._allow_remote = allow_remote
        self.isolate = isolate
        self.seed = seed
        self._on_event = on_event
        if network is None:
            network = Network()
        elif isinstance(network, Mapping):
            network = Network.from_dict(network)
        elif not isinstance(network, Network):
            network = Network(tuple(network))
        self._name = network.name
        self._toxics: dict[str, Toxic] = {t.name: t for t in network.toxics}
        if toxics:
            built, removed = toxics_from_kwargs(self._toxics.values(), **toxics)
            self._replace(built, removed)
        self._snapshot: tuple[Toxic, ...] = tuple(self._toxics.values())
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._stopping = False
        self._ids = itertools.count()
        self._open: dict[int, _Conn] = {}
        self._all: dict[int, _Conn] = {}
        self._forwards: list[tuple[Any, ...]] = []
        self._overshoot = _Overshoot()
        self._events: list[tuple[Any, ...]] = []
        self._late: dict[str, int] = {}  # kit request id -> its latest forward against plan (ns)
        self._late_dirty: set[str] | None = None  # ids whose lateness changed (kept in a child, to ship)
        self.keep = check_keep(keep, isolate, "connections")
        self.connections_seen = 0  # every connection accepted, also those a `keep` window has dropped

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> NetworkProxy:
        """Start listening; returns once the port is bound. Returns the proxy."""
        if self._server is not None:
            return self
        replace_previous(self)  # a rerun notebook cell stops the proxy its last run started
        thread = self._start_thread()
        try:
            thread.call(self._astart(), timeout=10)
        except OSError as exc:
            self._stop_thread()
            raise ServerError(f"cannot listen on {self._listen[0]}:{self._listen[1]}: {exc.strerror or exc}") from None
        _registry.register_proxy(self)
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, and end the thread."""
        if self._thread is None:
            return
        if self._server is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                self._thread.call(self._astop(), timeout=10)
        self._stop_thread()

    def _start_thread(self) -> LoopThread:
        self._stopping = False
        self._thread = LoopThread("kit-network-proxy")
        self._thread.start()
        self._loop = self._thread.loop
        return self._thread

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.stop()
        self._thread = None
        self._loop = None
        self._server = None

    async def _astart(self) -> None:
        loop = asyncio.get_running_loop()
        self._snapshot = tuple(self._toxics.values())
        self._server = await loop.create_server(
            lambda: _Conn(self).client, self._listen[0], self._listen[1], reuse_address=True, backlog=1024
        )

    async def _astop(self) -> None:
        self._stopping = True
        if self._server is not None:
            # Stop accepting first, then let accepts already under way finish while the server
            # is still open: on 3.11 a transport made after Server.close() fails an assertion,
            # leaking its socket and leaving that client hanging. Finished, they see _stopping.
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            self._server.close()
        for conn in list(self._open.values()):
            conn.shutdown("proxy stopped", mode="abort")
        for _ in range(3):  # let the transports' connection_lost callbacks run
            await asyncio.sleep(0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):  # 3.12+ waits for connections: bounded
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def __enter__(self) -> NetworkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> NetworkProxy:
        if self._server is None:
            thread = self._start_thread()
            try:
                await asyncio.wrap_future(thread.submit(self._astart()))
            except OSError as exc:
                self._stop_thread()
                raise ServerError(
                    f"cannot listen on {self._listen[0]}:{self._listen[1]}: {exc.strerror or exc}"
                ) from None
            _registry.register_proxy(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._thread is not None and self._server is not None:
            with contextlib.suppress(RuntimeError):
                await asyncio.wrap_future(self._thread.submit(self._astop()))
        self._stop_thread()

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._server is not None

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ServerError("the NetworkProxy is not running")
        return self._loop

    # -- addresses ------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the proxy listens on."""
        if self._server is None:
            raise ServerError("the NetworkProxy is not running; use it in a `with` block or call start()")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def url_for(self, target: Any) -> str:
        """The URL ``target`` points at, moved onto the proxy's host and port.

        ``target`` is a URL string (``server.url_for(scenario)``: its ``with_origin``
        keeps the scenario attached) or a scenario or preset name, when the upstream is a
        FaultServer (given as the object, or its address while it runs in this process).
        """
        if isinstance(target, str) and "://" in target:
            with_origin = getattr(target, "with_origin", None)
            if callable(with_origin):
                return with_origin(self.url)
            parts = urlsplit(target)
            return urlunsplit(parts._replace(netloc=urlsplit(self.url).netloc))
        server = self._upstream_obj if hasattr(self._upstream_obj, "url_for") else self._upstream_server()
        if server is not None:
            return self.url_for(server.url_for(target))
        raise ConfigError(
            "target", target, "a URL such as server.url_for(scenario), or pass upstream=server to resolve scenarios"
        )

    def _upstream_server(self) -> Any:
        """The FaultServer running in this process at the upstream address, if there is one."""
        for server in _registry.running_servers():
            try:
                if tuple(server.address) == tuple(self.upstream):
                    return server
            except KitError:  # stopped meanwhile
                continue
        return None

    # -- toxics ---------------------------------------------------------------------

    @property
    def toxics(self) -> tuple[Toxic, ...]:
        """The toxics in effect, in the order they were added."""
        return tuple(self._toxics.values())

    @property
    def network(self) -> Network:
        """The toxics in effect as a :class:`~kit.network.Network` (to store or replay)."""
        return Network(self.toxics, name=self._name)

    def set(self, **kwargs: Any) -> None:
        """Change shorthand toxics live: ``set(latency="500ms")``, ``set(bandwidth=None)``.

        Keywords left out keep their values; a group's main keyword set to ``None``
        removes that toxic. Applies to open connections at once.
        """
        with self._lock:
            built, removed = toxics_from_kwargs(self._toxics.values(), **kwargs)
            self._replace(built, removed)
        self._sync()

    def add(self, toxic: Toxic | Mapping[str, Any], *, replace: bool = False) -> Toxic:
        """Add a toxic (or its ``to_dict()``); ``replace=True`` replaces one of the same name."""
        toxic = _coerce_toxic(toxic)
        with self._lock:
            if toxic.name in self._toxics and not replace:
                raise ConfigError(
                    "name", toxic.name, "a name not in use: remove() it, pass replace=True, or give another name="
                )
            self._replace([toxic], [])
        self._sync()
        return toxic

    def remove(self, name: str) -> Toxic:
        """Remove the toxic called ``name``; returns it."""
        with self._lock:
            if name not in self._toxics:
                raise ConfigError.unknown("toxic name", name, self._toxics)
            toxic = self._toxics[name]
            self._replace([], [name])
        self._sync()
        return toxic

    def clear(self) -> None:
        """Remove every toxic: the direct path, from now on."""
        with self._lock:
            self._replace([], list(self._toxics))
        self._sync()

    def _replace(self, built: Iterable[Toxic], removed: Iterable[str]) -> None:
        toxics = dict(self._toxics)  # copy on write: the loop thread reads a snapshot
        for name in removed:
            toxics.pop(name, None)
        for toxic in built:
            toxics[toxic.name] = toxic
        self._toxics = toxics

    def _sync(self) -> None:
        """Apply the current toxics to open connections, on the loop, and wait for it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            self._snapshot = tuple(self._toxics.values())
            return
        if threading.current_thread() is getattr(thread, "_thread", None):
            self._apply()
            return

        async def apply() -> None:
            self._apply()

        with contextlib.suppress(RuntimeError):
            thread.call(apply(), timeout=10)

    def _apply(self) -> None:
        self._snapshot = tuple(self._toxics.values())
        for conn in list(self._open.values()):
            conn.apply()

    # -- logs -----------------------------------------------------------------------

    def _event(self, row: tuple[Any, ...]) -> None:
        self._events.append(row)
        if row[2] == "open":
            self.connections_seen += 1
        if self._on_event is not None:
            try:
                self._on_event(dict(zip(_views.EVENT_COLUMNS, row, strict=True)))
            except Exception as exc:  # a broken callback must not break the proxy
                warnings.warn(f"NetworkProxy on_event callback failed: {exc!r}", stacklevel=1)
        if row[2] == "close" and self.keep is not None and len(self._all) >= self.keep + max(self.keep // 2, 1):
            self._trim(self.keep)  # after the callback: it may still read this connection's record

    def _trim(self, keep: int) -> None:
        """Forget the oldest finished connections beyond ``keep`` and their log rows (on the loop, in place)."""
        finished = [i for i, c in list(self._all.items()) if c.finished]
        for i in finished[: max(len(self._all) - keep, 0)]:
            del self._all[i]
        alive = self._all.keys()
        self._forwards[:] = [r for r in self._forwards if r[0] in alive]
        self._events[:] = [r for r in self._events if r[1] in alive]
        for rid in list(self._late)[: max(len(self._late) - 4 * keep, 0)]:
            del self._late[rid]

    @property
    def log(self) -> list[dict[str, Any]]:
        """Everything the proxy saw, in time order: forwards and connection events.

        Each dict has ``type`` (``"forward"`` or ``"event"``) and ``t_ns`` (when it
        happened: a forward's ``t_sent_ns``, or ``t_recv_ns`` if dropped), plus the
        columns of :meth:`forwards_df` or :meth:`events_df`; ``toxics`` is a tuple here.
        """
        return _views.log_rows(list(self._events), list(self._forwards))

    def connection(self, conn: int) -> dict[str, Any]:
        """One connection's record by id (the columns of :meth:`connections_df`)."""
        try:
            return self._all[conn].record()
        except KeyError:
            raise ConfigError("conn", conn, "the id of a connection in connections()") from None

    def connections(self) -> list[dict[str, Any]]:
        """Every connection's record, open or closed (see :meth:`connections_df`)."""
        return [c.record() for c in list(self._all.values())]

    def request_late(self, request_id: str) -> float | None:
        """How late (s) the latest forward of request ``request_id`` went out against plan.

        Known for requests sent by a kit client (their ``x-kit-request-id`` header);
        None for others. The proxy side of ``trace.fidelity``.
        """
        late = self._late.get(request_id)
        return None if late is None else ns_to_s(late)

    def clear_log(self) -> None:
        """Forget logged forwards, events and closed connections (ids keep counting)."""
        self._forwards.clear()
        self._events.clear()
        self._late.clear()
        self._all = {i: c for i, c in list(self._all.items()) if not c.finished}

    def forwards_df(self) -> pd.DataFrame:
        """One row per forward (a write, or bytes dropped), on the kit's clock.

        Columns: ``conn`` (connection id, 0-based in accept order), ``direction``
        (``upstream`` client->server, ``downstream`` server->client), ``t_recv_ns``
        (when the proxy read the bytes), ``t_sent_ns`` (when it wrote them; missing if
        dropped), ``nbytes``, ``delay_ns`` (sent - received), ``toxics`` (the names of
        the toxics that applied, comma-separated), ``hit`` (any applied), ``dropped``,
        ``planned_ns`` (when the toxics planned the write: received time plus drawn
        latency, bandwidth pacing, slicer delays, stall ends; the received time when
        nothing applied) and ``late_ns`` (sent - planned: the proxy's own lateness,
        slightly negative when its timer woke a little early). A chunk cut into pieces
        (slicer, bandwidth, stall) gives one row per piece, all with the chunk's
        ``t_recv_ns``.
        """
        return _views.forwards_df(list(self._forwards))

    def events_df(self) -> pd.DataFrame:
        """One row per connection event.

        Columns: ``t_ns``, ``conn``, ``event``, ``direction`` (for per-direction events),
        ``detail``. Events: ``open``, ``down``, ``upstream_connected``,
        ``upstream_refused``, ``upstream_error``, ``eof`` (a side sent FIN; direction is
        the pipe it feeds), ``reset_received``, ``eof_sent`` (the proxy passed the FIN
        on), ``stall_start``, ``stall_end``, ``limit_data``, ``timeout``,
        ``reset_peer``, ``reset`` (the proxy sent an RST; detail names the side and
        why), ``error``, ``close`` (detail: the reason).
        """
        return _views.events_df(list(self._events))

    def connections_df(self) -> pd.DataFrame:
        """One row per connection.

        Columns: ``conn``, ``client`` (its host:port), ``upstream`` (``pending``,
        ``connected``, ``refused``, ``error``), ``t_open_ns``, ``t_upstream_ns`` (upstream
        connected), ``t_close_ns``, ``duration_s``, ``bytes_up``/``bytes_down``
        (forwarded client->server / server->client), ``received_up``/``received_down``
        (read by the proxy), ``dropped_up``/``dropped_down``, ``close_reason``
        (``client closed``, ``upstream closed``, ``client reset``, ``upstream reset``,
        ``upstream refused``, ``upstream error``, ``reset_peer``, ``timeout``,
        ``limit_data``, ``down``, ``proxy stopped``; missing while open), ``reset`` (the
        proxy sent an RST), ``toxics_hit`` and ``toxics_missed`` (names, comma-separated:
        which toxics' toxicity roll hit or missed this connection), ``requests`` (the
        ``x-kit-request-id`` of each request it carried, comma-separated: joins a
        trace's attempts to their connection exactly), ``trials`` (``trial:attempt`` of
        each kit trial it served: what its random draws were keyed by).
        """
        return _views.connections_df(self.connections())

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        toxics = self.network.describe()
        return f"<NetworkProxy {where} -> {self.upstream[0]}:{self.upstream[1]} ({toxics})>"
