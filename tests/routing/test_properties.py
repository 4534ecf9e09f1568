"""Property tests: every spelling of a domain routes like its reload URL; the table is
deterministic, weighted by identity and minimally disruptive."""

from __future__ import annotations

import re

import idna
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from routing import (
    ALGORITHM,
    Backend,
    InvalidHost,
    RouteTable,
    canonical_host,
    reload_path,
    route_key,
)
from routing.table import score

PANEL = "panel.localhost"
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

ASCII = "abcdefghijklmnopqrstuvwxyz0123456789"
# Letters that IDNA 2008 allows (no right-to-left scripts, no characters needing context).
UNICODE = "üöäßéèçñøåæœжщяпримерλπσς中文字例えテスト한국ğış"
CANONICAL_FORM = re.compile(
    r"(?:(?:[a-z0-9-]{1,63})(?:\.[a-z0-9-]{1,63})*)|(?:\d{1,3}(?:\.\d{1,3}){3})|\[[0-9a-f:.]+\]"
)


def _label_ok(label: str) -> bool:
    return not (label.startswith("-") or label.endswith("-") or label[2:4] == "--")


labels = st.text(alphabet=ASCII + UNICODE + "-", min_size=1, max_size=16).filter(_label_ok)
tlds = st.text(alphabet="abcdefghijklmnopqrstuvwxyz" + UNICODE, min_size=2, max_size=8)


@st.composite
def domains(draw) -> str:
    """A valid domain, in the spelling the generator happened to write."""
    name = ".".join([*draw(st.lists(labels, min_size=1, max_size=4)), draw(tlds)])
    try:
        canonical_host(name)
    except InvalidHost:
        assume(False)
    return name


def _upper_keeps_the_name(char: str) -> bool:
    upper = char.upper()
    if len(upper) != 1 or upper == char:
        return False
    return idna.uts46_remap(upper, std3_rules=True, transitional=False) == char


@st.composite
def spellings(draw, domain: str) -> str:
    """Another spelling of ``domain``: case, Unicode or punycode, full width, dots, a port."""
    out = []
    for label in canonical_host(domain).split("."):
        if label.startswith("xn--") and draw(st.booleans()):
            label = idna.ulabel(label)
        case_mask = draw(st.integers(0, 2 ** len(label) - 1))
        width_mask = draw(st.integers(0, 2 ** len(label) - 1))
        chars = []
        for i, char in enumerate(label):
            if case_mask >> i & 1 and _upper_keeps_the_name(char):
                char = char.upper()
            if width_mask >> i & 1 and char.isascii() and char.isalnum():
                char = chr(ord(char) + 0xFEE0)  # the full-width form, which IDNA maps back
            chars.append(char)
        out.append("".join(chars))
    separators = st.sampled_from([".", ".", ".", "\u3002", "\uff0e"])
    host = out[0]
    for label in out[1:]:
        host += draw(separators) + label
    if draw(st.booleans()):
        host += draw(separators)
    if draw(st.booleans()):
        host += f":{draw(st.integers(1, 65535))}"
    return host


@st.composite
def domain_and_spelling(draw) -> tuple[str, str]:
    domain = draw(domains())
    return domain, draw(spellings(domain))


usernames = st.from_regex(r"[\w.@+-]{1,20}", fullmatch=True).filter(lambda u: u not in (".", ".."))


@SETTINGS
@given(domain_and_spelling(), usernames, st.booleans())
def test_every_spelling_routes_like_the_reload_url(pair, username, api):
    domain, spelling = pair
    assert route_key(spelling, "/", PANEL) == route_key(
        PANEL, reload_path(username, domain, api), PANEL
    )


@SETTINGS
@given(domain_and_spelling(), usernames, st.booleans())
def test_a_reload_url_built_from_any_spelling_routes_the_same(pair, username, api):
    domain, spelling = pair
    path = reload_path(username, spelling, api)
    assert route_key(PANEL, path, PANEL) == route_key(domain, "/", PANEL)


@SETTINGS
@given(domain_and_spelling())
def test_every_spelling_has_one_canonical_key(pair):
    domain, spelling = pair
    assert canonical_host(spelling) == canonical_host(domain)


@SETTINGS
@given(domain_and_spelling())
def test_canonicalisation_is_idempotent(pair):
    key = canonical_host(pair[1])
    assert canonical_host(key) == key


host_like = st.text(
    alphabet=ASCII + UNICODE + "-.:[]%/@ _\u200b\u00adABCÜ\uff0e\u3002", max_size=40
)


