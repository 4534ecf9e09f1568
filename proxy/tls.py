"""TLS for the front proxy: a server context with modern protocol versions only, the
certificates of app domains chosen by SNI (``CertificateStore``), the HTTPS-side state the
resolver reads (``TlsState``: ACME challenge answers, domains redirected to HTTPS), and a local
certificate authority for runs on one machine.

Certificates come from the signed bundle in Redis (``routing.certs``): each entry's private key
arrives sealed to the proxies (``routing.sealed``) and is opened in memory only; it is loaded
into OpenSSL through an anonymous memory file, never written to disk, never logged. A bundle is
installed without a restart: new handshakes see it, connections already open keep theirs.

    python -m proxy.tls --dir var/tls --panel-host panel.localhost --apps-domain apps.localhost

writes ``ca.pem`` (the CA to trust), ``cert.pem`` (leaf + chain) and ``key.pem``, for the panel
host and ``*.<apps domain>``. Existing files are kept, so the CA stays the one you trusted.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import ssl
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from routing import InvalidHost, canonical_host

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from routing.certs import CertBundle, CertEntry, Challenges

log = logging.getLogger("proxy.tls")
MAX_SNI_MEMO = 10_000


def _base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = _base_context()
    ctx.load_cert_chain(cert, key)
    return ctx


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can read ``data`` from, backed by memory (memfd) where the kernel has it,
    else by a 0600 file in a private temporary directory that is removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:  # 0700
        path = os.path.join(directory, "pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield path


def context_from_pem(chain: bytes, key: bytes) -> ssl.SSLContext:
    """A server context presenting ``chain`` (leaf first) with ``key``; ``ssl.SSLError`` when
    they do not load or do not match."""
    ctx = _base_context()
    with _memory_file(chain) as chain_path, _memory_file(key) as key_path:
        ctx.load_cert_chain(chain_path, key_path)
    return ctx


@dataclass
class TlsState:
    """What the plain and TLS listeners' resolver reads per request, swapped whole by the
    watcher: challenge answers (token -> key authorization, bytes) and the domains whose plain
    HTTP is redirected to ``https_port``."""

    tokens: Mapping[str, bytes] = field(default_factory=dict)
    force_https: frozenset[str] = frozenset()
    https_port: int | None = None
    challenges_version: int | None = None

    def take_challenges(self, doc: Challenges) -> None:
        self.tokens = {t: a.encode("ascii") for t, a in doc.tokens.items()}
        self.challenges_version = doc.version


@dataclass(frozen=True)
class Installed:
    context: ssl.SSLContext
    not_after: datetime
    serial: str
    digest: bytes


class CertificateStore:
    """The TLS listener's certificates: the platform's (``default``, for the panel host, names
    under APPS_DOMAIN and anything without a certificate of its own) and one context per app
    domain from the bundle, chosen by SNI in ``default``'s ``sni_callback``.

    ``install(bundle)`` builds contexts only for entries that changed (by digest of chain and
    sealed key), keeps the previous context of an entry that fails to load (logged with its
    domain and the reason, never the key), and swaps the name map in one assignment."""

    def __init__(
        self, default: ssl.SSLContext, private_key: X25519PrivateKey | None, tls: TlsState
    ) -> None:
        self.default = default
        self.private_key = private_key
        self.tls = tls
        self.by_name: dict[str, Installed] = {}
        self.failed: dict[str, str] = {}  # domain -> why its entry is not installed
        self.version: int | None = None
        self._sni_memo: dict[str, str | None] = {}
        default.sni_callback = self._choose

    def _choose(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext):
        if not server_name:
            return None
        found = self.by_name.get(server_name)
        if found is None and server_name.isascii():
            found = self.by_name.get(server_name.lower().rstrip("."))
        elif found is None:
            name = self._sni_memo.get(server_name, "")
            if name == "":
                try:
                    name = canonical_host(server_name)
                except InvalidHost:
                    name = None
                if len(self._sni_memo) >= MAX_SNI_MEMO:
                    self._sni_memo.clear()
                self._sni_memo[server_name] = name
            found = self.by_name.get(name) if name else None
        if found is not None:
            sslobj.context = found.context
        return None

    def build(self, bundle: CertBundle) -> tuple[dict[str, Installed], dict[str, str]]:
        """The name map for ``bundle`` (CPU-bound: callers may run it in a thread)."""
        from routing.sealed import SealError, open_sealed

        built: dict[str, Installed] = {}
        failed: dict[str, str] = {}
        for domain, entry in bundle.certificates.items():
            digest = hashlib.sha256(entry.chain.encode() + b"\0" + entry.key.encode()).digest()
            held = self.by_name.get(domain)
            if held is not None and held.digest == digest:
                built[domain] = held
                continue
            try:
                if self.private_key is None:
                    raise SealError("this proxy has no certificate-keys private key")
                key = open_sealed(self.private_key, entry.key, domain)
                ctx = context_from_pem(entry.chain.encode("ascii"), key)
                not_after = _parse_time(entry)
            except (ValueError, ssl.SSLError, OSError) as exc:
                failed[domain] = f"{type(exc).__name__}: {exc}"
                log.error("certificate for %s not installed: %s", domain, failed[domain])
                if held is not None:
                    built[domain] = held
                continue
            built[domain] = Installed(ctx, not_after, entry.serial, digest)
        return built, failed

    def apply(self, bundle: CertBundle, built: dict[str, Installed], failed: dict[str, str]):
        self.by_name = built
        self.failed = failed
        self.version = bundle.version
        self.tls.force_https = frozenset(bundle.force_https)
        log.info(
            "certificate bundle version %d: %d certificates, %d refused",
            bundle.version,
            len(built),
            len(failed),
        )

    def install(self, bundle: CertBundle) -> None:
        self.apply(bundle, *self.build(bundle))

    def nearest_expiry(self) -> datetime | None:
        return min((i.not_after for i in self.by_name.values()), default=None)


def _parse_time(entry: CertEntry) -> datetime:
    try:
        when = datetime.fromisoformat(entry.not_after)
    except ValueError:
        raise ValueError(f"not_after {entry.not_after!r} is not ISO 8601") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def make_local_ca(directory: str | os.PathLike, panel_host: str, apps_domain: str) -> dict:
    """Create (once) a private CA and a certificate for the panel host and *.<apps_domain>."""
    import trustme  # only for local runs; the proxy itself never needs it

    out = Path(directory)
    paths = {name: out / f"{name}.pem" for name in ("ca", "cert", "key")}
    if all(p.exists() for p in paths.values()):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="hosting platform local CA")
    leaf = ca.issue_cert(panel_host, f"*.{apps_domain}", apps_domain, "localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(paths["ca"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    paths["key"].chmod(0o600)
    with open(paths["cert"], "wb") as fh:
        for blob in leaf.cert_chain_pems:
            fh.write(blob.bytes())
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.tls",
        description="Create a local CA and a certificate for the panel host and *.<apps domain>.",
    )
    parser.add_argument("--dir", default=os.environ.get("PROXY_TLS_DIR", "var/tls"),
                        help="output directory (env PROXY_TLS_DIR; default var/tls)")  # fmt: skip
    parser.add_argument("--panel-host", default=os.environ.get("PANEL_HOST", "panel.localhost"),
                        help="env PANEL_HOST; default panel.localhost")  # fmt: skip
    parser.add_argument("--apps-domain", default=os.environ.get("APPS_DOMAIN", "apps.localhost"),
                        help="env APPS_DOMAIN; default apps.localhost")  # fmt: skip
    parser.add_argument("--tls-port", type=int, default=int(os.environ.get("PROXY_TLS_PORT", 8443)),
                        help="the proxy's HTTPS port, for the hint printed at the end "
                             "(env PROXY_TLS_PORT; default 8443)")  # fmt: skip
    args = parser.parse_args(argv)
    paths = make_local_ca(args.dir, args.panel_host, args.apps_domain)
    print(f"certificate: {paths['cert']}\nkey: {paths['key']}\nCA: {paths['ca']}")
    print(
        f"To trust it: curl --cacert {paths['ca']} https://{args.panel_host}:{args.tls_port}/ ; "
        f"for a browser, import {paths['ca']} as a certificate authority."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
