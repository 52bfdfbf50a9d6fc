"""Loopback only, unless the user says otherwise: the bind check servers and proxies share."""

from __future__ import annotations

import ipaddress
import warnings

from ._errors import ConfigError

__all__ = ["check_bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(field: str, value: object, host: str, allow_remote: bool, what: str) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``; then warn that it is exposed."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ConfigError(
            field, value, f"{what} binds loopback only (such as 127.0.0.1); pass allow_remote=True to expose it"
        )
    warnings.warn(f"{what} is binding {host}: other machines can reach it", stacklevel=3)
