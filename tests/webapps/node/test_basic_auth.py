"""``webapps.node.basic_auth``: the node checks the panel's PBKDF2 hashes without Django, in
constant time, and a visitor's second request costs no KDF run."""

from __future__ import annotations

import asyncio
import base64

from django.contrib.auth.hashers import PBKDF2PasswordHasher

from webapps.node import basic_auth


def _header(username: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{username}:{password}".encode())


def _verifier(password: str) -> str:
    hasher = PBKDF2PasswordHasher()
    # Few rounds: the format is the point here, not the cost.
    return hasher.encode(password, hasher.salt(), iterations=1000)


def test_it_accepts_what_djangos_hasher_made():
    verifier = _verifier("s3cret pass")
    assert basic_auth.verify(verifier, "staging", "staging", "s3cret pass")


def test_it_refuses_a_wrong_password_or_user_name():
    verifier = _verifier("s3cret pass")
    assert not basic_auth.verify(verifier, "staging", "staging", "s3cret pas")
    assert not basic_auth.verify(verifier, "Staging", "staging", "s3cret pass")


def test_it_refuses_a_verifier_of_another_kind():
    assert not basic_auth.verify("md5$salt$abc", "u", "u", "p")
    assert not basic_auth.verify("pbkdf2_sha256$999999999$salt$abc", "u", "u", "p")
    assert not basic_auth.verify("nonsense", "u", "u", "p")


def test_it_parses_basic_credentials_and_nothing_else():
    assert basic_auth.parse_basic(_header("u", "p:w")) == ("u", "p:w")
    assert basic_auth.parse_basic(b"Bearer abc") is None
    assert basic_auth.parse_basic(b"Basic !!!") is None
    assert basic_auth.parse_basic(b"Basic " + base64.b64encode(b"no-colon")) is None
    assert basic_auth.parse_basic(None) is None
    assert basic_auth.parse_basic(b"Basic " + b"A" * 5000) is None


def test_a_second_request_costs_no_kdf_run():
    guard = basic_auth.Guard()
    verifier = _verifier("pw")
    try:
        right, wrong = _header("u", "pw"), _header("u", "nope")
        assert guard.cached("u", verifier, right) is None
        assert asyncio.run(guard.check("u", verifier, right)) is True
        assert asyncio.run(guard.check("u", verifier, wrong)) is False
        assert guard.kdf_runs == 2
        assert guard.cached("u", verifier, right) is True
        assert guard.cached("u", verifier, wrong) is False
        assert asyncio.run(guard.check("u", verifier, right)) is True
        assert guard.kdf_runs == 2
        # A new password is a new verifier: nothing cached for it.
        assert guard.cached("u", _verifier("pw"), right) is None
    finally:
        guard.close()


def test_the_cache_is_bounded():
    guard = basic_auth.Guard(max_entries=3)
    verifier = _verifier("pw")
    try:
        for n in range(10):
            asyncio.run(guard.check("u", verifier, _header("u", f"guess{n}")))
        assert len(guard._outcomes) == 3
    finally:
        guard.close()


def test_no_credentials_are_refused_without_a_kdf_run():
    guard = basic_auth.Guard()
    try:
        assert guard.cached("u", _verifier("pw"), None) is False
        assert asyncio.run(guard.check("u", _verifier("pw"), b"Basic nonsense")) is False
        assert guard.kdf_runs == 0
    finally:
        guard.close()


def test_the_challenge_names_the_app():
    assert basic_auth.challenge('a"b.example') == (
        b"WWW-Authenticate",
        b'Basic realm="a\\"b.example", charset="UTF-8"',
    )
