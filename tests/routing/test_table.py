"""RouteTable: JSON contract, strict validation, weighted rendezvous choice."""

import json
from collections import Counter

import pytest

from routing import ALGORITHM, Backend, RouteTable
from routing.table import InvalidTable, score

KEYS = [f"app{i}.example.com" for i in range(3000)]


def make_table(*backends: Backend, version: int = 1) -> RouteTable:
    return RouteTable(version, ALGORITHM, tuple(backends), "2026-01-01T00:00:00+00:00")


def pool(n: int, weight: int = 1) -> list[Backend]:
    return [Backend(f"b{i}", f"127.0.0.1:{9000 + i}", weight) for i in range(1, n + 1)]


def assignments(table: RouteTable) -> dict[str, str | None]:
    return {k: (b.name if (b := table.backend_for(k)) else None) for k in KEYS}


def test_to_json_has_the_redis_contract_shape():
    table = make_table(Backend("b1", "127.0.0.1:9001", 2, "draining"), version=7)
    assert json.loads(table.to_json()) == {
        "version": 7,
        "algorithm": ALGORITHM,
        "backends": [{"name": "b1", "address": "127.0.0.1:9001", "weight": 2, "state": "draining"}],
        "published_at": "2026-01-01T00:00:00+00:00",
    }


def test_from_json_reads_what_to_json_wrote():
    table = make_table(*pool(3), Backend("b9", "[::1]:9009", 5, "disabled"))
    assert RouteTable.from_json(table.to_json()) == table


def test_from_json_accepts_bytes_and_a_missing_published_at():
    data = json.dumps({"version": 1, "algorithm": ALGORITHM, "backends": []}).encode()
    assert RouteTable.from_json(data) == RouteTable(1, ALGORITHM, ())


def good_doc() -> dict:
    return json.loads(make_table(*pool(2)).to_json())


def with_backend(**fields) -> dict:
    doc = good_doc()
    doc["backends"][1].update(fields)
    return doc


def without(doc: dict, key: str) -> dict:
    doc.pop(key)
    return doc


def dumped(doc: object) -> str:
    return json.dumps(doc)


