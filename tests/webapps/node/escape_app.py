"""A hostile tenant's WSGI app: ``GET /escape`` tries every escape it knows, in one request.

It reads what to aim at from ``targets.json`` in its home (written by the test: paths and pids
of things outside the sandbox) and answers JSON: for each attempt, whether it worked and what
happened. ``GET /ping`` answers 200 (the test's readiness check).
"""

import json
import os
import signal
import socket


def attempt(results, name, action):
    try:
        detail = action()
    except Exception as exc:  # every failure is a result: the escape did not work
        results[name] = {"worked": False, "detail": f"{type(exc).__name__}: {exc}"}
    else:
        results[name] = {"worked": True, "detail": str(detail)[:200]}


def read(path):
    with open(path, "rb") as f:
        return f.read(200)


def write(path):
    with open(path, "w") as f:
        f.write("escaped")
    return path


def connect_unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(path)
        return "connected"


def connect_tcp(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "connected"


def redis_write(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"*3\r\n$3\r\nSET\r\n$7\r\nescaped\r\n$1\r\n1\r\n")
        reply = s.recv(100)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"redis answered {reply!r}")
        return reply


def become_root():
    os.setuid(0)
    return "uid 0"


def find_secret(marker):
    # The node's environment, from wherever this process can see environments.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in read_all(f"/proc/{pid}/environ"):
                    return f"in /proc/{pid}/environ"
            except OSError:
                continue
    if marker in "".join(os.environ.values()):
        return "in os.environ"
    raise LookupError("not found")


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def escape(targets):
    results = {}
    for name, path in targets["read"].items():
        attempt(results, f"read {name}", lambda path=path: read(path))
    for name, path in targets["write"].items():
        attempt(results, f"write {name}", lambda path=path: write(path))
    for name, pid in targets["pids"].items():
        attempt(results, f"environ of {name}", lambda pid=pid: read(f"/proc/{pid}/environ"))
        attempt(results, f"cmdline of {name}", lambda pid=pid: read(f"/proc/{pid}/cmdline"))
        attempt(results, f"signal {name}", lambda pid=pid: os.kill(pid, signal.SIGCONT))
    for name, path in targets["unix"].items():
        attempt(results, f"connect {name}", lambda path=path: connect_unix(path))
    for name, port in targets["tcp"].items():
        attempt(results, f"connect {name}", lambda port=port: connect_tcp(port))
    attempt(results, "write to redis", lambda: redis_write(targets["redis_port"]))
    attempt(results, "setuid(0)", become_root)
    attempt(results, "find the node's secret", lambda: find_secret(targets["secret_marker"]))
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "euid": os.geteuid(),
        "pid": os.getpid(),
        "results": results,
    }


def application(environ, start_response):
    if environ["PATH_INFO"] == "/escape":
        with open(os.path.join(os.environ["HOME"], "targets.json")) as f:
            body = json.dumps(escape(json.load(f))).encode()
    else:
        body = b'{"ok": true}'
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
