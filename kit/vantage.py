"""The three vantage points of one call joined: server-sent, proxy-forwarded, client-received.

:func:`table` gives one row per server write of every attempt of a :class:`~kit.Trace`
with the time the server wrote it, the time the :class:`~kit.NetworkProxy` read it and
passed it on, and the time the client read it, all on the kit's one clock.

The three logs count bytes differently and cut them differently, so rows are joined by
**byte offsets**, never by row order:

- the server logs each write's wire bytes (status line and headers, chunked framing
  included);
- the proxy logs what it forwarded per connection and direction, in pieces of its own
  (one socket read may hold several writes; a slicer or a bandwidth limit cuts one
  write into many pieces);
- the client logs de-chunked body bytes per socket read.

A write's end offset in the connection's downstream byte stream (wire bytes) finds the
proxy row that carried its last byte; its end offset in the body (payload bytes, which
the server logs beside the wire bytes of each write) finds the client chunk that carried
its last byte. A write counts as received, forwarded or read when its *last* byte was.
A log recorded before the server logged payload bytes (``body_bytes`` None: older
journals) has no body offsets: its writes get no ``client_received_s`` but the headers'
and the end's.

Which proxy connection carried an attempt: the one whose client address (the proxy
logs it per connection) is the attempt's ``local_addr`` (the client recorded its socket's
own address), the latest opened before the server read the request. That join is exact,
however many calls share the proxy. Attempts without a local address (recorded before
the kit kept it, SDK transports that do not expose it) or a proxy given as a bare
``forwards_df()`` (no client addresses) fall back to timing: the connection whose last
client->server forward came closest before the server finished reading the request
(the server's ``request`` entry), exact for one call at a time and a best effort when
requests finish within the same few microseconds. Either way, the response starts at
the proxy's downstream offset of the first bytes read after the server wrote the
headers, so several requests on one keep-alive connection join correctly.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from ._clock import ns_to_s
from ._errors import ConfigError

# a kit.Trace and its kit.trace.Attempt (not imported: trace.py delegates Trace.vantage here)
Trace = Any
Attempt = Any

__all__ = ["COLUMNS", "connections", "forwards_for", "table"]

COLUMNS = [
    "attempt",
    "request_id",
    "seq",
    "kind",
    "nbytes",
    "body_bytes",
    "wire_end",
    "body_end",
    "conn",
    "pieces",
    "dropped",
    "server_sent_s",
    "proxy_received_s",
    "proxy_forwarded_s",
    "client_received_s",
    "network_delay_s",
    "client_delay_s",
    "total_delay_s",
]

SLACK_NS = 20_000_000  # how much later than the server's stamp a proxy stamp may be (a GIL switch or two)
SETTLE_S = 1.0  # how long to wait for a live proxy's log to show what the client read
WINDOW_NS = 1_000_000_000  # how long before the server read a request its last bytes may have left the proxy

# server log entries that are not bytes written toward the client
_NOT_WRITES = frozenset({"request", "accept"})


def _clients(proxy: Any) -> pd.DataFrame | None:
    """Each proxy connection's client address and opening time (a NetworkProxy's ``connections_df()``)."""
    if not hasattr(proxy, "connections_df"):
        return None
    df = proxy.connections_df()
    return df[["conn", "client", "t_open_ns"]] if len(df) else None


def _forwards(proxy: Any) -> pd.DataFrame | None:
    """The proxy's forward log from a NetworkProxy, its ``forwards_df()`` or ``log``."""
    if proxy is None:
        return None
    if hasattr(proxy, "forwards_df"):
        return proxy.forwards_df()
    if isinstance(proxy, pd.DataFrame):
        missing = {"conn", "direction", "t_recv_ns", "t_sent_ns", "nbytes"} - set(proxy.columns)
        if missing:
            raise ConfigError("proxy", f"DataFrame without {sorted(missing)}", "a NetworkProxy or its forwards_df()")
        return proxy
    raise ConfigError("proxy", type(proxy).__name__, "a NetworkProxy, its forwards_df(), or None")


