"""routing/vectors.json is current, and this implementation agrees with every vector in it."""

import json

import pytest

from routing import InvalidHost, RouteTable, canonical_host, reload_path, route_key
from routing.make_vectors import PATH, render
from routing.table import score

VECTORS = json.loads(PATH.read_text(encoding="utf-8"))


def test_the_file_is_what_the_script_writes():
    assert PATH.read_text(encoding="utf-8") == render(), "run: python -m routing.make_vectors"


@pytest.mark.parametrize("case", VECTORS["canonical"], ids=lambda c: repr(c["input"]))
def test_canonical_vectors(case):
    assert canonical_host(case["input"]) == case["key"]


@pytest.mark.parametrize("case", VECTORS["rejected"], ids=lambda c: repr(c["input"]))
def test_rejected_vectors(case):
    with pytest.raises(InvalidHost):
        canonical_host(case["input"])


@pytest.mark.parametrize("case", VECTORS["reload_paths"], ids=lambda c: c["path"])
def test_reload_path_vectors(case):
    assert reload_path(case["username"], case["domain"], api=case["api"]) == case["path"]


@pytest.mark.parametrize("case", VECTORS["route_keys"], ids=lambda c: c["path"])
def test_route_key_vectors(case):
    if case["key"] is None:
        with pytest.raises(InvalidHost):
            route_key(case["host"], case["path"], case["panel_host"])
    else:
        assert route_key(case["host"], case["path"], case["panel_host"]) == case["key"]


@pytest.mark.parametrize("vector", VECTORS["tables"], ids=lambda v: v["title"])
def test_table_vectors(vector):
    table = RouteTable.from_json(json.dumps(vector["table"]))
    for case in vector["cases"]:
        assert canonical_host(case["host"]) == case["key"]
        chosen = table.backend_for(case["key"])
        assert (chosen.name if chosen else None) == case["backend"]
        assert [b.name for b in table.ranking(case["key"])] == case["ranking"]


@pytest.mark.parametrize("case", VECTORS["scores"], ids=lambda c: f"{c['key']}/{c['name']}")
def test_score_vectors(case):
    assert score(case["key"], case["name"], case["weight"]) == (case["score"], int(case["h"]))


def test_the_vectors_cover_every_backend_of_a_mixed_pool():
    mixed = next(v for v in VECTORS["tables"] if "mixed weights" in v["title"])
    assert {c["backend"] for c in mixed["cases"]} == set("abcdefgh")
