"""Secrets never leave the process: one allow-list mechanism used at every storage boundary.

- Header values and URL query values are replaced by ``[redacted]`` unless their name
  is known to be harmless (:data:`SAFE_HEADERS`, :data:`SAFE_HEADER_PREFIXES`,
  :data:`SAFE_PARAMS`); :func:`unredact` (or ``KIT_UNREDACT="name,name"``) keeps more
  names, one by one.
- Text (messages, errors, bodies) loses provider-key-looking strings, ``name: value``
  pairs of secret headers and the values of query strings quoted in it.
- :func:`secret_values` collects the values of one request's own secret headers and
  query; :func:`scrub` removes them wherever they reappear (an upstream echoing the
  request in a 401 body, a bad status line, an ``x-echo-*`` header).

Users of this module: the client and ``kit.instrument`` (at the source), trial records
and bundles, HAR export/import, experiment configs, the atlas.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "SAFE_HEADERS",
    "SAFE_PARAMS",
    "SECRET_HEADERS",
    "redact_config",
    "redact_headers",
    "redact_text",
    "redact_url",
    "scrub",
    "secret_values",
    "unredact",
]

REDACTED = "[redacted]"

# always secret, even if someone unredacts them by mistake in a pattern
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie", "x-goog-api-key"}
)

# header names whose values are known to be harmless (protocol, caching, rate limits, tracing)
SAFE_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "alt-svc",
        "anthropic-beta",
        "anthropic-version",
        "cache-control",
        "cf-cache-status",
        "cf-ray",
        "connection",
        "content-encoding",
        "content-language",
        "content-length",
        "content-type",
        "date",
        "etag",
        "expires",
        "host",
        "keep-alive",
        "last-modified",
        "openai-processing-ms",
        "openai-version",
        "pragma",
        "request-id",
        "retry-after",
        "retry-after-ms",
        "server",
        "server-timing",
        "strict-transport-security",
        "traceparent",
        "transfer-encoding",
        "user-agent",
        "vary",
        "via",
        "x-content-type-options",
        "x-envoy-upstream-service-time",
        "x-request-id",
        "x-should-retry",
    }
)
SAFE_HEADER_PREFIXES = ("x-kit-", "x-stainless-", "x-ratelimit-", "anthropic-ratelimit-", "access-control-")

# query parameter names whose values are known to be harmless
SAFE_PARAMS = frozenset(
    {
        "after",
        "alt",
        "api-version",
        "before",
        "beta",
        "format",
        "lang",
        "limit",
        "model",
        "order",
        "page",
        "page_size",
        "stream",
        "v",
        "version",
    }
)

_unredacted: set[str] = {n.strip().lower() for n in os.environ.get("KIT_UNREDACT", "").split(",") if n.strip()}

# key-looking strings anywhere in text: provider key prefixes, bearer tokens
_SECRET_TEXT = re.compile(r"(?i)(sk-(?:ant-)?[a-z0-9_\-]{8,}|bearer\s+[a-z0-9._\-~+/=]{8,})")
# `secret-header: value` quoted in text (a 401 body, a log line)
_SECRET_PAIR = re.compile(
    r"(?i)\b(authorization|x-api-key|api-key|x-goog-api-key|cookie)([\"']?\s*[:=]\s*[\"']?)"
    r"((?:(?:basic|bearer|token)\s+)?[^\s\"',;]{4,})"
)
# a query string quoted in text: ?name=value&name=value
_QUERY_TEXT = re.compile(r"(?<=[?&])([A-Za-z0-9_.\-\[\]%]{1,100})=([^&\s#\"'<>]*)")
_MIN_SECRET = 6  # shorter request values are not searched for in text (too many false hits)


def unredact(*names: str) -> None:
    """Keep the values of these header / query parameter names in traces and files.

    The opt-out, one name at a time, for this process (``KIT_UNREDACT="a,b"`` does the
    same from the environment). The always-secret headers (:data:`SECRET_HEADERS`)
    cannot be unredacted.
    """
    _unredacted.update(n.lower() for n in names)


def header_is_safe(name: str) -> bool:
    """True if a header's value may be stored as it is (allow-list plus :func:`unredact`)."""
    key = name.lower()
    if key in SECRET_HEADERS:
        return False
    return key in SAFE_HEADERS or key in _unredacted or key.startswith(SAFE_HEADER_PREFIXES)


