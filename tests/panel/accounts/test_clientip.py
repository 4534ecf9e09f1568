import pytest

from panel.accounts.clientip import client_address, parse_networks

TRUSTED = parse_networks(["127.0.0.1/32", "::1/128", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("forwarded_for", "remote", "expected"),
    [
        ("", "203.0.113.5", "203.0.113.5"),  # a direct client
        ("203.0.113.5", "127.0.0.1", "203.0.113.5"),  # through the proxy
        ("203.0.113.5, 10.0.0.2", "127.0.0.1", "203.0.113.5"),  # proxy, then node
        ("6.6.6.6, 203.0.113.5, 10.0.0.2", "127.0.0.1", "203.0.113.5"),  # forged entry left
        ("6.6.6.6", "203.0.113.5", "203.0.113.5"),  # an untrusted peer's header is ignored
        ("garbage, 203.0.113.5", "127.0.0.1", "203.0.113.5"),
        ("203.0.113.5, garbage", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),  # all local: the demo on one machine
        ("2001:db8::1", "::1", "2001:db8::1"),
        # a unix-socket peer (REMOTE_ADDR empty) is the local node, one of our own hops
        ("203.0.113.5", "", "203.0.113.5"),
        ("203.0.113.5, 127.0.0.1", "", "203.0.113.5"),
        ("6.6.6.6, 203.0.113.5, 127.0.0.1", "", "203.0.113.5"),
        ("127.0.0.2, 127.0.0.1", "", "127.0.0.2"),  # the demo: every hop is local
        ("", "", None),
    ],
)
def test_it_finds_the_client_behind_our_proxies(forwarded_for, remote, expected):
    assert client_address(forwarded_for, remote, TRUSTED) == expected
