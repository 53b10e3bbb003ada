"""Normalisation of Ollama server addresses (``OLLAMA_HOST`` style)."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = ["DEFAULT_PORT", "normalize_ollama_url", "redact_url"]

DEFAULT_PORT = 11434
_UNSPECIFIED = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - mapped away, never bound


def normalize_ollama_url(value: str) -> str:
    """Turn an ``OLLAMA_HOST``-style value into a connectable base URL.

    Accepts what Ollama itself accepts: ``host``, ``host:port``, ``:port``,
    ``[v6]:port``, ``http(s)://host[:port][/path]``. Without a scheme the port
    defaults to 11434, with one to 80/443. Bind-all addresses (``0.0.0.0``,
    ``::``) become loopback. Unlike the official Python client, ``user:pass@``
    is kept (the client turns it into basic auth).

    Raises ``ValueError`` for what cannot be a URL.
    """
    raw = value.strip().strip("\"'")
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r} (use http or https)")
        default_port = 443 if scheme == "https" else 80
    else:
        scheme, rest, default_port = "http", raw, DEFAULT_PORT
        try:
            if ipaddress.ip_address(raw).version == 6:
                rest = f"[{raw}]"  # a bare IPv6 address, as Ollama accepts it
        except ValueError:
            pass
    split = urlsplit(f"{scheme}://{rest}")
    if split.query or split.fragment:
        raise ValueError("an Ollama URL takes no query or fragment")
    try:
        port = split.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {redact_url(raw)!r}: {exc}") from None
    host = split.hostname or "127.0.0.1"
    host = _UNSPECIFIED.get(host, host)
    if any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"invalid host {host!r}")
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    hostport = f"[{host}]" if is_v6 else host
    hostport = f"{hostport}:{port or default_port}"
    userinfo = ""
    if split.username is not None:
        userinfo = split.username
        if split.password is not None:
            userinfo += f":{split.password}"
        userinfo += "@"
    path = split.path.rstrip("/")
    return urlunsplit(SplitResult(scheme, userinfo + hostport, path, "", ""))


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    try:
        split = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:
        return "<unparsable url>"
    if split.password is None:
        return url
    netloc = split.netloc.rsplit("@", 1)[1]
    return urlunsplit(split._replace(netloc=f"{split.username}:***@{netloc}"))
