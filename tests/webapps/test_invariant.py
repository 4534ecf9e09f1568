"""The property the whole platform rests on: for every app and every spelling of its domain,
the reload URL the panel generates routes by the same key as the app's own traffic."""

from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from hypothesis import assume, given
from hypothesis import settings as settings_hypothesis
from hypothesis import strategies as st

from panel.accounts.models import User
from routing import route_key
from tests.conftest import CLI, make_user
from webapps import actions
from webapps.domains import DomainError, DomainPolicy, clean_domain, display_domain
from webapps.models import WebApp
from webapps.serializers import WebAppSerializer

pytestmark = pytest.mark.django_db

# (owner, domain as typed at creation, other spellings a visitor's browser may send)
APPS = [
    ("IronHand", "IronHand.example.com", ["ironhand.example.com", "IRONHAND.EXAMPLE.COM."]),
    ("IronHand", "bücher.example", ["BÜCHER.example", "xn--bcher-kva.example", "Bücher.Example."]),
    ("Zoë", "zoë.apps.localhost", ["ZOË.apps.localhost", "xn--zo-ija.apps.localhost"]),
    ("ops", "Shop.Ops.Example.org.", ["shop.ops.example.org", "SHOP.OPS.EXAMPLE.ORG:443"]),
]


def panel_urls(webapp) -> list[str]:
    """Every reload URL the panel hands out for an app: API fields and the Web tab's form."""
    data = WebAppSerializer(webapp, context={"route_table": None}).data
    return [data["reload_url"], data["api_reload_url"]]


@pytest.mark.parametrize(("username", "typed", "spellings"), APPS)
def test_the_reload_url_routes_like_the_apps_own_host(username, typed, spellings):
    user = make_user(username)
    webapp = actions.do_create_webapp(typed, actor=user, origin=CLI)
    panel = settings.PANEL_HOST
    for url in panel_urls(webapp):
        reload_key = route_key(panel, urlsplit(url).path, panel)
        for spelling in [typed, webapp.domain, webapp.domain_display, *spellings]:
            assert route_key(spelling, "/", panel) == reload_key, (spelling, url)


@pytest.mark.parametrize(("username", "typed", "spellings"), APPS)
def test_the_web_tab_reload_form_routes_like_the_apps_own_host(client, username, typed, spellings):
    user = make_user(username)
    webapp = actions.do_create_webapp(typed, actor=user, origin=CLI)
    client.force_login(user)
    html = client.get(f"/user/{quote(username)}/webapps/").content.decode()
    form_path = next(
        part.split('"')[0]
        for part in html.split('action="')[1:]
        if part.split('"')[0].endswith("/reload/")
    )
    panel = settings.PANEL_HOST
    for spelling in [typed, webapp.domain_display, *spellings]:
        assert route_key(spelling, "/", panel) == route_key(panel, form_path, panel)


@pytest.mark.parametrize(("username", "typed", "spellings"), APPS)
def test_every_spelling_in_a_reload_url_reaches_the_same_app(
    client, settings, username, typed, spellings
):
    settings.WEBAPPS_RELOADER = "tests.webapps.support.OkReloader"
    user = make_user(username)
    webapp = actions.do_create_webapp(typed, actor=user, origin=CLI)
    client.force_login(user)
    for spelling in [typed, webapp.domain_display, *spellings]:
        if ":" in spelling:
            continue  # a port belongs to a Host header, not to a path
        path = f"/user/{quote(username)}/webapps/{quote(spelling)}/reload/"
        body = client.post(path, HTTP_ACCEPT="application/json").json()
        assert body["ok"], (spelling, body)
        panel = settings.PANEL_HOST
        assert route_key(panel, path, panel) == route_key(spelling, "/", panel)
    assert webapp.reloads.count() == len(
        [s for s in [typed, webapp.domain_display, *spellings] if ":" not in s]
    )


# The same property over many generated domains, without the database: the URL the panel
# builds (the serializer's fields) for an app whose domain went through the panel's own rules.
label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789üöéñ", min_size=1, max_size=20)


def case_variants(typed: str, flips: list[bool]) -> str:
    chars = list(typed)
    for i, flip in enumerate(flips[: len(chars)]):
        if flip and chars[i].isascii():
            chars[i] = chars[i].swapcase()
    return "".join(chars)


@settings_hypothesis(max_examples=150, deadline=None)
@given(labels=st.lists(label, min_size=2, max_size=4), flips=st.lists(st.booleans(), max_size=80))
def test_generated_domains_keep_the_invariant(labels, flips):
    typed = ".".join(labels)
    policy = DomainPolicy.build("panel.localhost", "apps.localhost", [])
    try:
        domain = clean_domain(typed, "ironhand", policy)
    except DomainError:
        assume(False)
    webapp = WebApp(owner=User(username="IronHand"), domain=domain)
    webapp.last_reload = None  # unsaved: nothing to look up
    panel = "panel.localhost"
    spellings = [typed, domain, display_domain(domain), case_variants(typed, flips), typed + "."]
    for url in panel_urls(webapp):
        reload_key = route_key(panel, urlsplit(url).path, panel)
        for spelling in spellings:
            assert route_key(spelling, "/", panel) == reload_key
