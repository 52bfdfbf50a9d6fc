"""A loopback upstream for tests: one thread answers each request with bytes a function makes."""

from __future__ import annotations

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
