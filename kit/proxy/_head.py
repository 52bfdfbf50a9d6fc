"""What the proxy learns from the requests it forwards: the kit's own request headers.

The proxy moves bytes, but a kit client names every request: ``x-kit-request-id``
(joins the proxy's log to the call's trace exactly) and ``x-kit-trial`` (the trial's
seed: the proxy keys its random draws by it, so a replayed trial meets the same
network). :class:`RequestHeads` scans the client->server bytes of one connection
incrementally for HTTP/1.1 request heads, skipping each body by its
``Content-Length``. It reads, never changes, the bytes.

Bounded and forgiving, as anything fed by a peer must be: a head over
:data:`MAX_HEAD` bytes, a chunked request body, or anything that is not HTTP/1.x
ends the scanning for that connection (the proxy then keys by connection order, as
for any non-kit client).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MAX_HEAD", "Head", "RequestHeads"]

MAX_HEAD = 64 * 1024
_WANTED = (b"x-kit-request-id", b"x-kit-trial", b"x-kit-attempt", b"content-length", b"transfer-encoding")


@dataclass(frozen=True, slots=True)
class Head:
    """The kit headers of one request (None when absent)."""

    request_id: str | None
    trial: str | None
    attempt: str | None


class RequestHeads:
    """Incremental scanner of one connection's request stream (client -> server)."""

    __slots__ = ("_buf", "_skip", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._skip = 0  # body bytes still to pass over
        self.done = False  # gave up (or the stream is not HTTP/1.x): nothing more to learn

    def feed(self, data: bytes) -> list[Head]:
        """Scan ``data``; returns the heads completed by it, in order."""
        heads: list[Head] = []
        while data and not self.done:
            if self._skip:
                n = min(self._skip, len(data))
                self._skip -= n
                data = data[n:]
                continue
            buf = self._buf + data
            data = b""
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._stop()
                else:
                    self._buf = buf
                break
            self._buf = b""
            head, data = buf[:end], buf[end + 4 :]
            parsed = self._parse(head)
            if parsed is None:
                self._stop()
                break
            heads.append(parsed[0])
            self._skip = parsed[1]
        return heads

    @property
    def pending(self) -> bool:
        """A head has begun but not ended: what it says is not known yet."""
        return bool(self._buf)

    def _stop(self) -> None:
        self.done = True
        self._buf = b""

    def _parse(self, head: bytes) -> tuple[Head, int] | None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return None
        found: dict[bytes, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            key = name.strip().lower()
            if sep and key in _WANTED:
                found[key] = value.strip().decode("latin-1")
        if "chunked" in found.get(b"transfer-encoding", "").lower():
            return None  # a chunked request body: not worth a second parser here
        length = found.get(b"content-length", "0")
        if not length.isdigit():
            return None
        head_of = Head(found.get(b"x-kit-request-id"), found.get(b"x-kit-trial"), found.get(b"x-kit-attempt"))
        return head_of, int(length)
