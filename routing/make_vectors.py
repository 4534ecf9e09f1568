"""Write routing/vectors.json: golden vectors that any implementation of the routing core must
reproduce (canonical keys, reload paths, route keys, and the backend and ranking per key), and
of the Redis contract's rules (signed tables that must be taken or refused, and versions).

    python -m routing.make_vectors          # rewrite routing/vectors.json
    python -m routing.make_vectors --check  # exit 1 if the file differs from what this writes

The vectors are computed by this package; tests/routing/test_vectors.py checks that the file
matches. Changing the algorithm means changing ``ALGORITHM`` and regenerating this file.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from xxhash import xxh3_64_intdigest

from routing.hosts import InvalidHost, canonical_host, reload_path, route_key
from routing.signing import (
    CONTEXT,
    SignatureRefused,
    key_id,
    public_key_text,
    sign,
    verified_table,
)
from routing.table import ALGORITHM, Backend, RouteTable, score
from routing.versions import MAX_VERSION, next_version, supersedes

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
    (PANEL, "/user/bob%3Bx/webapps/example.com/reload/"),
    (PANEL, "/user/bob/webapps/example.com/reload/#x"),
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


# Published test keys (seed = 32 bytes of one value): never use them for anything real.
KEY_SEEDS = {"current": 0x11, "next": 0x22, "stranger": 0x66}


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([KEY_SEEDS[name]]) * 32)


def _key_vectors() -> list[dict[str, str]]:
    out = []
    for name, seed in KEY_SEEDS.items():
        public = _key(name).public_key()
        out.append(
            {
                "name": name,
                "private_seed_hex": bytes([seed]).hex() * 32,
                "public_key": public_key_text(public),
                "key_id": key_id(public),
            }
        )
    return out


def _table_bytes(version: int, *backends: Backend) -> bytes:
    published = "2026-01-01T00:00:00+00:00"
    return RouteTable(version, ALGORITHM, backends, published).to_json().encode("utf-8")


def _line_with(line: bytes, *, kid: str | None = None, signature: bytes | None = None) -> bytes:
    scheme, old_kid, old_sig = line.split(b" ")
    new_kid = kid.encode("ascii") if kid is not None else old_kid
    new_sig = base64.b64encode(signature) if signature is not None else old_sig
    return b" ".join([scheme, new_kid, new_sig])


def _signature_vectors() -> list[dict[str, Any]]:
    """What a reader trusting ``trusted`` and holding version ``held`` does with a table and
    its signature line: take it (``reason`` null, ``signer`` the key id) or refuse it."""
    current, nxt, stranger = _key("current"), _key("next"), _key("stranger")
    demo = _table_bytes(7, Backend("b1", "127.0.0.1:9001"), Backend("b2", "127.0.0.1:9002"))
    uni = _table_bytes(8, Backend("nœud-1", "[::1]:9001"), Backend("節點2", "[::1]:9002", 2))
    other = _table_bytes(9, Backend("b1", "127.0.0.1:9001"))
    attacker = _table_bytes(MAX_VERSION, Backend("attacker", "203.0.113.66:80"))
    junk = b'{"version":10,"backends":[]}'
    good = sign(demo, current)
    scheme, kid, signature = good.split(b" ")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    odd = signature[:85] + bytes([alphabet[alphabet.index(signature[85]) ^ 1]]) + b"=="
    upper = key_id(current.public_key()).upper()
    one, two = ["current"], ["current", "next"]
    cases: list[tuple[str, bytes, bytes | None, list[str], int | None]] = [
        ("signed by the trusted key", demo, good, one, None),
        ("a newer table than the one held", other, sign(other, current), one, 7),
        ("non-ASCII backend names: the UTF-8 bytes are signed", uni, sign(uni, current), one, None),
        ("rotation: signed by the next key, both trusted", demo, sign(demo, nxt), two, None),
        ("rotation: signed by the current key, both trusted", other, sign(other, current), two, 8),
        ("no signature line", demo, None, one, None),
        ("one byte of the table changed", demo.replace(b"9002", b"9003"), good, one, None),
        ("the same table re-serialised with spaces", demo.replace(b'":', b'": '), good, one, None),
        ("a huge version and an attacker's backend, signed by a stranger", attacker,
         sign(attacker, stranger), one, None),
        ("a stranger's signature under the trusted key's id", attacker,
         _line_with(sign(attacker, stranger), kid=key_id(current.public_key())), one, None),
        ("the signature line of another table", attacker, good, one, None),
        ("signed without the context", demo, _line_with(good, signature=current.sign(demo)), one,
         None),
        ("signed by the next key, only the current trusted", demo, sign(demo, nxt), one, None),
        ("signature in non-canonical base64", demo, b" ".join([scheme, kid, odd]), one, None),
        ("an unknown scheme", demo, b"rsa" + good[len(b"ed25519"):], one, None),
        ("an upper-case key id", demo, _line_with(good, kid=upper), one, None),
        ("a truncated signature", demo, good[:-4], one, None),
        ("a trailing space", demo, good + b" ", one, None),
        ("validly signed, but not a table", junk, sign(junk, current), one, None),
        ("a replay: validly signed, older than the table held", demo, good, one, 9),
        ("validly signed, the version held (a confirmation, nothing to take)", demo, good, one, 7),
    ]  # fmt: skip
    keys = {name: _key(name).public_key() for name in KEY_SEEDS}
    out = []
    for title, data, line, trusted, held in cases:
        signer: str | None = None
        try:
            table, signer = verified_table(data, line, [keys[n] for n in trusted])
        except SignatureRefused as exc:
            reason: str | None = exc.reason
        except ValueError:
            reason = "malformed"
        else:
            reason = None if supersedes(table.version, held) else "lower"
        out.append(
            {
                "title": title,
                "table": data.decode("utf-8"),
                "signature": line.decode("ascii") if line is not None else None,
                "trusted": trusted,
                "held": held,
                "signer": signer if reason is None else None,
                "reason": reason,
            }
        )
    return out


def _version_vectors() -> dict[str, Any]:
    times = [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    stored = [0, 41, 1767225600_000000, 1772366400_123456, 1800000000_000000, MAX_VERSION - 1]
    return {
        "next": [
            {"stored": v, "now": t.isoformat(), "next": next_version(v, t)}
            for v in stored
            for t in times
        ],
        "accept": [
            {"held": held, "offered": offered, "take": supersedes(offered, held)}
            for held, offered in [
                (None, 0),
                (None, 1772366400_123456),
                (41, 1772366400_123456),
                (1772366400_123456, 1772366400_123457),
                (1772366400_123456, 1772366400_123456),
                (1772366400_123456, 41),
            ]
        ],
    }


def build() -> dict[str, Any]:
    return {
        "about": (
            "Golden vectors of the routing core. canonical: input -> key; rejected: inputs "
            "that must raise; route_keys: key is null where the request must be refused; "
            "tables: per table, each host's canonical key, chosen backend (null: none active) "
            "and full ranking; scores: intermediate values of the hash definition; keys, "
            "signatures: signed tables a reader trusting the named keys must take (reason null; "
            "signer is the key id) or refuse (reason), the table's bytes being the UTF-8 "
            "encoding of the string; versions: the next version after a stored one at a time, "
            "and which offered version a reader holding one takes."
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
        "signing": {
            "message": f"{CONTEXT.decode('ascii')!r} (ASCII, with its line feed) + table bytes",
            "line": "'ed25519 ' + key_id + ' ' + base64(Ed25519 signature of message), padded",
            "key_id": "first 16 hex digits (lower case) of sha256(raw 32-byte public key)",
            "public_key": "'ed25519:' + base64(raw 32-byte public key), padded",
            "take": "the line names a trusted key by its id and the signature verifies over "
            "exactly the bytes read; anything else is refused",
            "reasons": "unsigned: no line; bad_signature: anything else wrong with the line; "
            "malformed: signed but not a valid table; lower: a version not above the one held "
            "(for the version held itself, lower means: nothing to take)",
        },
        "keys": _key_vectors(),
        "signatures": _signature_vectors(),
        "versions": {
            "next": "max(stored + 1, microseconds since 1970-01-01T00:00:00Z of now)",
            "take": "held is null or offered > held",
            "max": MAX_VERSION,
            **_version_vectors(),
        },
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
