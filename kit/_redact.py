"""Secrets never leave the process: headers and URL parameters are redacted by default."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "SECRET_HEADERS", "redact_headers", "redact_text", "redact_url"]

REDACTED = "[redacted]"

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie", "x-goog-api-key"}
)

# query parameters whose values are credentials: key, api_key, apikey, token, access_token,
# secret, client_secret, password, sig, signature, auth, code
_SECRET_PARAM = re.compile(
    r"(?i)^(.*[-_])?(key|apikey|token|secret|password|passwd|sig|signature|auth|code|credential)s?$"
)

# key-looking strings anywhere in text: provider key prefixes and bearer tokens
_SECRET_TEXT = re.compile(r"(?i)(sk-(?:ant-)?[a-z0-9_\-]{8,}|bearer\s+[a-z0-9._\-]{8,})")


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of ``headers`` (names lower-cased) with secret values replaced."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        out[key] = REDACTED if key in SECRET_HEADERS else redact_text(value)
    return out


def redact_url(url: str) -> str:
    """``url`` with credentials in userinfo and key-looking query parameters replaced.

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
        query = urlencode([(k, REDACTED if _SECRET_PARAM.match(k) else redact_text(v)) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with API-key-looking substrings replaced."""
    return _SECRET_TEXT.sub(REDACTED, text)
