"""canonical_host, route_key and reload_path: tables of spellings, rejects and reload paths."""

import pytest

from routing import InvalidHost, canonical_host, reload_path, route_key
from routing.hosts import reload_domain

PANEL = "panel.localhost"

SPELLINGS = [
    ("example.com", "example.com"),
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("example.com:8080", "example.com"),
    ("EXAMPLE.com.:443", "example.com"),
    ("IronHand.example.com", "ironhand.example.com"),
    ("BÜCHER.example", "xn--bcher-kva.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ("bücher.example.:8080", "xn--bcher-kva.example"),
    ("".join(chr(ord(c) + 0xFEE0) for c in "example.com"), "example.com"),  # full width
    ("bücher。example", "xn--bcher-kva.example"),
    ("faß.de", "xn--fa-hia.de"),
    ("r3---sn-abc.example", "r3---sn-abc.example"),
    ("localhost", "localhost"),
    ("127.0.0.1", "127.0.0.1"),
    ("127.0.0.1:9001", "127.0.0.1"),
    ("[::1]", "[::1]"),
    ("[::1]:8080", "[::1]"),
    ("[0:0:0:0:0:0:0:1]", "[::1]"),
    ("[2001:DB8::1]:443", "[2001:db8::1]"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
]

REJECTS = [
    ("", "empty"),
    (".", "empty"),
    ("example.com..", "empty label"),
    ("a..b", "empty label"),
    (".example.com", "empty label"),
    ("a" * 64 + ".com", "64 octets"),
    (".".join(["a" * 63] * 4), "255 octets"),
    ("x" * 2000, "2000 characters"),
    ("exa mple.com", "whitespace"),
    ("example.com\t", "whitespace"),
    ("exa\u3000mple.com", "whitespace"),
    ("exa\x00mple.com", "control character U+0000"),
    ("exa\x7fmple.com", "control character U+007F"),
    ("exa\x85mple.com", "whitespace"),
    ("exa/mple.com", "'/'"),
    ("exa\\mple.com", "'\\'"),
    ("user@example.com", "'@'"),
    ("exa%41mple.com", "'%'"),
    ("example.com?x", "'?'"),
    ("example.com#x", "'#'"),
    ("foo_bar.com", "'_'"),
    ("-example.com", "starts or ends with '-'"),
    ("example-.com", "starts or ends with '-'"),
    ("exa\u200bmple.com", "invisible character U+200B"),
    ("exa\u00admple.com", "invisible character U+00AD"),
    ("exa\u2060mple.com", "invisible character U+2060"),
    ("exa\ufe0fmple.com", "invisible character U+FE0F"),
    ("exa\ufeffmple.com", "invisible character U+FEFF"),
    ("example.com:", "empty port"),
    ("example.com:http", "'http' is not a number"),
    ("example.com:-1", "'-1' is not a number"),
    ("example.com:0", "out of range"),
    ("example.com:65536", "out of range"),
    ("example.com:123456", "is not a number"),
    ("example.com:\uff18\uff10", "is not a number"),  # full-width 80
    ("example.com:80:80", "brackets"),
    ("::1", "brackets"),
    ("[::1", "without a closing"),
    ("[::1]x", "unexpected"),
    ("[::g]", "not an IPv6 address"),
    ("[127.0.0.1]", "not an IPv6 address"),
    ("127.1", "dotted-quad"),
    ("0x7f.0.0.1", "dotted-quad"),
    ("256.0.0.1", "dotted-quad"),
    ("example.123", "dotted-quad"),
    ("xn--zz.com", "punycode"),
    ("xn--.com", "punycode"),
    ("☃.net", "not a valid IDNA label"),
    ("xn--n3h.net", "punycode"),
    ("a\u0301b\u2100.com", "U+2100"),
]


@pytest.mark.parametrize(("raw", "expected"), SPELLINGS)
def test_spellings_of_one_name_give_one_key(raw, expected):
    assert canonical_host(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), SPELLINGS)
def test_canonical_host_is_idempotent(raw, expected):
    assert canonical_host(canonical_host(raw)) == canonical_host(raw)


@pytest.mark.parametrize(("raw", "problem"), REJECTS)
def test_it_rejects_what_is_not_a_host_naming_the_problem(raw, problem):
    with pytest.raises(InvalidHost, match="invalid host") as caught:
        canonical_host(raw)
    assert problem in str(caught.value)


def test_invalid_host_is_a_value_error():
    assert issubclass(InvalidHost, ValueError)


def test_it_rejects_a_non_string():
    with pytest.raises(InvalidHost, match="expected a string, got bytes"):
        canonical_host(b"example.com")  # type: ignore[arg-type]


def test_a_zero_width_space_never_equals_the_plain_name():
    # UTS #46 alone would map this to "example.com"; a look-alike must not route as the original.
    with pytest.raises(InvalidHost):
        canonical_host("exa\u200bmple.com")


def test_reload_path_writes_the_canonical_domain():
    assert reload_path("Bob", "IronHand.Example.com.") == (
        "/user/Bob/webapps/ironhand.example.com/reload/"
    )


def test_reload_path_api_variant():
    assert reload_path("bob", "bücher.example", api=True) == (
        "/api/v0/user/bob/webapps/xn--bcher-kva.example/reload/"
    )


def test_reload_path_percent_encodes_the_username():
    assert reload_path("a b/c", "example.com") == "/user/a%20b%2Fc/webapps/example.com/reload/"


@pytest.mark.parametrize("username", ["", ".", ".."])
def test_reload_path_refuses_a_username_that_cannot_be_a_segment(username):
    with pytest.raises(ValueError, match="cannot be a segment"):
        reload_path(username, "example.com")


def test_reload_path_rejects_an_invalid_domain():
    with pytest.raises(InvalidHost, match="'/'"):
        reload_path("bob", "a/b")


@pytest.mark.parametrize("api", [False, True])
def test_a_reload_routes_like_the_apps_traffic(api):
    path = reload_path("IronHand", "IronHand.example.com", api=api)
    assert route_key(PANEL, path, PANEL) == route_key("IronHand.example.com", "/", PANEL)


def test_other_hosts_route_by_host_whatever_the_path():
    path = reload_path("bob", "other.example")
    assert route_key("App.Example:80", path, PANEL) == "app.example"


def test_the_panel_host_is_compared_canonically():
    path = reload_path("bob", "other.example")
    assert route_key("PANEL.localhost.:8080", path, "Panel.Localhost") == "other.example"


def test_panel_pages_that_are_not_reloads_route_by_the_panel_host():
    assert route_key(PANEL, "/user/bob/webapps/", PANEL) == PANEL


RELOAD_PATHS = [
    ("/user/bob/webapps/example.com/reload/", "example.com"),
    ("/user/bob/webapps/example.com/reload", "example.com"),
    ("/api/v0/user/bob/webapps/example.com/reload/", "example.com"),
    ("/api/v0/user/bob/webapps/example.com/reload", "example.com"),
    ("/user/bob/webapps/Example.COM/reload/?next=/x", "example.com"),
    ("/user/bob/webapps/example.com/reload/?", "example.com"),
    ("/user/bob/webapps/b%C3%BCcher.example/reload/", "xn--bcher-kva.example"),
    ("/user/bob/webapps/%65xample.com/reload/", "example.com"),
    ("/%75ser/bob/webapps/example.com/%72eload/", "example.com"),
    ("/user/bob/webapps/example.com/reload/#x", "example.com"),  # the server drops `#x`
    ("/user/bob/webapps/%5B::1%5D/reload/", "[::1]"),
]


@pytest.mark.parametrize(("path", "key"), RELOAD_PATHS)
def test_reload_paths_route_by_their_domain(path, key):
    assert route_key(PANEL, path, PANEL) == key


NOT_RELOAD_PATHS = [
    "/",
    "",
    "*",
    "/user/bob/webapps/example.com/",
    "/user/bob/webapps/example.com/reload/x/",
    "/user/bob/webapps/example.com/reload//",
    "//user/bob/webapps/example.com/reload/",
    "/user//webapps/example.com/reload/",
    "/user/bob//webapps/example.com/reload/",
    "/user/./webapps/example.com/reload/",
    "/user/../webapps/example.com/reload/",
    "/user/bob/webapps/./reload/",
    "/user/bob/webapps/../reload/",
    "/user/%2e%2e/webapps/example.com/reload/",
    "/user/bob/webapps/example.com/reload;x/",
    "/user/bob;x/webapps/example.com/reload/",
    "/user/bob/webapps/example.com;x/reload/",
    # The panel's server decodes once: it sees `;` here as in `bob;x`, so neither is a reload
    # (tests/webapps/test_reload_urls.py holds the router and the panel's URLs to one set).
    "/user/b%3Bo/webapps/example.com/reload/",
    "/user/bob/webapps/example.com/reload%3bx/",
    "/User/bob/webapps/example.com/reload/",
    "/api/v1/user/bob/webapps/example.com/reload/",
    "/x/user/bob/webapps/example.com/reload/",
    "user/bob/webapps/example.com/reload/",
    "/user/bob/webapps/a%2Fb/c/",
]


@pytest.mark.parametrize("path", NOT_RELOAD_PATHS)
def test_other_panel_paths_are_not_reload_paths(path):
    assert route_key(PANEL, path, PANEL) == PANEL


def test_the_domain_segment_is_decoded_exactly_once():
    # %2541 decodes once to "%41"; decoding twice would give "A" and a different key.
    with pytest.raises(InvalidHost, match="'%'"):
        route_key(PANEL, "/user/bob/webapps/ex%2541mple.com/reload/", PANEL)


ENCODED_SEPARATORS = [
    "/user/bob/webapps/a%2Fb/reload/",
    "/user/bob/webapps/a%2fb/reload/",
    "/user/bob/webapps/a%5Cb/reload/",
    "/user/bob/webapps/a%5cb/reload/",
    # Decoded once (as the panel's server does) these become reload paths:
    "/user%2Fbob/webapps/example.com/reload/",
    "/user/bob/webapps%2Fexample.com/reload/",
    "/user/bob/webapps/example.com%2Freload/",
]


@pytest.mark.parametrize("path", ENCODED_SEPARATORS)
def test_an_encoded_separator_in_a_reload_path_is_invalid(path):
    with pytest.raises(InvalidHost, match=r"encoded '/' or '\\'"):
        route_key(PANEL, path, PANEL)


def test_a_domain_that_is_not_utf8_once_decoded_is_invalid():
    with pytest.raises(InvalidHost, match="not UTF-8"):
        route_key(PANEL, "/user/bob/webapps/%FF.example/reload/", PANEL)


def test_a_lone_surrogate_in_a_reload_path_is_invalid_host_not_a_crash():
    with pytest.raises(InvalidHost, match="not UTF-8"):
        route_key(PANEL, "/user/bob/webapps/\ud800.example/reload/", PANEL)


def test_an_invalid_domain_in_a_reload_path_is_invalid():
    with pytest.raises(InvalidHost, match="invisible character"):
        route_key(PANEL, "/user/bob/webapps/exa%E2%80%8Bmple.com/reload/", PANEL)


def test_reload_domain_returns_the_decoded_segment():
    assert reload_domain("/user/bob/webapps/B%C3%BCcher.example/reload/") == "Bücher.example"


def test_reload_domain_does_not_parse_an_overlong_path():
    assert reload_domain("/user/" + "b" * 9000 + "/webapps/example.com/reload/") is None