MALFORMED = [
    ("{", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    ("[]", "must be a JSON object, got array"),
    ('{"version": 1, "version": 2, "algorithm": "x", "backends": []}', "repeats the field"),
    (dumped({"version": 1, "algorithm": ALGORITHM}), "missing backends"),
    (dumped(without(good_doc(), "version")), "missing version"),
    (dumped({**good_doc(), "extra": 1}), "unknown field(s) extra"),
    (dumped({**good_doc(), "version": "1"}), "version must be an integer, got string"),
    (dumped({**good_doc(), "version": 1.0}), "version must be an integer, got number"),
    (dumped({**good_doc(), "version": True}), "version must be an integer, got boolean"),
    (dumped({**good_doc(), "version": -1}), "non-negative"),
    (dumped({**good_doc(), "algorithm": "ketama"}), "unknown algorithm 'ketama'"),
    (dumped({**good_doc(), "algorithm": 1}), "algorithm must be a string"),
    (dumped({**good_doc(), "backends": {}}), "backends must be a list, got object"),
    (dumped({**good_doc(), "published_at": 5}), "published_at must be"),
    (dumped({**good_doc(), "published_at": "yesterday"}), "not an ISO 8601"),
    (dumped({**good_doc(), "published_at": "2026-01-01T00:00:00"}), "no time zone"),
    (dumped({**good_doc(), "backends": ["b1"]}), "backends[0] must be an object, got string"),
    (dumped(with_backend(name="b1")), "duplicate backend name 'b1'"),
    (dumped(with_backend(name="")), "backends[1]: backend name ''"),
    (dumped(with_backend(name="b 2")), "without whitespace"),
    (dumped(with_backend(name=2)), "backends[1].name must be a string, got integer"),
    (dumped(with_backend(weight=0)), "weight 0 must be an integer from 1"),
    (dumped(with_backend(weight=-3)), "weight -3"),
    (dumped(with_backend(weight=1.5)), "backends[1].weight must be an integer, got number"),
    (dumped(with_backend(weight="2")), "backends[1].weight must be an integer, got string"),
    (dumped(with_backend(weight=None)), "got null"),
    (dumped(with_backend(state="up")), "state 'up' must be one of active, draining, disabled"),
    (dumped(with_backend(address="127.0.0.1")), "is not 'host:port'"),
    (dumped(with_backend(address=":9001")), "is not 'host:port'"),
    (dumped(with_backend(address="127.0.0.1:")), "no port from 1 to 65535"),
    (dumped(with_backend(address="127.0.0.1:99999")), "no port from 1 to 65535"),
    (dumped(with_backend(address="host:port")), "no port from 1 to 65535"),
    (dumped(with_backend(address="a/b:80")), "'/'"),
    (dumped(with_backend(address="::1:80")), "brackets"),
    (dumped(with_backend(address=9001)), "backends[1].address must be a string"),
    (dumped(with_backend(colour="red")), "backends[1] has unknown field(s) colour"),
    ('{"version": NaN, "algorithm": "x", "backends": []}', "NaN"),
]


@pytest.mark.parametrize(("data", "problem"), MALFORMED)
def test_from_json_rejects_malformed_input_precisely(data, problem):
    with pytest.raises(InvalidTable) as caught:
        RouteTable.from_json(data)
    assert problem in str(caught.value)


def test_from_json_rejects_more_than_100000_backends():
    backend = {"name": "b", "address": "h:1", "weight": 1, "state": "active"}
    doc = {"version": 1, "algorithm": ALGORITHM, "backends": [backend] * 100_001}
    with pytest.raises(InvalidTable, match="100001 backends"):
        RouteTable.from_json(json.dumps(doc))


def test_it_accepts_100000_backends():
    doc = {
        "version": 1,
        "algorithm": ALGORITHM,
        "backends": [
            {"name": f"b{i}", "address": "h:1", "weight": 1, "state": "active"}
            for i in range(100_000)
        ],
    }
    assert len(RouteTable.from_json(json.dumps(doc)).active) == 100_000


def test_invalid_table_is_a_value_error():
    assert issubclass(InvalidTable, ValueError)


def test_backends_are_frozen():
    backend = Backend("b1", "127.0.0.1:9001")
    with pytest.raises(AttributeError):
        backend.weight = 2  # type: ignore[misc]


def test_no_active_backend_means_no_choice():
    table = make_table(Backend("b1", "h:1", 1, "draining"), Backend("b2", "h:2", 1, "disabled"))
    assert table.backend_for("example.com") is None
    assert table.ranking("example.com") == ()


def test_only_active_backends_receive_keys():
    table = make_table(
        *pool(3), Backend("d", "h:1", 1, "draining"), Backend("x", "h:2", 9, "disabled")
    )
    assert set(assignments(table).values()) == {"b1", "b2", "b3"}


def test_ranking_lists_every_active_backend_once_best_first():
    table = make_table(*pool(5), Backend("d", "h:1", 1, "draining"))
    for key in KEYS[:200]:
        ranking = table.ranking(key)
        assert sorted(b.name for b in ranking) == ["b1", "b2", "b3", "b4", "b5"]
        assert ranking[0] == table.backend_for(key)


def test_ranking_follows_the_documented_score():
    backends = [*pool(4), Backend("w3", "h:1", 3), Backend("w7", "h:2", 7)]
    table = make_table(*backends)
    for key in KEYS[:300]:
        expected = sorted(
            backends, key=lambda b: (tuple(-v for v in score(key, b.name, b.weight)), b.name)
        )
        assert table.ranking(key) == tuple(expected)


@pytest.mark.parametrize("limit", [0, 1, 3, 8, 9, 50])
def test_a_limited_ranking_is_the_start_of_the_full_one(limit):
    table = make_table(*pool(5), Backend("w3", "h:1", 3), Backend("w2", "h:2", 2))
    for key in KEYS[:100]:
        assert table.ranking(key, limit) == table.ranking(key)[:limit]


def test_a_limited_ranking_of_one_weight_is_the_start_of_the_full_one():
    table = make_table(*pool(12))
    for key in KEYS[:100]:
        assert table.ranking(key, 4) == table.ranking(key)[:4]


def test_the_ranking_memo_is_bounded(monkeypatch):
    monkeypatch.setattr("routing.table.RANKING_MEMO_ENTRIES", 40)
    table = make_table(*pool(10))
    for key in KEYS[:50]:
        table.ranking(key)
        table.ranking(key, 2)
    assert sum(len(r) for r in table._ranking_memo.values()) <= 2 * 40


def test_the_choice_is_the_first_of_the_ranking_for_mixed_weights():
    table = make_table(*pool(6), Backend("big", "h:1", 4), Backend("mid", "h:2", 2))
    for key in KEYS:
        assert table.backend_for(key) == table.ranking(key)[0]


def test_the_choice_depends_on_names_not_list_order():
    backends = [*pool(7), Backend("heavy", "h:1", 3)]
    forward = make_table(*backends)
    backward = make_table(*reversed(backends))
    assert assignments(forward) == assignments(backward)


def test_the_choice_does_not_depend_on_addresses():
    moved = [Backend(b.name, "10.0.0.1:80", b.weight) for b in pool(5)]
    assert assignments(make_table(*pool(5))) == assignments(make_table(*moved))


def test_a_memo_hit_gives_the_same_backend():
    table = make_table(*pool(8))
    first = [table.backend_for(k) for k in KEYS[:500]]
    assert [table.backend_for(k) for k in KEYS[:500]] == first


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr("routing.table.MEMO_KEYS", 100)
    table = make_table(*pool(3))
    fresh = make_table(*pool(3))
    chosen = [table.backend_for(k) for k in KEYS[:1000]]
    assert len(table._memo) == 100
    assert chosen == [fresh.backend_for(k) for k in KEYS[:1000]]


def test_a_table_with_the_same_content_is_equal_whatever_its_memo_holds():
    table = make_table(*pool(3))
    table.backend_for("example.com")
    assert table == make_table(*pool(3))


def test_weights_shape_the_shares():
    table = make_table(Backend("light", "h:1", 1), Backend("heavy", "h:2", 3))
    counts = Counter(assignments(table).values())
    assert 0.70 < counts["heavy"] / len(KEYS) < 0.80


def test_adding_a_backend_moves_keys_only_to_it():
    before = assignments(make_table(*pool(5)))
    after = assignments(make_table(*pool(6)))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved and all(after[k] == "b6" for k in moved)


def test_removing_a_backend_moves_only_its_keys():
    backends = pool(6)
    before = assignments(make_table(*backends))
    after = assignments(make_table(*(b for b in backends if b.name != "b3")))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == "b3"}


def test_draining_a_backend_moves_only_its_keys():
    backends = pool(6)
    drained = [
        Backend(b.name, b.address, b.weight, "draining" if b.name == "b2" else "active")
        for b in backends
    ]
    before = assignments(make_table(*backends))
    after = assignments(make_table(*drained))
    assert {k for k in KEYS if before[k] != after[k]} == {k for k in KEYS if before[k] == "b2"}


def test_raising_a_weight_moves_keys_only_to_that_backend():
    backends = pool(6)
    heavier = [Backend(b.name, b.address, 3 if b.name == "b4" else 1) for b in backends]
    before = assignments(make_table(*backends))
    after = assignments(make_table(*heavier))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved and all(after[k] == "b4" for k in moved)


def test_direct_construction_is_validated_too():
    with pytest.raises(InvalidTable, match="duplicate backend name"):
        make_table(Backend("b1", "h:1"), Backend("b1", "h:2"))
