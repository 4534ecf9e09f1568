"""Canonical routing keys: one way to turn a host, a domain or a reload URL into a key.

Invariants (tests in tests/routing/ hold this module to them):

1. ``canonical_host`` is the only function that turns a host or a domain into a routing key.
   Its result is lower-case ASCII: LDH labels and validated ``xn--`` labels joined by ``.``,
   an IPv4 address in dotted-quad form, or a bracketed, compressed IPv6 address.
2. Every spelling of one name gives one key: case, one trailing dot, a port, Unicode or
   punycode (IDNA UTS #46, non-transitional, via the ``idna`` package; the stdlib ``idna``
   codec is IDNA 2003 and is never used).
3. ``canonical_host(canonical_host(x)) == canonical_host(x)`` for every accepted ``x``.
4. What is not a host name raises ``InvalidHost`` with a message that names the problem.
   Nothing is silently dropped: a character that UTS #46 would delete (a zero-width space, a
   soft hyphen) is rejected, so ``exa<ZWSP>mple.com`` never becomes ``example.com``.
5. ``route_key(P, reload_path(u, d), P) == canonical_host(d)`` for the panel host ``P``, and
   ``route_key(h, "/", P) == canonical_host(h)`` for every other host: a reload lands on the
   backend that serves the app's traffic.
6. A reload path is recognised from the path exactly as the panel's server sees it after
   percent-decoding once; an encoded ``/`` or ``\\`` in it, which would make the two views
   differ, is an error rather than a guess.

Pure: no I/O, no settings, no Django, no Redis.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

import idna

__all__ = ["InvalidHost", "canonical_host", "reload_domain", "reload_path", "route_key"]

MAX_HOST_OCTETS = 253
MAX_LABEL_OCTETS = 63
# Bounds the work done on hostile input before any parsing (a Host header can be long).
MAX_RAW_LENGTH = 1024
# Bounds the work done on a request path before it is split.
MAX_PATH_LENGTH = 8192

_FORBIDDEN = {"/": "'/'", "\\": "'\\'", "@": "'@'", "%": "'%'", "?": "'?'", "#": "'#'"}
_ASCII_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:[]")
_SAFE_ASCII = re.compile(r"[A-Za-z0-9.:\[\]-]*")
_LDH_LABEL = re.compile(r"[a-z0-9-]+")
_ASCII_HOST = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
# A host whose last label is a number is an IPv4 address or nothing (WHATWG URL "ends in a
# number"); otherwise `0x7f.1` or `127.1` would be a name here and an address in a browser.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")

_WEB_PREFIX = ("user",)
_API_PREFIX = ("api", "v0", "user")


class InvalidHost(ValueError):
    """A host, a domain or a reload URL that cannot be a routing key; the message says why."""


def _fail(raw: str, problem: str) -> InvalidHost:
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    return InvalidHost(f"invalid host {shown!r}: {problem}")


def canonical_host(raw: str) -> str:
    """The routing key of a host or domain: see the module's invariants.

    >>> canonical_host("BÜCHER.Example.:8080")
    'xn--bcher-kva.example'
    """
    if not isinstance(raw, str):
        raise InvalidHost(f"invalid host: expected a string, got {type(raw).__name__}")
    if len(raw) <= _CACHED_LENGTH:
        return _cached_canonical_host(raw)
    return _canonical_host(raw)


def _canonical_host(raw: str) -> str:
    if not raw:
        raise _fail(raw, "it is empty")
    if len(raw) > MAX_RAW_LENGTH:
        raise _fail(raw, f"it is {len(raw)} characters long (at most {MAX_RAW_LENGTH})")
    _check_characters(raw)
    host = _strip_port(raw)
    if host.startswith("["):
        return _ipv6_literal(raw, host)
    if host.count(":"):
        raise _fail(raw, "an IPv6 address must be written in brackets, like [::1]")
    # The common case (ASCII letters, digits, '-' and '.') needs no IDNA mapping.
    mapped = host.lower() if _ASCII_HOST.fullmatch(host) else _uts46_map(raw, host)
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise _fail(raw, "it is empty")
    labels = mapped.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return _ipv4_literal(raw, mapped)
    out = [_label(raw, label) for label in labels]
    result = ".".join(out)
    if len(result) > MAX_HOST_OCTETS:
        raise _fail(raw, f"it is {len(result)} octets long (at most {MAX_HOST_OCTETS})")
    return result


# A valid host in any usual spelling fits in 262 characters (253, brackets, ":65535", a dot).
# Only inputs that short are cached, which bounds the cache to 65,536 short strings; longer
# ones (say, Unicode in decomposed form) are canonicalised afresh each time.
_CACHED_LENGTH = 262
_cached_canonical_host = lru_cache(maxsize=65536)(_canonical_host)


def _check_characters(raw: str) -> None:
    if _SAFE_ASCII.fullmatch(raw):
        return  # the usual case: nothing to name
    for position, char in enumerate(raw):
        if char in _FORBIDDEN:
            raise _fail(raw, f"{_FORBIDDEN[char]} at position {position} is not allowed")
        if char.isascii():
            if char in _ASCII_ALLOWED:
                continue
            if char.isspace():
                raise _fail(raw, f"whitespace (U+{ord(char):04X}) at position {position}")
            if not char.isprintable():
                raise _fail(raw, f"control character U+{ord(char):04X} at position {position}")
            raise _fail(raw, f"{char!r} at position {position} is not allowed")
        category = unicodedata.category(char)
        if char.isspace() or category == "Zs":
            raise _fail(raw, f"whitespace (U+{ord(char):04X}) at position {position}")
        if category == "Cc":
            raise _fail(raw, f"control character U+{ord(char):04X} at position {position}")
        try:
            mapped = idna.uts46_remap(char, std3_rules=True, transitional=False)
        except idna.IDNAError:
            raise _fail(
                raw, f"character U+{ord(char):04X} at position {position} is not allowed"
            ) from None
        if not mapped:
            raise _fail(
                raw,
                f"invisible character U+{ord(char):04X} at position {position} "
                "(IDNA would silently remove it)",
            )


def _strip_port(raw: str) -> str:
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise _fail(raw, "'[' without a closing ']'")
        host, rest = raw[: end + 1], raw[end + 1 :]
        if not rest:
            return host
        if not rest.startswith(":"):
            raise _fail(raw, f"unexpected {rest!r} after the IPv6 address")
        _check_port(raw, rest[1:])
        return host
    if raw.count(":") != 1:
        return raw  # no port, or an unbracketed IPv6 address (rejected by the caller)
    host, port = raw.split(":")
    _check_port(raw, port)
    return host


def _check_port(raw: str, port: str) -> None:
    if not port:
        raise _fail(raw, "empty port after ':'")
    if not _PORT.fullmatch(port):
        raise _fail(raw, f"port {port!r} is not a number from 1 to 65535")
    if not 1 <= int(port) <= 65535:
        raise _fail(raw, f"port {int(port)} is out of range (1 to 65535)")


def _ipv6_literal(raw: str, host: str) -> str:
    if not host.endswith("]"):
        raise _fail(raw, "'[' without a closing ']'")
    try:
        address = ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise _fail(raw, f"{host[1:-1]!r} is not an IPv6 address") from None
    return f"[{address.compressed}]"


def _ipv4_literal(raw: str, host: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        raise _fail(
            raw, "it ends in a number but is not an IPv4 address in dotted-quad form"
        ) from None


def _uts46_map(raw: str, host: str) -> str:
    # Case folding, width folding, NFC and the IDNA full stops (U+3002 ...) become '.'.
    try:
        return idna.uts46_remap(host, std3_rules=True, transitional=False)
    except idna.IDNAError as exc:
        raise _fail(raw, str(exc)) from None


def _label(raw: str, label: str) -> str:
    if not label:
        raise _fail(raw, "it has an empty label (two dots in a row, or a leading dot)")
    if label.isascii():
        if not _LDH_LABEL.fullmatch(label):
            bad = next(c for c in label if not (c.isalnum() or c == "-"))
            raise _fail(raw, f"character {bad!r} is not allowed in label {label!r}")
        if label.startswith("xn--"):
            _check_a_label(raw, label)
        ascii_label = label
    else:
        try:
            ascii_label = idna.alabel(label).decode("ascii")
        except idna.IDNAError as exc:
            raise _fail(raw, f"label {label!r} is not a valid IDNA label: {exc}") from None
    if ascii_label.startswith("-") or ascii_label.endswith("-"):
        raise _fail(raw, f"label {ascii_label!r} starts or ends with '-'")
    if len(ascii_label) > MAX_LABEL_OCTETS:
        raise _fail(
            raw,
            f"label {ascii_label[:20]!r}... is {len(ascii_label)} octets long "
            f"(at most {MAX_LABEL_OCTETS})",
        )
    return ascii_label


def _check_a_label(raw: str, label: str) -> None:
    """An ``xn--`` label must decode to a valid U-label that encodes back to itself."""
    try:
        u_label = idna.ulabel(label)
        again = idna.alabel(u_label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise _fail(raw, f"label {label!r} is not a valid punycode (A-)label: {exc}") from None
    if again != label:
        raise _fail(raw, f"label {label!r} is not the canonical punycode of {u_label!r}")


def reload_path(username: str, domain: str, api: bool = False) -> str:
    """The reload URL path of ``username``'s app at ``domain`` (Web tab, or API with ``api``).

    The only generator of reload URLs: the domain is written in canonical form, so the path
    routes to the backend that serves the domain's traffic.
    """
    if not isinstance(username, str) or username in ("", ".", ".."):
        raise ValueError(f"username {username!r} cannot be a segment of a reload path")
    segment = quote(canonical_host(domain), safe=":")
    user = quote(username, safe="@+-._~")
    prefix = "/api/v0" if api else ""
    return f"{prefix}/user/{user}/webapps/{segment}/reload/"


def reload_domain(path: str) -> str | None:
    """The raw (decoded, not yet canonical) domain of a reload path, or None for other paths.

    Raises ``InvalidHost`` when the path is a reload path, or would be one once percent-decoded,
    but its domain cannot be read without guessing (encoded ``/`` or ``\\``, bad UTF-8).
    """
    # What the panel's server (gunicorn, via urllib's urlsplit) takes for the path: a fragment
    # (which no client should send) and the query are cut off, the fragment first.
    path = path.split("#", 1)[0].split("?", 1)[0]
    if not path.startswith("/") or len(path) > MAX_PATH_LENGTH:
        return None
    raw_segments = path[1:].split("/")
    if raw_segments[-1] == "":
        raw_segments.pop()  # one trailing slash is optional
    # surrogatepass: a str path may carry lone surrogates; they come out as undecodable bytes.
    decoded = [
        unquote_to_bytes(s.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogateescape")
        for s in raw_segments
    ]
    if any(("/" in s or "\\" in s) for s in decoded):
        # The panel's server decodes once and then splits, so this path may look different
        # there; if either view is a reload path, refuse rather than route by a guess.
        server_view = "/".join(decoded).replace("\\", "/").split("/")
        if server_view and server_view[-1] == "":
            server_view.pop()
        if _shape(raw_segments) is not None or _shape(server_view) is not None:
            raise InvalidHost(f"invalid reload path {path[:80]!r}: an encoded '/' or '\\'")
        return None
    position = _shape(decoded)
    if position is None:
        return None
    if any(";" in s for s in decoded):
        # `;params`: not a reload URL the panel knows. Checked after decoding: the panel's
        # server sees `%3B` as `;`, so the two spellings must be judged alike.
        return None
    if any(s in ("", ".", "..") for s in decoded):
        return None  # empty or dot segments: not a reload URL the panel knows
    domain = decoded[position]
    if any("\udc80" <= c <= "\udcff" for c in domain):
        raise InvalidHost(
            f"invalid reload path {path[:80]!r}: the domain is not UTF-8 once percent-decoded"
        )
    return domain


def _shape(segments: list[str]) -> int | None:
    """Index of the domain segment if ``segments`` have a reload path's shape."""
    for prefix in (_WEB_PREFIX, _API_PREFIX):
        n = len(prefix)
        if (
            len(segments) == n + 4
            and tuple(segments[:n]) == prefix
            and segments[n + 1] == "webapps"
            and segments[n + 3] == "reload"
        ):
            return n + 2
    return None


def route_key(host: str, path: str, panel_host: str) -> str:
    """The key a request for ``host`` + ``path`` is routed by (see invariant 5)."""
    key = canonical_host(host)
    if key != canonical_host(panel_host):
        return key
    domain = reload_domain(path)
    if domain is None:
        return key
    return canonical_host(domain)
