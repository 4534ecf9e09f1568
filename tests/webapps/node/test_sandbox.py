"""The sandbox's pure core (what a spec turns into), its checks, and egress for real.

Egress runs in network namespaces the test makes: one stands for the node host (its loopback
holds a listener, as Redis or the database would), one for "the outside" beyond it. Nothing
leaves those namespaces.
"""

from __future__ import annotations

import ast
import json
import os
import select
import subprocess
import sys
import uuid

import pytest

from tests.webapps.node import harness
from webapps.node import launcher, sandbox
from webapps.node.sandbox import HostLayout, SandboxSpec

# What a host with every tool looks like to ``launch`` (nothing is run with it).
AVAILABLE = sandbox.Isolation(
    True,
    "",
    "/usr/bin/bwrap",
    "/usr/bin/setpriv",
    "/usr/sbin/ip",
    "/usr/bin/nsenter",
    "/usr/sbin/nft",
)
LAYOUT = HostLayout(symlinks=(("/bin", "usr/bin"), ("/lib", "usr/lib")))


def spec(**overrides) -> SandboxSpec:
    values = {"uid": 5001, "gid": 5001, "home": "/srv/var/home/alice", "socket_dir": "/run/n/a"}
    values.update(overrides)
    return SandboxSpec(**values)


def pairs(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == option]


def test_it_binds_the_home_and_socket_dir_writable_and_nothing_else_of_the_host():
    args = sandbox.bwrap_args(spec(read_only=("/opt/py",)), ["app"], {}, layout=LAYOUT)
    assert pairs(args, "--bind") == ["/run/n/a", "/srv/var/home/alice"]
    assert pairs(args, "--ro-bind") == ["/usr", "/etc", "/opt/py"]
    assert pairs(args, "--tmpfs") == ["/tmp", "/dev/shm"]
    assert pairs(args, "--symlink") == ["usr/bin", "usr/lib"]
    for flag in ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent"):
        assert flag in args


def test_it_runs_the_command_as_the_owner_with_no_groups_capabilities_or_new_privileges():
    args = sandbox.bwrap_args(spec(), ["gunicorn", "wsgi"], {}, layout=LAYOUT)
    command = args[args.index("--") + 1 :]
    assert command[:7] == [
        "/usr/bin/setpriv",
        "--reuid=5001",
        "--regid=5001",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
    ]
    assert command[-2:] == ["gunicorn", "wsgi"]


def test_it_passes_exactly_the_environment_it_is_given():
    args = sandbox.bwrap_args(spec(), ["app"], {"HOME": "/h", "A": "1"}, layout=LAYOUT)
    assert "--clearenv" in args
    i = args.index("--clearenv")
    assert args[i + 1 : i + 7] == ["--setenv", "HOME", "/h", "--setenv", "A", "1"]


def test_it_makes_the_parents_of_binds_traversable():
    args = sandbox.bwrap_args(spec(), ["app"], {}, layout=LAYOUT)
    dirs = [args[i + 3] for i, a in enumerate(args) if a == "--perms" and args[i + 2] == "--dir"]
    assert dirs == ["/run", "/run/n", "/srv", "/srv/var", "/srv/var/home"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"uid": 0}, "not root"),
        ({"gid": 0}, "not root"),
        ({"home": "relative"}, "not absolute"),
        ({"home": "/srv/../etc"}, "not normalised"),
        ({"socket_dir": "/"}, "may not be bound"),
        ({"read_only": ("/proc/1",)}, "may not be bound"),
        ({"cwd": "/srv/other"}, "outside the home"),
        ({"keep_fds": (2,)}, "from 3 up"),
        ({"egress_pool": "not a network"}, "octets"),
    ],
)
def test_it_refuses_a_spec_that_would_weaken_the_sandbox(overrides, message):
    with pytest.raises(ValueError, match=message):
        spec(**overrides)


def test_it_finds_a_virtualenvs_base_interpreter(tmp_path):
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(base / "bin" / "python3")
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\n")
    assert sandbox.python_paths(str(venv / "bin" / "python")) == (str(venv), str(base))