class _Pipe:
    """One connection's downstream forwards in stream order, as cumulative offsets."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.t_recv = rows["t_recv_ns"].to_numpy(dtype="int64")
        sent = pd.to_numeric(rows["t_sent_ns"], errors="coerce")
        self.dropped = sent.isna().to_numpy()
        self.t_sent = sent.fillna(-1).to_numpy(dtype="int64")
        self.rows = rows
        self.nbytes = rows["nbytes"].to_numpy(dtype="int64")
        self.cum = self.nbytes.cumsum()

    def offset_before(self, t_ns: int) -> int:
        """Bytes the proxy had read on this connection before ``t_ns``."""
        earlier = self.t_recv < t_ns
        return int(self.cum[earlier][-1]) if earlier.any() else 0


class _Join:
    """A proxy's forward log, ready to find which connection and bytes carried a response."""

    def __init__(self, forwards: pd.DataFrame, clients: pd.DataFrame | None = None) -> None:
        self.by_client: dict[str, list[tuple[int, int]]] = {}  # "ip:port" -> [(t_open_ns, conn)]
        if clients is not None:
            for conn, client, t_open in clients.itertuples(index=False):
                if client and pd.notna(t_open):
                    self.by_client.setdefault(str(client), []).append((int(t_open), int(conn)))
        direction = forwards["direction"].astype(str)
        up = forwards[direction == "upstream"]
        self.up_conn = up["conn"].to_numpy(dtype="int64")
        self.up_recv = pd.to_numeric(up["t_recv_ns"]).to_numpy(dtype="int64")
        sent = pd.to_numeric(up["t_sent_ns"], errors="coerce")
        self.up_sent = sent.fillna(-1).to_numpy(dtype="int64")
        self.down = forwards[direction == "downstream"]
        self.down_conn = self.down["conn"].to_numpy(dtype="int64")
        self.pipes: dict[int, _Pipe] = {}

    def pipe(self, conn: int) -> _Pipe:
        pipe = self.pipes.get(conn)
        if pipe is None:
            pipe = self.pipes[conn] = _Pipe(self.down[self.down_conn == conn])
        return pipe

    def locate(
        self, request_ns: int, writes: list[Any], local_addr: str | None = None
    ) -> tuple[int, _Pipe, int] | None:
        """(connection, its downstream pipe, the response's first byte offset) or None.

        By ``local_addr`` (the client's socket address) when the proxy logged it: the
        latest connection from that address opened before ``request_ns`` (a port can be
        reused by a later connection). Else by timing. Candidates: connections that forwarded client bytes within ``WINDOW_NS`` of the
        server reading the request (the proxy stamps a forward just *after* its write
        returns, so up to ``SLACK_NS`` later counts too, as long as it read them first).
        Among them, the one whose downstream reads follow the server's writes closest:
        for each write, the proxy's read of its last byte can only come after the
        server wrote it, and on the right connection it comes at once.
        """
        opened = [(t, conn) for t, conn in self.by_client.get(local_addr or "", ()) if t <= request_ns]
        if opened:
            conn = max(opened)[1]
            pipe = self.pipe(conn)
            return conn, pipe, pipe.offset_before(writes[0].t_ns)
        near = (
            (self.up_sent >= 0)
            & (self.up_recv <= request_ns)
            & (self.up_sent <= request_ns + SLACK_NS)
            & (self.up_sent >= request_ns - WINDOW_NS)
        )
        conns = sorted(set(self.up_conn[near].tolist()))
        if not conns:
            return None
        best: tuple[float, int, int, int] | None = None  # (score, proximity, conn, base)
        for conn in conns:
            pipe = self.pipe(conn)
            base = pipe.offset_before(writes[0].t_ns)
            ends = base + np.cumsum([e.nbytes for e in writes])
            idx = np.searchsorted(pipe.cum, ends, side="left")
            seen = idx < len(pipe.cum)
            if not seen.any():
                continue
            lags = pipe.t_recv[idx[seen]] - np.asarray([e.t_ns for e in writes], dtype="int64")[seen]
            score = float(np.median(lags)) if (lags >= 0).all() else np.inf  # read before written: not this one
            proximity = int(np.abs(self.up_sent[near & (self.up_conn == conn)] - request_ns).min())
            key = (score, proximity, conn, base)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        return best[2], self.pipe(best[2]), best[3]


def _writes(a: Attempt) -> tuple[Any, list[Any]]:
    """The attempt's ``request`` log entry and its writes toward the client."""
    a.refresh_server_log()
    log = list(a.server_log)
    request = next((e for e in log if e.kind == "request"), None)
    return request, [e for e in log if e.nbytes > 0 and e.kind not in _NOT_WRITES]


