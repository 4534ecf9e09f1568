"""The one ``host:port`` parser and the pool's backend-name rule (routing/addresses.py)."""

import pytest

from routing.addresses import InvalidAddress, is_backend_name, parse_address


@pytest.mark.parametrize(
    ("raw", "host", "port", "bind_host"),
    [
        ("127.0.0.1:9001", "127.0.0.1", 9001, "127.0.0.1"),
        ("Node1.Example:80", "node1.example", 80, "node1.example"),
        ("[::1]:8080", "[::1]", 8080, "::1"),
        ("[0:0::1]:1", "[::1]", 1, "::1"),
        ("0.0.0.0:65535", "0.0.0.0", 65535, "0.0.0.0"),
    ],
)
def test_it_parses_host_and_port_with_the_host_canonical(raw, host, port, bind_host):
    address = parse_address(raw)
    assert (address.host, address.port, address.bind_host) == (host, port, bind_host)
    assert str(address) == f"{host}:{port}"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("h", "is not 'host:port'"),
        (":80", "is not 'host:port'"),
        ("h:0", "no port from 1 to 65535"),
        ("h:65536", "no port from 1 to 65535"),
        ("h:+80", "no port from 1 to 65535"),
        ("h:\u0663", "no port from 1 to 65535"),
        ("h:", "no port from 1 to 65535"),
        ("::1:80", "IPv6 host without brackets"),
        ("bad host:80", "invalid host"),
        ("a..b:80", "invalid host"),
        ("x" * 400 + ":80", "longer than"),
        (8080, "must be a 'host:port' string"),
    ],
)
def test_it_refuses_what_is_not_host_port_naming_the_problem(raw, problem):
    with pytest.raises(InvalidAddress, match=problem):
        parse_address(raw)


def test_an_invalid_address_is_a_value_error():
    assert issubclass(InvalidAddress, ValueError)


@pytest.mark.parametrize("name", ["b1", "b", "node-7", "a" * 63, "0"])
def test_it_accepts_dns_label_backend_names(name):
    assert is_backend_name(name)


@pytest.mark.parametrize("name", ["", "b1-", "-b1", "B1", "b_1", "a" * 64, "nœud", "b 1", None])
def test_it_refuses_other_backend_names(name):
    assert not is_backend_name(name)
