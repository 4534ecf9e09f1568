"""The front proxy's command line: every option from a flag or from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxy.server import OPTIONS, build_parser, parse_listen
from routing.publish import DEFAULT_PREFIX
from tests.support import child_env, repo_root


def test_help_documents_every_option_and_its_environment_variable():
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--help"],
        cwd=repo_root(), env=child_env(), capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    flat = " ".join(out.split())
    for opt in OPTIONS:
        assert opt.flag in flat and opt.env in flat, opt.flag


def test_the_environment_sets_defaults_and_a_flag_wins():
    parser = build_parser({"PROXY_WORKERS": "4", "REDIS_URL": "redis://r:1/0"})
    args = parser.parse_args([])
    assert (args.workers, args.redis) == (4, "redis://r:1/0")
    assert parser.parse_args(["--workers", "2"]).workers == 2


def test_the_proxy_specific_variable_wins_over_the_project_wide_one():
    parser = build_parser({"PROXY_PANEL_HOST": "a.test", "PANEL_HOST": "b.test"})
    assert parser.parse_args([]).panel_host == "a.test"


def test_listen_addresses_parse():
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    with pytest.raises(SystemExit):
        parse_listen("8080")


def test_listen_addresses_are_parsed_by_the_one_address_parser():
    assert parse_listen("LOCALHOST:8080") == ("localhost", 8080)
    for bad in (":8080", "127.0.0.1:0", "::1:8080"):
        with pytest.raises(SystemExit, match="error: address"):
            parse_listen(bad)


def test_the_redis_prefix_default_is_the_routing_librarys():
    assert build_parser({}).parse_args([]).redis_prefix == DEFAULT_PREFIX


@pytest.mark.parametrize("listen", ["0.0.0.0:18081", "[::]:18081", "10.1.2.3:18081"])
def test_it_refuses_an_admin_port_beyond_loopback_without_a_token(listen):
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "--admin-listen", listen],
        cwd=repo_root(), env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "beyond loopback, without a token: set PROXY_ADMIN_TOKEN" in result.stderr


def test_the_admin_port_listens_on_loopback_by_default():
    assert build_parser({}).parse_args([]).admin_listen == "127.0.0.1:8081"