def _attempt_rows(trace: Trace, a: Attempt, join: _Join | None) -> list[dict[str, Any]]:
    request, writes = _writes(a)
    if not writes:
        return []
    start = trace.start_ns

    def s(ns: int | None) -> float:
        return np.nan if ns is None or ns < 0 else ns_to_s(ns - start)

    # the proxy connection and where this response starts in its downstream bytes
    pipe: _Pipe | None = None
    conn: int | None = None
    base = 0
    found = join.locate(request.t_ns, writes, a.local_addr) if join is not None and request is not None else None
    if found is not None:
        conn, pipe, base = found

    chunk_t = np.asarray(a.chunk_t, dtype="int64")
    chunk_cum = np.asarray(a.chunk_size, dtype="int64").cumsum()
    clean_end = a.outcome is not None and a.outcome.cause in ("ok", "ended")
    rows = []
    wire = 0
    body: int | None = 0  # None once a write's payload size is unknown (a log from before it was recorded)
    for e in writes:
        w0, wire = wire, wire + e.nbytes
        nbody = e.body_bytes
        body = None if body is None or nbody is None else body + nbody
        row: dict[str, Any] = {
            "attempt": a.index,
            "request_id": a.request_id,
            "seq": e.seq,
            "kind": e.kind,
            "nbytes": e.nbytes,
            "body_bytes": nbody,
            "wire_end": wire,
            "body_end": body,
            "conn": conn,
            "pieces": 0,
            "dropped": False,
            "server_sent_s": s(e.t_ns),
            "proxy_received_s": np.nan,
            "proxy_forwarded_s": np.nan,
            "client_received_s": np.nan,
        }
        if pipe is not None:
            last = int(np.searchsorted(pipe.cum, base + wire, side="left"))  # row holding the last byte
            first = int(np.searchsorted(pipe.cum, base + w0, side="right"))  # row holding the first byte
            if last < len(pipe.cum):
                row["proxy_received_s"] = s(int(pipe.t_recv[last]))
                row["pieces"] = last - first + 1
                row["dropped"] = bool(pipe.dropped[first : last + 1].any())
                if not pipe.dropped[last]:
                    row["proxy_forwarded_s"] = s(int(pipe.t_sent[last]))
        if nbody and body is not None:
            idx = int(np.searchsorted(chunk_cum, body, side="left"))
            if idx < len(chunk_t):
                row["client_received_s"] = s(int(chunk_t[idx]))
        elif e.kind in ("headers", "endless_headers"):
            row["client_received_s"] = s(a.headers_ns)
        elif e.kind == "end" and clean_end:
            row["client_received_s"] = s(a.end_ns)  # the client saw the body end cleanly then
        rows.append(row)
    return rows


def table(trace: Trace, proxy: Any = None) -> pd.DataFrame:
    """One row per server write of every attempt, seen from the server, the proxy and the client.

    ``proxy``: the :class:`~kit.NetworkProxy` the call went through, or its
    ``forwards_df()``; ``None`` for a direct call (the proxy columns are then missing).
    The proxy logs each forward just after writing it, on its own thread, so a log
    copied the instant a call returns can lack the last rows: pass the proxy itself
    (the join then waits up to ``SETTLE_S`` for its log to show every byte the client
    read) or a ``forwards_df()`` taken after the proxy stopped. The proxy itself also
    gives each connection's client address, which joins attempts to connections exactly
    (a bare ``forwards_df()`` joins by timing).

    Columns: ``attempt``, ``request_id``, ``seq`` (the server log's), ``kind`` (headers,
    message_start, content_block_delta, ..., end), ``nbytes`` (wire bytes),
    ``body_bytes`` (payload: the server logs it per write), ``wire_end`` / ``body_end``
    (cumulative offsets within the response), ``conn`` (proxy connection id),
    ``pieces`` (proxy rows that carried the write), ``dropped`` (the proxy dropped some
    of it), then times in seconds since the call's start: ``server_sent_s``,
    ``proxy_received_s``, ``proxy_forwarded_s``, ``client_received_s`` (each when the
    write's last byte was written, read, passed on, read), and the delays
    ``network_delay_s`` (proxy forward - server send: what the network added),
    ``client_delay_s`` (client read - proxy forward, or - server send without a proxy:
    the last hop and the client's own parsing) and ``total_delay_s`` (client - server).

    ``client_received_s`` of the headers is when the client had the response headers;
    of the final zero-length chunk (``end``), when the client saw the body end, if it
    ended cleanly; missing for bytes the client never read.
    """
    forwards, clients = _forwards(proxy), _clients(proxy)
    df = _build(trace, forwards, clients)
    if hasattr(proxy, "forwards_df"):
        # The proxy logs a forward just after its write, on its own thread: on a busy machine
        # the client can finish (and this join run) before the last rows are appended. Wait
        # (briefly) until every byte the client read has a forward.
        deadline = time.monotonic() + SETTLE_S
        while _lagging(df) and time.monotonic() < deadline:
            time.sleep(0.005)
            forwards = proxy.forwards_df()
            df = _build(trace, forwards, _clients(proxy))
    return df


