"""A loopback upstream for tests: one thread answers each request with bytes a function makes."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable


class RawUpstream:
    """``respond(head, body) -> bytes`` answers every request, then the connection closes."""

    def __init__(self, respond: Callable[[bytes, bytes], bytes]) -> None:
        self.respond = respond
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                fields = (line.partition(b":") for line in head.split(b"\r\n")[1:])
                length = next((int(v) for k, _, v in fields if k.strip().lower() == b"content-length"), 0)
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk  # read the whole request: closing on unread bytes would reset
                conn.sendall(self.respond(head, body))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reflector(mode: str) -> RawUpstream:
    """An upstream that echoes the request: ``body`` (headers quoted in a 401 body and as
    ``x-echo-*`` headers) or ``status_line`` (a bad status line quoting the request line)."""

    def respond(head_bytes: bytes, _body: bytes) -> bytes:
        head = head_bytes.decode("latin-1")
        if mode == "status_line":
            return f"HTTP/1.1 abc {head.splitlines()[0]}\r\n\r\n".encode()
        body = json.dumps({"type": "error", "error": {"type": "authentication_error", "message": head}})
        echo = "".join(
            f"x-echo-{line.partition(':')[0]}: {line.partition(':')[2].strip()}\r\n" for line in head.splitlines()[1:]
        )
        return (
            f"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n{echo}"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n{body}"
        ).encode()

    return RawUpstream(respond)