def param_is_safe(name: str) -> bool:
    """True if a query parameter's value may be stored as it is."""
    key = name.lower()
    return key in SAFE_PARAMS or key in _unredacted


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` (names lower-cased) with every value not known to be harmless replaced."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        key = str(name).lower()
        out[key] = redact_text(str(value)) if header_is_safe(key) else REDACTED
    return out


def redact_url(url: str) -> str:
    """``url`` with userinfo and every query value not known to be harmless replaced.

    Safe to apply twice; text that does not parse as a URL gets :func:`redact_text`.
    """
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return redact_text(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        # not REDACTED: brackets in the netloc would read as an IPv6 address when parsed again
        netloc = f"redacted@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, redact_text(v) if param_is_safe(k) else REDACTED) for k, v in pairs])
    fragment = redact_text(parts.fragment) if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _query_value(m: re.Match[str]) -> str:
    name = m.group(1)
    return m.group(0) if param_is_safe(name) or m.group(2) == REDACTED else f"{name}={REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with key-looking substrings and the values of quoted query strings replaced."""
    text = _SECRET_PAIR.sub(lambda m: m.group(1) + m.group(2) + REDACTED, _SECRET_TEXT.sub(REDACTED, text))
    return _QUERY_TEXT.sub(_query_value, text)


def secret_values(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None, url: str | None = None
) -> tuple[str, ...]:
    """The values of a request's secret headers and query (and their URL-encoded forms), longest first."""
    found: set[str] = set()
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in items:
        name, value = (n.decode("latin-1") if isinstance(n, bytes) else str(n) for n in (name, value))
        if header_is_safe(name):
            continue
        found.add(value.strip())
        found.add(value.split()[-1] if value.split() else "")  # "Bearer KEY" -> KEY
        for pair in value.split(";"):  # cookie: a=1; b=2
            found.add(pair.partition("=")[2].strip())
    if url:
        try:
            parts = urlsplit(str(url))
            found.update(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if not param_is_safe(k))
            if parts.password:
                found.add(parts.password)
        except ValueError:
            pass
    values = {v for v in found if len(v) >= _MIN_SECRET and v != REDACTED}
    values |= {q(v) for v in values for q in (quote, quote_plus)}
    return tuple(sorted(values, key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every value in ``secrets`` (see :func:`secret_values`) replaced, then :func:`redact_text`."""
    for value in secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return redact_text(text)


def redact_config(obj: Any, *, _key: str | None = None) -> Any:
    """A copy of a config (JSON-like) with secrets replaced.

    A ``headers`` mapping (request headers) goes through the allow-list of
    :func:`redact_headers`; elsewhere, values of always-secret header names, URLs and text
    are redacted (response headers a scenario sends, e.g. ``retry-after``, stay as they are).
    """
    if isinstance(obj, Mapping):
        if _key == "headers":
            return {str(k): (v if v is None or header_is_safe(str(k)) else REDACTED) for k, v in obj.items()}
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() in SECRET_HEADERS and v is not None:
                out[k] = REDACTED
            else:
                out[k] = redact_config(v, _key=k if isinstance(k, str) else None)
        return out
    if isinstance(obj, list | tuple):
        # header lists as [[name, value], ...] (HttpStatus.headers before to_dict)
        if len(obj) == 2 and isinstance(obj[0], str) and obj[0].lower() in SECRET_HEADERS:
            return [obj[0], REDACTED]
        return [redact_config(v) for v in obj]
    if isinstance(obj, str):
        return redact_url(obj) if obj.startswith(("http://", "https://")) else redact_text(obj)
    return obj
