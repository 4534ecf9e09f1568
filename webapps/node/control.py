"""The node's control socket: a unix socket on which the local panel asks for reloads and logs.

One request per connection, one JSON object per line each way. Requests:

    {"op": "reload", "domain": "<any spelling>"}
        -> {"status": "OK"|"ERROR", "backend": "<node>", "duration_ms": n, "message": "...",
            "log_tail": "..."}
    {"op": "logs", "domain": "<any spelling>", "lines": 50}
        -> {"status": "OK", "backend": "<node>", "domain": "<canonical>",
            "logs": {"access": "...", "error": "...", "server": "..."}}
    {"op": "log_files", "domain": "<any spelling>"}
        -> {"status": "OK", "backend", "domain", "files": [{"kind", "index", "size", "modified"}]}
    {"op": "log_read", "domain": d, "kind": "access"|"error"|"server", "index": 0, "offset": 0,
     "limit": n}
        -> {"status": "OK", "backend", "domain", "data_b64": "...", "offset": next, "size": n}
    {"op": "log_delete", "domain": d, "kind": k, "index": i}  (index 0 is emptied, not removed)
        -> {"status": "OK", "backend", "domain", "deleted": true|false}
    {"op": "status"}
        -> {"status": "OK", "backend": "<node>", "apps": [{"name", "phase", "pid", "rss_bytes",
            ...}], "capacity": {"max_running", "running", ...}, "rss_bytes": n, ...}

    {"op": "home_file", "owner": "<username>", "uid": n, "gid": n, "path": ["<dir>", "<file>"],
     "content": "<text>"}
        -> {"status": "OK", "written": true|false}   (false: a file of that name was there)

Any problem with the request itself: {"status": "ERROR", "message": "<what is wrong>"}.

Who may ask: the socket file is created mode 0600 (0660 with the panel's group when the panel
runs as a uid of its own), and every connection's peer credentials (``SO_PEERCRED``) are checked
against the allowed uids (root, the node's own, the panel's): any other uid is answered
``{"status": "ERROR", "message": "permission denied ..."}`` and nothing is carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
REQUEST_READ_TIMEOUT = 10.0

Dispatch = Callable[[dict], Awaitable[dict]]


class ControlError(Exception):
    """The node could not be asked, or gave no valid answer."""


class BadRequest(ValueError):
    """A control request that cannot be carried out; the message says why."""


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (``SO_PEERCRED``)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class ControlServer:
    def __init__(
        self,
        path: Path,
        dispatch: Dispatch,
        *,
        allowed_uids: frozenset[int] | None = None,
        group: int | None = None,
    ) -> None:
        self.path = path
        self.dispatch = dispatch
        # root and the node's own user always; the panel's uid when it runs as one of its own
        self.allowed_uids = frozenset({0, os.geteuid(), *(allowed_uids or ())})
        self.group = group  # the socket's group (the panel's), mode 0660; None: 0600
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old_umask = os.umask(0o177)  # the socket is born 0600, with no window of wider access
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        finally:
            os.umask(old_umask)
        if self.group is not None:
            os.chown(self.path, -1, self.group, follow_symlinks=False)
            os.chmod(self.path, 0o660, follow_symlinks=False)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else -1
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_READ_TIMEOUT)
                if uid not in self.allowed_uids:
                    # Read first, so the client gets the answer rather than a broken pipe; the
                    # request itself is never looked at.
                    log.warning("control socket: refused a client running as uid %d", uid)
                    raise PermissionError(
                        f"permission denied: uid {uid} may not use this node's control socket"
                    )
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise BadRequest("a request is a JSON object")
                response = await self.dispatch(request)
            except (ValueError, asyncio.LimitOverrunError) as exc:
                # ValueError covers bad JSON, BadRequest and a line over the limit
                response = {"status": "ERROR", "message": f"bad request: {exc}"}
            except PermissionError as exc:
                response = {"status": "ERROR", "message": str(exc)}
            except TimeoutError:
                response = {"status": "ERROR", "message": "no request line within the deadline"}
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, BrokenPipeError) as exc:
            log.info("control client went away: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()


def call(path: str | Path, request: dict, timeout: float = 90.0) -> dict:
    """Send one request to a node's control socket and return its answer (blocking)."""
    if not path:
        raise ControlError("no control socket configured (NODE_CONTROL_SOCKET is empty)")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = bytearray()
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_RESPONSE_BYTES:
                    raise ControlError(f"answer over {MAX_RESPONSE_BYTES} bytes")
    except TimeoutError:
        raise ControlError(f"no answer from {path} within {timeout:g}s") from None
    except OSError as exc:
        raise ControlError(f"cannot reach {path}: {exc}") from None
    try:
        response = json.loads(data)
    except ValueError:
        raise ControlError(f"invalid answer from {path}: {bytes(data[:200])!r}") from None
    if not isinstance(response, dict):
        raise ControlError(f"invalid answer from {path}: not a JSON object")
    return response