def _lagging(df: pd.DataFrame) -> bool:
    """True if the client read bytes the proxy's log does not show forwarded (yet)."""
    return bool((df["client_received_s"].notna() & df["proxy_forwarded_s"].isna() & ~df["dropped"]).any())


def _build(trace: Trace, forwards: pd.DataFrame | None, clients: pd.DataFrame | None = None) -> pd.DataFrame:
    join = _Join(forwards, clients) if forwards is not None and len(forwards) else None
    rows: list[dict[str, Any]] = []
    for a in trace.attempts:
        rows.extend(_attempt_rows(trace, a, join))
    df = pd.DataFrame(rows, columns=COLUMNS[:-3])
    for col in ("conn", "body_bytes", "body_end"):
        df[col] = df[col].astype("Int64")
    for col in ("server_sent_s", "proxy_received_s", "proxy_forwarded_s", "client_received_s"):
        df[col] = df[col].astype("float64")
    df["network_delay_s"] = df["proxy_forwarded_s"] - df["server_sent_s"]
    last_hop = df["proxy_forwarded_s"] if forwards is not None else df["server_sent_s"]
    df["client_delay_s"] = df["client_received_s"] - last_hop
    df["total_delay_s"] = df["client_received_s"] - df["server_sent_s"]
    df["dropped"] = df["dropped"].astype(bool)
    return df[COLUMNS]


def _settled(trace: Trace, proxy: Any) -> pd.DataFrame | None:
    """The proxy's forward log, once it shows every byte the client read (see :func:`table`)."""
    if hasattr(proxy, "forwards_df"):
        deadline = time.monotonic() + SETTLE_S
        while True:
            forwards = proxy.forwards_df()
            if time.monotonic() >= deadline or not _lagging(_build(trace, forwards, _clients(proxy))):
                return forwards
            time.sleep(0.005)
    return _forwards(proxy)


def _located(
    trace: Trace, forwards: pd.DataFrame | None, clients: pd.DataFrame | None
) -> list[tuple[Attempt, tuple[int, _Pipe, int] | None, list[Any]]]:
    join = _Join(forwards, clients) if forwards is not None and len(forwards) else None
    out = []
    for a in trace.attempts:
        request, writes = _writes(a)
        ok = join is not None and request is not None and writes
        found = join.locate(request.t_ns, writes, a.local_addr) if ok else None
        out.append((a, found, writes))
    return out


def connections(trace: Trace, proxy: Any) -> dict[int, int | None]:
    """Attempt index -> the proxy connection id that carried it (None if not found)."""
    located = _located(trace, _settled(trace, proxy), _clients(proxy))
    return {a.index: None if found is None else found[0] for a, found, _ in located}


def forwards_for(trace: Trace, proxy: Any) -> pd.DataFrame:
    """The proxy's downstream forwards that carried ``trace``'s responses, with ``attempt``.

    The rows of ``proxy.forwards_df()`` on each attempt's connection whose bytes lie
    within that attempt's response (other calls through the same proxy left out).
    """
    forwards = _settled(trace, proxy)
    columns = [*(forwards.columns if forwards is not None else ()), "attempt"]
    frames = []
    for a, found, writes in _located(trace, forwards, _clients(proxy)):
        if found is None:
            continue
        _, pipe, base = found
        end = base + sum(e.nbytes for e in writes)
        starts = pipe.cum - pipe.nbytes
        keep = (pipe.cum > base) & (starts < end)
        frames.append(pipe.rows[keep].assign(attempt=a.index))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)
