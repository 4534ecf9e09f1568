"""A local ACME server for the demo and the tests: Debian's ``pebble`` (RFC 8555, made for
testing) with ``pebble-challtestsrv`` as its DNS server, everything on loopback.

- pebble validates HTTP-01 on ``http_port`` of whatever address DNS gives: the proxies' plain
  port, so the proxies answer the challenges exactly as they would for a real CA;
- pebble-challtestsrv answers every A query with ``default_ip`` (the proxy's address) and no
  AAAA, unless a test points one name elsewhere (``point``);
- pebble's own HTTPS listener gets a certificate from a local CA made here (``ca_file``: what
  the ACME client trusts), and the root pebble issues under is fetched from its management port
  (``issuing_root``: what a browser or curl trusts for app certificates; new on every start).

``make pebble`` installs both binaries (``apt-get install pebble``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",  # validate at once instead of after a random pause
    "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce refusals
    "PEBBLE_AUTHZREUSE": "0",  # every order validates again (renewals prove the path each time)
}


def binaries() -> tuple[str, str] | None:
    pebble = shutil.which("pebble") or ("/usr/bin/pebble" if Path("/usr/bin/pebble").exists()
                                        else None)  # fmt: skip
    challtestsrv = shutil.which("pebble-challtestsrv")
    if pebble is None or challtestsrv is None:
        return None
    return pebble, challtestsrv


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Pebble:
    def __init__(
        self,
        directory: Path,
        http_port: int,
        *,
        default_ip: str = "127.0.0.1",
        acme_port: int | None = None,
    ) -> None:
        found = binaries()
        if found is None:
            raise RuntimeError("pebble is not installed: run `make pebble` (apt-get pebble)")
        self.pebble_bin, self.challtestsrv_bin = found
        self.dir = Path(directory)
        self.http_port = http_port
        self.default_ip = default_ip
        self.acme_port = acme_port or _free_port()
        self.management_port = _free_port()
        self.dns_port = _free_port()
        self.dns_management_port = _free_port()
        self.processes: dict[str, subprocess.Popen] = {}

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def ca_file(self) -> Path:
        return self.dir / "pebble-listener-ca.pem"

    def _listener_certificate(self) -> tuple[Path, Path]:
        cert, key = self.dir / "pebble-listener.pem", self.dir / "pebble-listener.key"
        if not cert.exists():
            import trustme

            ca = trustme.CA(organization_name="pebble listener CA")
            leaf = ca.issue_cert("127.0.0.1", "localhost")
            ca.cert_pem.write_to_path(str(self.ca_file))
            leaf.private_key_pem.write_to_path(str(key))
            leaf.cert_chain_pems[0].write_to_path(str(cert))
        return cert, key

    def start(self, timeout: float = 20.0) -> Pebble:
        self.dir.mkdir(parents=True, exist_ok=True)
        cert, key = self._listener_certificate()
        config = self.dir / "pebble-config.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": self.http_port,
            "tlsPort": _free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}))  # fmt: skip
        if "challtestsrv" not in self.processes:
            self._spawn("challtestsrv", [
                self.challtestsrv_bin,
                "-dns01", f"127.0.0.1:{self.dns_port}",
                "-http01", "", "-https01", "", "-tlsalpn01", "",
                "-management", f"127.0.0.1:{self.dns_management_port}",
                "-defaultIPv4", self.default_ip, "-defaultIPv6", "",
            ], self.dns_management_port, timeout)  # fmt: skip
        self._spawn("pebble", [
            self.pebble_bin, "-config", str(config), "-dnsserver", f"127.0.0.1:{self.dns_port}",
        ], self.acme_port, timeout)  # fmt: skip
        return self

    def _spawn(self, name: str, argv: list[str], port: int, timeout: float) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.processes[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **PEBBLE_ENV},
            start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not _port_open(port):
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {self.dir / f'{name}.log'}")
            time.sleep(0.05)

    def stop_pebble(self) -> None:
        """Stop the ACME server only (DNS stays): a CA that is down."""
        self._stop("pebble")

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def stop(self) -> None:
        for name in list(self.processes):
            self._stop(name)

    def _management(self, port: int, path: str, body: dict | None = None, tls: bool = False):
        scheme = "https" if tls else "http"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=data)
        context = ssl.create_default_context(cafile=str(self.ca_file)) if tls else None
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.read()

    def issuing_root(self) -> str:
        """The root pebble issues under (PEM), new on every pebble start."""
        return self._management(self.management_port, "/roots/0", tls=True).decode()

    def point(self, host: str, address: str) -> None:
        """Make DNS answer ``address`` for ``host`` (A record)."""
        self._management(self.dns_management_port, "/add-a", {"host": host,
                                                               "addresses": [address]})  # fmt: skip

    def unpoint(self, host: str) -> None:
        self._management(self.dns_management_port, "/clear-a", {"host": host})
