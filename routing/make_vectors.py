"""Write routing/vectors.json: golden vectors that any implementation of the routing core must
reproduce (canonical keys, reload paths, route keys, and the backend and ranking per key).

    python -m routing.make_vectors          # rewrite routing/vectors.json
    python -m routing.make_vectors --check  # exit 1 if the file differs from what this writes

The vectors are computed by this package; tests/routing/test_vectors.py checks that the file
matches. Changing the algorithm means changing ``ALGORITHM`` and regenerating this file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from xxhash import xxh3_64_intdigest

from routing.hosts import InvalidHost, canonical_host, reload_path, route_key
from routing.table import ALGORITHM, Backend, RouteTable, score

PATH = Path(__file__).with_name("vectors.json")
PANEL = "panel.localhost"

# Inputs in many spellings; each line is one name (or one rejected input).
CANONICAL = [
    "example.com",
    "Example.COM",
    "example.com.",
    "example.com:8080",
    "EXAMPLE.com.:443",
    "IronHand.example.com",
    "ironhand.example.com",
    "IRONHAND.EXAMPLE.COM.:80",
    "BÜCHER.example",
    "bücher.example",
    "xn--bcher-kva.example",
    "XN--BCHER-KVA.EXAMPLE.",
    "bücher。example",
    "\uff42\uff55\uff43\uff48\uff45\uff52.example",
    "faß.de",
    "FASS.de",
    "xn--fa-hia.de",
    "münchen.de:8443",
    "пример.рф",
    "例え.テスト",
    "r3---sn-abc.example",
    "a1-b2.c3",
    "localhost",
    "panel.localhost",
    "PANEL.Localhost.:8080",
    "127.0.0.1",
    "127.0.0.1:9001",
    "[::1]",
    "[::1]:8080",
    "[0:0:0:0:0:0:0:1]",
    "[2001:DB8::1]:443",
    "[::ffff:192.0.2.1]",
    "a" * 63 + ".example",
]

REJECTED = [
    "",
    ".",
    "a..b",
    ".example.com",
    "example.com..",
    "a" * 64 + ".example",
    ".".join(["a" * 63] * 4),
    "exa mple.com",
    "exa\tmple.com",
    "exa\x00mple.com",
    "exa/mple.com",
    "exa\\mple.com",
    "user@example.com",
    "exa%41mple.com",
    "example.com?x",
    "example.com#x",
    "foo_bar.example",
    "-example.com",
    "example-.com",
    "exa\u200bmple.com",
    "exa\u00admple.com",
    "exa\u2060mple.com",
    "exa\ufeffmple.com",
    "example.com:",
    "example.com:http",
    "example.com:0",
    "example.com:65536",
    "::1",
    "[::1",
    "[127.0.0.1]",
    "127.1",
    "0x7f.0.0.1",
    "example.123",
    "xn--zz.example",
    "☃.net",
]

ROUTE_PATHS = [
    ("IronHand.example.com", "/"),
    ("ironhand.example.com:8080", "/user/other/webapps/elsewhere.example/reload/"),
    (PANEL, "/"),
    (PANEL, "/user/bob/webapps/"),
    (PANEL, reload_path("IronHand", "IronHand.example.com")),
    (PANEL, reload_path("IronHand", "IronHand.example.com", api=True)),
    ("PANEL.localhost.:8080", "/user/IronHand/webapps/IronHand.example.com/reload"),
    (PANEL, "/user/bob/webapps/B%C3%BCcher.example/reload/?next=/"),
    (PANEL, "/%75ser/bob/webapps/example.com/reload/"),
    (PANEL, "/user/bob/webapps/example.com/reload;x/"),
    (PANEL, "//user/bob/webapps/example.com/reload/"),
    (PANEL, "/user/./webapps/example.com/reload/"),
    (PANEL, "/user/bob/webapps/a%2Fb/reload/"),
    (PANEL, "/user%2Fbob/webapps/example.com/reload/"),
    (PANEL, "/user/bob/webapps/ex%2541mple.com/reload/"),
]

POOLS: list[tuple[str, list[Backend]]] = [
    ("two equal backends", [Backend(f"b{i}", f"127.0.0.1:900{i}") for i in (1, 2)]),
    (
        "the demo pool: b1, b2 active, b3, b4 spare",
        [
            Backend("b1", "127.0.0.1:9001"),
            Backend("b2", "127.0.0.1:9002"),
            Backend("b3", "127.0.0.1:9003", 1, "disabled"),
            Backend("b4", "127.0.0.1:9004", 1, "draining"),
        ],
    ),
    (
        "eight backends, mixed weights, listed out of name order",
        [
            Backend(name, f"10.0.0.{i + 1}:8000", weight)
            for i, (name, weight) in enumerate(
                [("h", 1), ("c", 2), ("a", 1), ("g", 3), ("b", 1), ("f", 2), ("e", 1), ("d", 5)]
            )
        ],
    ),
    (
        "names with non-ASCII characters",
        [Backend("nœud-1", "[::1]:9001"), Backend("節點2", "[::1]:9002", 2)],
    ),
    ("no active backend", [Backend("b1", "127.0.0.1:9001", 1, "draining")]),
]

KEY_SPELLINGS = [
    "IronHand.example.com",
    "ironhand.example.com.:443",
    "BÜCHER.example",
    "xn--bcher-kva.example",
    "panel.localhost",
    "alice.apps.localhost",
    "Bob.Apps.Localhost:8080",
    "127.0.0.1",
    "[::1]:8080",
] + [f"app{i}.example.com" for i in range(24)]


def _canonical_vectors() -> list[dict[str, str]]:
    return [{"input": raw, "key": canonical_host(raw)} for raw in CANONICAL]


def _rejected_vectors() -> list[dict[str, str]]:
    out = []
    for raw in REJECTED:
        try:
            canonical_host(raw)
        except InvalidHost as exc:
            out.append({"input": raw, "error": str(exc)})
        else:
            raise AssertionError(f"{raw!r} was expected to be rejected")
    return out


def _route_vectors() -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []
    for host, path in ROUTE_PATHS:
        try:
            key: str | None = route_key(host, path, PANEL)
        except InvalidHost:
            key = None
        out.append({"host": host, "path": path, "panel_host": PANEL, "key": key})
    return out


def _reload_path_vectors() -> list[dict[str, Any]]:
    cases = [("IronHand", "IronHand.example.com"), ("bob", "BÜCHER.example."), ("a b", "[::1]")]
    return [
        {"username": u, "domain": d, "api": api, "path": reload_path(u, d, api=api)}
        for u, d in cases
        for api in (False, True)
    ]


def _table_vectors() -> list[dict[str, Any]]:
    out = []
    for version, (title, backends) in enumerate(POOLS, start=1):
        table = RouteTable(version, ALGORITHM, tuple(backends), "2026-01-01T00:00:00+00:00")
        cases = []
        for spelling in KEY_SPELLINGS:
            key = canonical_host(spelling)
            chosen = table.backend_for(key)
            cases.append(
                {
                    "host": spelling,
                    "key": key,
                    "backend": chosen.name if chosen else None,
                    "ranking": [b.name for b in table.ranking(key)],
                }
            )
        out.append({"title": title, "table": json.loads(table.to_json()), "cases": cases})
    return out


def _score_vectors() -> list[dict[str, Any]]:
    # The intermediate values of the definition, for debugging another implementation.
    # 64-bit integers are written as decimal strings: JSON numbers lose them in many parsers.
    out = []
    for key in ("example.com", "xn--bcher-kva.example", "panel.localhost"):
        for name, weight in (("b1", 1), ("b2", 3), ("節點2", 2)):
            s, h = score(key, name, weight)
            out.append(
                {
                    "key": key,
                    "name": name,
                    "weight": weight,
                    "seed": str(xxh3_64_intdigest(name.encode("utf-8"))),
                    "h": str(h),
                    "u": ((h >> 12) + 0.5) / 2**52,
                    "score": s,
                }
            )
    return out


def build() -> dict[str, Any]:
    return {
        "about": (
            "Golden vectors of the routing core. canonical: input -> key; rejected: inputs "
            "that must raise; route_keys: key is null where the request must be refused; "
            "tables: per table, each host's canonical key, chosen backend (null: none active) "
            "and full ranking; scores: intermediate values of the hash definition."
        ),
        "algorithm": ALGORITHM,
        "definition": {
            "seed": "xxh3_64(utf8(backend.name))",
            "h": "xxh3_64(utf8(key), seed)",
            "u": "((h >> 12) + 0.5) / 2**52",
            "score": "-weight / ln(u)",
            "order": "score desc, then h desc, then name asc (code points)",
            "eligible": "state == 'active'",
        },
        "canonical": _canonical_vectors(),
        "rejected": _rejected_vectors(),
        "reload_paths": _reload_path_vectors(),
        "route_keys": _route_vectors(),
        "tables": _table_vectors(),
        "scores": _score_vectors(),
    }


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m routing.make_vectors", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PATH.read_text(encoding="utf-8") if PATH.exists() else ""
        if current != text:
            print(f"{PATH} is out of date: run python -m routing.make_vectors", file=sys.stderr)
            return 1
        print(f"{PATH} is up to date")
        return 0
    PATH.write_text(text, encoding="utf-8")
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
