"""What the real APIs send besides the stream: ids, headers, error bodies, whole messages.

One :class:`ApiShape` per API holds that knowledge as data; each
:class:`kit.protocols.Protocol` carries its own (``protocol.api``), so the server and the
schedule never branch on protocol names for it. Shapes follow the public documentation:

- Anthropic: every response carries ``request-id`` (``req_`` + 24 base58 characters) and
  ``anthropic-ratelimit-*`` headers; errors are ``{"type":"error","error":{"type":...,
  "message":...},"request_id":...}``; a non-streaming answer is a ``message`` object.
- OpenAI: ``x-request-id`` (``req_`` + 32 hex) and ``x-ratelimit-*`` headers; errors are
  ``{"error":{"message":...,"type":...,"param":null,"code":...}}``; a non-streaming answer
  is a ``chat.completion`` object.

JSON is compact (no spaces), as both APIs send it. Protocols without an API (ndjson, raw)
get :data:`PLAIN`: no ids beyond the kit's own, errors in the Anthropic shape.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ANTHROPIC", "OPENAI", "PLAIN", "ApiShape", "compact"]

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def compact(obj: Any) -> bytes:
    """JSON the way the APIs write it: no spaces after separators."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest()


def _anthropic_id(seed: str) -> str:
    d = _digest(seed)
    return "req_011C" + "".join(_B58[b % 58] for b in d[:20])


def _openai_id(seed: str) -> str:
    return "req_" + _digest(seed).hex()[:32]


# status -> error type, as each API documents them
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
    500: "server_error",
    503: "server_error",
}
_OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
# a mid-stream error type -> the status the same failure gets on a non-streaming request
ERROR_STATUS = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "server_error": 500,
    "invalid_request_error": 400,
    "request_too_large": 413,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
}


def _anthropic_error(status: int, error_type: str | None, message: str, request_id: str) -> dict[str, Any]:
    etype = error_type or _ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}


_OPENAI_FROM_ANTHROPIC = {
    "rate_limit_error": "requests",
    "overloaded_error": "server_error",
    "api_error": "server_error",
}


def _openai_error(status: int, error_type: str | None, message: str, request_id: str) -> dict[str, Any]:
    del request_id  # OpenAI carries it in x-request-id only
    etype = _OPENAI_FROM_ANTHROPIC.get(error_type or "", error_type) or _OPENAI_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": etype, "param": None, "code": _OPENAI_CODES.get(status)}}


def _anthropic_message(text: str, output_tokens: int, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "id": "msg_kit0001",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": max(output_tokens, 1),
            "service_tier": "standard",
        },
    }


def _openai_message(text: str, output_tokens: int, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-kit0001",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": output_tokens, "total_tokens": 12 + output_tokens},
        "service_tier": "default",
        "system_fingerprint": "fp_kit0001",
    }


@dataclass(frozen=True)
class ApiShape:
    """One API's conventions: request-id header and format, rate-limit headers, error and message JSON."""

    name: str
    request_id_header: str | None
    make_request_id: Callable[[str], str]
    rate_limit: tuple[tuple[str, str], ...]
    error: Callable[[int, str | None, str, str], dict[str, Any]]
    message: Callable[[str, int, str], dict[str, Any]] | None
    model: str

    def request_id(self, seed: str) -> str:
        """The API-style request id for the kit's request ``seed`` (stable per request)."""
        return self.make_request_id(seed)

    def headers(self, request_id: str) -> list[tuple[str, str]]:
        """Headers every response of this API carries (id and rate limits)."""
        out = [(self.request_id_header, request_id)] if self.request_id_header else []
        return out + list(self.rate_limit)

    def error_body(self, status: int, error_type: str | None, message: str, request_id: str) -> bytes:
        """The JSON error body as the API documents it."""
        return compact(self.error(status, error_type, message, request_id))

    def message_body(self, text: str, output_tokens: int) -> bytes | None:
        """The non-streaming answer (None: this protocol has no such thing)."""
        return None if self.message is None else compact(self.message(text, output_tokens, self.model))


_RESET = "2030-01-01T00:00:00Z"

ANTHROPIC = ApiShape(
    name="anthropic",
    request_id_header="request-id",
    make_request_id=_anthropic_id,
    rate_limit=(
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-requests-remaining", "3999"),
        ("anthropic-ratelimit-requests-reset", _RESET),
        ("anthropic-ratelimit-input-tokens-limit", "400000"),
        ("anthropic-ratelimit-input-tokens-remaining", "400000"),
        ("anthropic-ratelimit-input-tokens-reset", _RESET),
        ("anthropic-ratelimit-output-tokens-limit", "80000"),
        ("anthropic-ratelimit-output-tokens-remaining", "80000"),
        ("anthropic-ratelimit-output-tokens-reset", _RESET),
        ("anthropic-ratelimit-tokens-limit", "480000"),
        ("anthropic-ratelimit-tokens-remaining", "480000"),
        ("anthropic-ratelimit-tokens-reset", _RESET),
    ),
    error=_anthropic_error,
    message=_anthropic_message,
    model="claude-kit-1",
)
OPENAI = ApiShape(
    name="openai",
    request_id_header="x-request-id",
    make_request_id=_openai_id,
    rate_limit=(
        ("openai-processing-ms", "12"),
        ("openai-version", "2020-10-01"),
        ("x-ratelimit-limit-requests", "5000"),
        ("x-ratelimit-limit-tokens", "160000"),
        ("x-ratelimit-remaining-requests", "4999"),
        ("x-ratelimit-remaining-tokens", "159976"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-reset-tokens", "9ms"),
    ),
    error=_openai_error,
    message=_openai_message,
    model="gpt-kit-1",
)
PLAIN = ApiShape(
    name="plain",
    request_id_header=None,
    make_request_id=_anthropic_id,
    rate_limit=(),
    error=_anthropic_error,
    message=None,
    model="kit",
)