def test_its_egress_rules_drop_everything_for_the_host_and_masquerade_the_rest():
    rules = sandbox.egress_ruleset("100.72.0.0/16", deny=("10.0.0.0/8",))
    input_chain = rules[rules.index("chain input") : rules.index("chain forward")]
    assert input_chain.strip().splitlines()[-2].strip() == 'iifname "hsb*" drop'
    assert 'iifname "hsb*" ip daddr 10.0.0.0/8 drop' in rules
    assert 'ip saddr 100.72.0.0/16 oifname != "hsb*" masquerade' in rules
    assert sandbox.egress_slot("100.72.0.0/16", 1) == ("100.72.0.5", "100.72.0.6", 30)
    with pytest.raises(ValueError, match="outside pool"):
        sandbox.egress_slot("100.72.0.0/30", 1)


def test_a_node_that_cannot_isolate_refuses_to_start_unless_told_apps_share_its_user():
    none = sandbox.Isolation(False, "the node does not run as root (uid 1000)")
    with pytest.raises(sandbox.IsolationUnavailable, match="--apps-share-node-user"):
        sandbox.require_isolation(none, apps_share_node_user=False)
    line = sandbox.require_isolation(none, apps_share_node_user=True)
    assert line.startswith("apps share the node's user")
    with pytest.raises(sandbox.IsolationUnavailable):
        sandbox.launch(spec(), ["app"], {}, isolation=none)


def test_it_detects_isolation_on_this_host_or_says_why_not():
    isolation = sandbox.detect_isolation()
    if os.geteuid() != 0:
        assert not isolation.available and "root" in isolation.reason
    else:
        harness.need_isolation()
        assert isolation.available, isolation.reason