@SETTINGS
@given(st.one_of(st.text(st.characters(exclude_categories=[]), max_size=40), host_like))
def test_any_text_gives_a_canonical_key_or_invalid_host(raw):
    try:
        key = canonical_host(raw)
    except InvalidHost as exc:
        assert str(exc).startswith("invalid host")
        return
    assert CANONICAL_FORM.fullmatch(key), key
    assert len(key) <= 253
    assert canonical_host(key) == key


segment = st.one_of(
    st.sampled_from(["user", "api", "v0", "webapps", "reload", "", ".", "..", "%2F", "%2e", ";p"]),
    st.text(alphabet=ASCII + "%/;.?\\ü", max_size=8),
    st.text(st.characters(exclude_categories=[]), max_size=6),  # lone surrogates too
)


@SETTINGS
@given(st.lists(segment, max_size=9), st.booleans())
def test_any_panel_path_gives_a_key_or_invalid_host(segments, trailing):
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    try:
        key = route_key(PANEL, path, PANEL)
    except InvalidHost:
        return
    assert canonical_host(key) == key


# -- the table ---------------------------------------------------------------------------

KEYS = [f"k{i}.example" for i in range(300)]
names = st.text(alphabet=ASCII + "-_.ü", min_size=1, max_size=6)


@st.composite
def pools(draw, min_size: int = 1) -> list[Backend]:
    chosen = draw(st.lists(names, min_size=min_size, max_size=10, unique=True))
    return [
        Backend(name, f"10.0.0.1:{8000 + i}", draw(st.integers(1, 5)))
        for i, name in enumerate(chosen)
    ]


def table_of(backends) -> RouteTable:
    return RouteTable(1, ALGORITHM, tuple(backends))


def assign(backends) -> dict[str, str | None]:
    table = table_of(backends)
    return {k: (b.name if (b := table.backend_for(k)) else None) for k in KEYS}


def moved(before: dict, after: dict) -> set[str]:
    return {k for k in KEYS if before[k] != after[k]}


@SETTINGS
@given(pools(), names)
def test_adding_a_backend_moves_keys_only_to_it(backends, new):
    assume(new not in {b.name for b in backends})
    before = assign(backends)
    after = assign([*backends, Backend(new, "10.0.0.2:80")])
    assert all(after[k] == new for k in moved(before, after))


@SETTINGS
@given(pools(min_size=2), st.data())
def test_removing_a_backend_moves_only_its_keys(backends, data):
    gone = data.draw(st.sampled_from(backends))
    before = assign(backends)
    after = assign([b for b in backends if b is not gone])
    assert moved(before, after) == {k for k in KEYS if before[k] == gone.name}


@SETTINGS
@given(pools(min_size=2), st.data())
def test_draining_a_backend_moves_only_its_keys(backends, data):
    drained = data.draw(st.sampled_from(backends))
    before = assign(backends)
    after = assign(
        [Backend(b.name, b.address, b.weight, "draining") if b is drained else b for b in backends]
    )
    assert moved(before, after) == {k for k in KEYS if before[k] == drained.name}


@SETTINGS
@given(pools(min_size=2), st.data(), st.integers(1, 9))
def test_reweighting_moves_keys_only_to_or_from_that_backend(backends, data, weight):
    changed = data.draw(st.sampled_from(backends))
    before = assign(backends)
    after = assign([Backend(b.name, b.address, weight) if b is changed else b for b in backends])
    for key in moved(before, after):
        if weight > changed.weight:
            assert after[key] == changed.name
        else:
            assert before[key] == changed.name


@SETTINGS
@given(pools(), st.randoms(use_true_random=False))
def test_list_order_does_not_matter(backends, random):
    shuffled = list(backends)
    random.shuffle(shuffled)
    assert assign(backends) == assign(shuffled)


@SETTINGS
@given(pools(), st.text(st.characters(exclude_categories=("Cs",)), max_size=30))
def test_the_choice_and_ranking_follow_the_definition(backends, key):
    table = table_of(backends)
    expected = sorted(
        backends, key=lambda b: (tuple(-v for v in score(key, b.name, b.weight)), b.name)
    )
    assert table.ranking(key) == tuple(expected)
    assert table.backend_for(key) == expected[0]
    assert table.ranking(key, 2) == tuple(expected[:2])


@SETTINGS
@given(pools())
def test_json_round_trips(backends):
    table = table_of(backends)
    assert RouteTable.from_json(table.to_json()) == table
