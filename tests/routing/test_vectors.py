"""routing/vectors.json is current, and this implementation agrees with every vector in it."""

import json
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from routing import InvalidHost, InvalidTable, RouteTable, canonical_host, reload_path, route_key
from routing.make_vectors import PATH, render
from routing.signing import (
    SignatureRefused,
    key_id,
    parse_public_key,
    public_key_text,
    sign,
    verified_table,
)
from routing.subscriber import REFUSAL_REASONS
from routing.table import score
from routing.versions import next_version, supersedes

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


# --- the Redis contract: signed tables and versions -----------------------------------------

KEYS = {k["name"]: k for k in VECTORS["keys"]}


def public(name: str):
    return parse_public_key(KEYS[name]["public_key"])


@pytest.mark.parametrize("key", VECTORS["keys"], ids=lambda k: k["name"])
def test_key_vectors(key):
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key["private_seed_hex"]))
    assert public_key_text(private.public_key()) == key["public_key"]
    assert key_id(private.public_key()) == key["key_id"]


@pytest.mark.parametrize("case", VECTORS["signatures"], ids=lambda c: c["title"])
def test_signature_vectors(case):
    data = case["table"].encode("utf-8")
    line = case["signature"].encode("ascii") if case["signature"] is not None else None
    trusted = [public(name) for name in case["trusted"]]
    try:
        table, signer = verified_table(data, line, trusted)
    except SignatureRefused as exc:
        assert exc.reason == case["reason"]
        return
    except InvalidTable:
        assert case["reason"] == "malformed"
        return
    if supersedes(table.version, case["held"]):
        assert case["reason"] is None
        assert signer == case["signer"]
    else:
        assert case["reason"] == "lower"


@pytest.mark.parametrize(
    "case", [c for c in VECTORS["signatures"] if c["reason"] is None], ids=lambda c: c["title"]
)
def test_each_accepted_signature_is_what_the_signer_writes(case):
    # Ed25519 is deterministic: the same key and bytes give the same line in any implementation.
    name = next(k["name"] for k in VECTORS["keys"] if k["key_id"] == case["signer"])
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(KEYS[name]["private_seed_hex"]))
    assert sign(case["table"].encode("utf-8"), private).decode("ascii") == case["signature"]


def test_the_signature_vectors_cover_every_reason():
    reasons = {c["reason"] for c in VECTORS["signatures"]}
    assert reasons == {None, *REFUSAL_REASONS}


@pytest.mark.parametrize("case", VECTORS["versions"]["next"], ids=lambda c: f"{c['stored']}")
def test_next_version_vectors(case):
    assert next_version(case["stored"], datetime.fromisoformat(case["now"])) == case["next"]


@pytest.mark.parametrize("case", VECTORS["versions"]["accept"], ids=lambda c: f"{c['held']}")
def test_acceptance_vectors(case):
    assert supersedes(case["offered"], case["held"]) is case["take"]
