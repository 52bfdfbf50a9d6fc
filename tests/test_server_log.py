"""A fault server's log (kit/_server_log.py): entries by request, the keep window, both modes writing to it."""

from __future__ import annotations

from kit._server_log import ServerLog
from kit.records import ServerLogEntry


def _request(log: ServerLog, rid: str) -> None:
    write = log.writer(rid, 1, "ok", 1)
    write("request", 10, 0, 0, 10)
    write("headers", 100, 1, 2)
    log.record_request({"request_id": rid})


def test_writer_numbers_one_requests_entries_and_indexes_them():
    log = ServerLog(None, None)
    _request(log, "a")
    _request(log, "b")
    assert [(e.request_id, e.seq, e.kind) for e in log.entries] == [
        ("a", 0, "request"),
        ("a", 1, "headers"),
        ("b", 0, "request"),
        ("b", 1, "headers"),
    ]
    assert log.by_request["b"] == log.entries[2:] and log.entries[0].body_bytes == 10
    assert log.requests_seen == 2


def test_keep_window_keeps_the_newest_requests_and_tells_the_mode():
    trimmed: list[int] = []
    seen: list[str] = []
    log = ServerLog(4, lambda info: seen.append(info["request_id"]))
    log.on_trim = trimmed.append
    for i in range(20):
        _request(log, f"r{i}")
    assert log.requests_seen == 20 and seen == [f"r{i}" for i in range(20)]
    assert trimmed and set(trimmed) == {4}
    assert len(log.requests) < 4 + 2 + 1 and log.requests[-1]["request_id"] == "r19"
    assert set(log.by_request) == {e.request_id for e in log.entries} and "r19" in log.by_request
    assert "r0" not in log.by_request


def test_rows_shipped_from_a_child_land_like_local_writes():
    log = ServerLog(None, None)
    row = ("x", 3, "ok", 2, 0, "chunk", 12, 5, 6, 7)
    log.add_rows([row])
    assert log.entries == [ServerLogEntry(*row)] and log.by_request["x"] == log.entries
    log.clear()
    assert not log.entries and not log.by_request and not log.requests
