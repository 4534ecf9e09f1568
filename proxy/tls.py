"""TLS for the front proxy: a server context with modern protocol versions only, and a local
certificate authority for runs on one machine.

    python -m proxy.tls --dir var/tls --panel-host panel.localhost --apps-domain apps.localhost

writes ``ca.pem`` (the CA to trust), ``cert.pem`` (leaf + chain) and ``key.pem``, for the panel
host and ``*.<apps domain>``. Existing files are kept, so the CA stays the one you trusted.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


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
    args = parser.parse_args(argv)
    paths = make_local_ca(args.dir, args.panel_host, args.apps_domain)
    print(f"certificate: {paths['cert']}\nkey: {paths['key']}\nCA: {paths['ca']}")
    print(
        f"To trust it: curl --cacert {paths['ca']} https://{args.panel_host}:8443/ ; "
        f"for a browser, import {paths['ca']} as a certificate authority."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
