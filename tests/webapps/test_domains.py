import pytest

from webapps.domains import DomainError, DomainPolicy, clean_domain, display_domain

POLICY = DomainPolicy.build(
    "panel.localhost", "apps.localhost", ["localhost", "status.example.com"]
)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("IronHand.example.com", "ironhand.example.com"),
        ("ironhand.example.com.", "ironhand.example.com"),
        ("  www.Example.org ", "www.example.org"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ironhand.apps.localhost", "ironhand.apps.localhost"),
        ("api.IronHand.apps.localhost", "api.ironhand.apps.localhost"),
    ],
)
def test_it_stores_the_canonical_form(typed, stored):
    assert clean_domain(typed, "IronHand", POLICY) == stored


def test_it_shows_the_unicode_form():
    assert display_domain("xn--bcher-kva.example") == "bücher.example"


def test_it_shows_ascii_when_the_name_is_not_valid_idna():
    assert display_domain("xn--zz.example") == "xn--zz.example"


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "empty"),
        ("panel.localhost", "control panel"),
        ("PANEL.localhost.", "control panel"),
        ("x.panel.localhost", "under the control panel"),
        ("a.b.Panel.localhost", "under the control panel"),
        ("status.example.com", "reserved"),
        ("localhost", "reserved"),
        ("apps.localhost", "apps domain"),
        ("mallory.apps.localhost", "yours is ironhand.apps.localhost"),
        ("x.mallory.apps.localhost", "yours is ironhand.apps.localhost"),
        ("example.com:8080", "port"),
        ("[::1]", "port"),
        ("10.0.0.1", "IP address"),
        ("intranet", "two labels"),
        ("bad name.example", "not a valid domain"),
        ("a/b.example", "not a valid domain"),
        ("a%2eb.example", "not a valid domain"),
        ("x" * 64 + ".example", "not a valid domain"),
    ],
)
def test_it_refuses_a_domain_naming_the_problem(typed, problem):
    with pytest.raises(DomainError, match=problem):
        clean_domain(typed, "IronHand", POLICY)


def test_it_refuses_a_domain_that_is_not_a_string():
    with pytest.raises(DomainError, match="string"):
        clean_domain(42, "IronHand", POLICY)


def test_it_refuses_a_domain_above_the_panels_host():
    policy = DomainPolicy.build("panel.hosting.example", "apps.example", [])
    with pytest.raises(DomainError, match="above the control panel"):
        clean_domain("hosting.example", "IronHand", policy)
    assert clean_domain("other.example", "IronHand", policy) == "other.example"