# --- egress, for real ----------------------------------------------------------------------
LISTENER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); s.settimeout(1)
print("ready", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        c, _ = s.accept()
    except OSError:
        continue
    c.sendall(sys.argv[3].encode()); c.close()
"""

PROBE = """
import json, socket
out = {}
for name, (host, port) in %s.items():
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            out[name] = s.recv(64).decode()
    except OSError as exc:
        out[name] = "failed: " + type(exc).__name__
print(json.dumps(out))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def network(tmp_path):
    isolation = harness.need_isolation(egress=True)
    tag = uuid.uuid4().hex[:6]
    host, outside = f"hsbt{tag}h", f"hsbt{tag}o"
    processes: list[subprocess.Popen] = []
    ip("netns", "add", host)
    try:
        ip("netns", "add", outside)
        ip(
            "-n",
            host,
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "up1",
            "netns",
            outside,
        )
        ip("-n", host, "addr", "add", "198.51.100.1/24", "dev", "up0")
        ip("-n", outside, "addr", "add", "198.51.100.2/24", "dev", "up1")
        for ns, dev in ((host, "up0"), (outside, "up1")):
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", host, "route", "add", "default", "via", "198.51.100.2")

        def listen(ns, address, port, reply):
            process = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-c", LISTENER, address, port, reply],
                stdout=subprocess.PIPE,
            )
            processes.append(process)
            ready, _, _ = select.select([process.stdout], [], [], 20)
            assert ready and process.stdout.readline().startswith(b"ready")

        listen(outside, "198.51.100.2", "8000", "outside")
        listen(host, "127.0.0.1", "7001", "host loopback")
        listen(host, "198.51.100.1", "7002", "host address")
        subprocess.run(
            ["ip", "netns", "exec", host, sys.executable, "-c",
             "from webapps.node.sandbox import enable_egress; enable_egress()"],
            check=True, timeout=30, cwd=sandbox.CODE_ROOT,
        )  # fmt: skip
        home = tmp_path / "home"
        home.mkdir()
        yield isolation, host, home
    finally:
        for process in processes:
            process.kill()
            process.wait(10)
            process.stdout.close()
        subprocess.run(["ip", "netns", "del", outside], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", host], capture_output=True, timeout=10)


TARGETS = {
    "outside": ("198.51.100.2", 8000),
    "host loopback": ("127.0.0.1", 7001),
    "host address": ("198.51.100.1", 7002),
}


def probe(network, egress: bool) -> dict:
    isolation, host, home = network
    code = PROBE % json.dumps(TARGETS)
    prefix = ("ip", "netns", "exec", host)
    return harness.run_in_sandbox(isolation, code, home, 52021, egress=egress, prefix=prefix)


def test_with_egress_on_the_app_reaches_the_outside_but_nothing_on_the_node_host(network):
    assert probe(network, egress=True) == {
        "outside": "outside",
        "host loopback": "failed: ConnectionRefusedError",  # its own loopback: nothing there
        "host address": "failed: TimeoutError",  # dropped by the node's rules
    }


def test_with_egress_off_the_app_reaches_nothing(network):
    result = probe(network, egress=False)
    assert result["outside"].startswith("failed")
    assert result["host loopback"].startswith("failed")
    assert result["host address"].startswith("failed")


@pytest.mark.parametrize(
    ("module", "also"),
    [
        ("webapps.node.sandbox", ["webapps.node.launcher"]),
        ("webapps.node.cgroups", []),
        ("webapps.node.launcher", []),
    ],
)
def test_the_sandbox_modules_import_neither_django_nor_the_rest_of_webapps(module, also):
    code = (
        f"import sys; sys.path.insert(0, {str(sandbox.CODE_ROOT)!r}); import {module}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'webapps')))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == str(sorted(["webapps", "webapps.node", module, *also]))


def test_the_launcher_imports_none_of_the_costly_modules():
    # It runs on every cold start of a sandboxed app: what it imports is paid each time.
    launch = sandbox.launch(spec(), ["app"], {}, isolation=AVAILABLE)
    bootstrap = launch.argv[-1].replace("main()", "print(sorted(sys.modules))")
    result = subprocess.run(
        [*launch.argv[:-1], bootstrap], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(ast.literal_eval(result.stdout))
    costly = {"json", "re", "enum", "subprocess", "dataclasses", "pathlib", "ipaddress", "site"}
    assert loaded & costly == set()
    assert "webapps.node.launcher" in loaded


def test_the_launcher_configuration_survives_any_text_and_names_a_bad_one():
    fields = ["", "a:b", "12:x", "é\n=", "LD_PRELOAD=/x", "9" * 30]
    assert launcher.decode(launcher.encode(fields)) == fields
    with pytest.raises(ValueError, match="NUL"):
        launcher.encode(["a\0b"])
    with pytest.raises(ValueError, match="truncated"):
        launcher.decode("5:abc")
    with pytest.raises(ValueError, match="malformed at offset 3"):
        launcher.decode("1:ax:")


def test_the_launcher_reads_the_child_pid_only_once_bwrap_wrote_it_whole():
    assert launcher.child_pid_of(b'{\n    "child-pid": 4321\n}\n') == 4321
    assert launcher.child_pid_of(b'{"child-pid": 43') is None  # more digits may follow
    assert launcher.child_pid_of(b'{"child-pid"') is None
    assert launcher.child_pid_of(b'{"other": 1}') is None


def test_the_launcher_gets_bwraps_options_and_the_app_environment_only_inside_its_config():
    box = spec(egress=True, cgroups=("/sys/fs/cgroup/x",), keep_fds=(5,))
    launch = sandbox.launch(box, ["app", "--x"], {"LD_PRELOAD": "/evil.so"}, isolation=AVAILABLE)
    assert list(launch.env) == [sandbox.CONFIG_ENV]
    assert "LD_PRELOAD" not in " ".join(launch.argv)
    config = launcher.parse_fields(launcher.decode(launch.env[sandbox.CONFIG_ENV]))
    assert config["cgroups"] == ["/sys/fs/cgroup/x"] and config["keep_fds"] == [5]
    assert (config["uid"], config["slots"]) == (box.uid, 2**14)
    options = config["options"]
    assert options[options.index("--setenv") + 1 : options.index("--setenv") + 3] == [
        "LD_PRELOAD",
        "/evil.so",
    ]
    assert config["command"][0] == "--" and config["command"][-2:] == ["app", "--x"]
