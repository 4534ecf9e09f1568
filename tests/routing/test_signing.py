"""routing.signing: Ed25519 over the exact stored bytes, and what a signed reader refuses."""

from __future__ import annotations

import base64

import pytest

from routing.signing import (
    BAD_SIGNATURE,
    CONTEXT,
    UNSIGNED,
    SignatureRefused,
    frame,
    key_id,
    parse_public_key,
    public_key_text,
    sign,
    unframe,
    verify,
)
from tests.routing.support import FORGER, NEXT, PUBLISHER, make_table

DATA = make_table(7).to_json().encode()
PUBLIC = PUBLISHER.public_key()


def refusal(data: bytes, line: bytes | None, trusted=(PUBLIC,)) -> SignatureRefused:
    with pytest.raises(SignatureRefused) as caught:
        verify(data, line, trusted)
    return caught.value


def test_it_verifies_what_it_signed_and_names_the_signer():
    assert verify(DATA, sign(DATA, PUBLISHER), [PUBLIC]) == key_id(PUBLIC)


def test_the_signature_line_has_the_contract_shape():
    scheme, kid, signature = sign(DATA, PUBLISHER).decode("ascii").split(" ")
    assert scheme == "ed25519"
    assert kid == key_id(PUBLIC) and len(kid) == 16
    assert len(base64.b64decode(signature, validate=True)) == 64


def test_signing_is_deterministic():
    assert sign(DATA, PUBLISHER) == sign(DATA, PUBLISHER)


def test_a_single_changed_byte_is_refused():
    line = sign(DATA, PUBLISHER)
    tampered = DATA.replace(b"127.0.0.1:9100", b"127.0.0.1:9109")
    assert refusal(tampered, line).reason == BAD_SIGNATURE


def test_the_bytes_are_not_reserialised_before_verifying():
    # The same table written with other spacing is other bytes: the signature does not cover it.
    line = sign(DATA, PUBLISHER)
    assert refusal(DATA.replace(b'"version":7', b'"version": 7'), line).reason == BAD_SIGNATURE


def test_a_table_without_a_signature_is_refused_as_unsigned():
    assert refusal(DATA, None).reason == UNSIGNED


def test_a_table_signed_by_an_untrusted_key_is_refused_naming_both_keys():
    exc = refusal(DATA, sign(DATA, FORGER))
    assert exc.reason == BAD_SIGNATURE
    assert key_id(FORGER.public_key()) in str(exc)
    assert key_id(PUBLIC) in str(exc)


def test_a_forger_who_claims_a_trusted_key_id_is_refused():
    forged = sign(DATA, FORGER).split(b" ")
    line = b" ".join([forged[0], key_id(PUBLIC).encode(), forged[2]])
    exc = refusal(DATA, line)
    assert exc.reason == BAD_SIGNATURE
    assert "does not verify" in str(exc)


def test_the_context_is_part_of_the_signed_message():
    bare = PUBLISHER.sign(DATA)  # over the table alone, without CONTEXT
    line = f"ed25519 {key_id(PUBLIC)} {base64.b64encode(bare).decode()}".encode()
    assert refusal(DATA, line).reason == BAD_SIGNATURE
    assert CONTEXT == b"route-table-signature-v1\n"


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"ed25519",
        b"rsa 0123456789abcdef AAAA",
        b"ed25519  0123456789abcdef x",
        b"ed25519 0123456789ABCDEF " + b"A" * 86 + b"==",
        b"ed25519 0123456789abcdef " + b"A" * 88,
        b"ed25519 0123456789abcdef " + b"A" * 86 + b"== ",
        b"x" * 10_000,
    ],
)
def test_a_malformed_signature_line_is_refused(line):
    assert refusal(DATA, line).reason == BAD_SIGNATURE


def test_a_signature_in_non_canonical_base64_is_refused():
    scheme, kid, signature = sign(DATA, PUBLISHER).split(b" ")
    # The last character carries 2 unused bits; setting one keeps the decoded bytes the same.
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = signature[85]
    variant = bytes([alphabet[alphabet.index(last) ^ 1]])
    odd = signature[:85] + variant + b"=="
    assert base64.b64decode(odd) == base64.b64decode(signature)
    assert refusal(DATA, b" ".join([scheme, kid, odd])).reason == BAD_SIGNATURE


def test_either_of_two_trusted_keys_verifies():
    trusted = [PUBLIC, NEXT.public_key()]
    assert verify(DATA, sign(DATA, PUBLISHER), trusted) == key_id(PUBLIC)
    assert verify(DATA, sign(DATA, NEXT), trusted) == key_id(NEXT.public_key())


@pytest.mark.parametrize("count", [0, 3])
def test_it_trusts_one_or_two_keys_only(count):
    keys = [PUBLIC, NEXT.public_key(), FORGER.public_key()][:count]
    with pytest.raises(ValueError, match="trusted keys"):
        verify(DATA, sign(DATA, PUBLISHER), keys)


def test_a_public_key_round_trips_through_its_text():
    text = public_key_text(PUBLIC)
    assert text.startswith("ed25519:") and len(text) == len("ed25519:") + 44
    assert key_id(parse_public_key(text)) == key_id(PUBLIC)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("AAAA", "must start with"),
        ("ed25519:not base64!", "not base64"),
        ("ed25519:" + base64.b64encode(b"x" * 31).decode(), "31 bytes"),
    ],
)
def test_a_bad_public_key_is_refused_naming_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_public_key(text)


def test_a_framed_table_gives_back_the_exact_bytes_and_line():
    line = sign(DATA, PUBLISHER)
    assert unframe(frame(DATA, line)) == (DATA, line)


def test_a_plain_table_unframes_as_unsigned():
    assert unframe(DATA) == (DATA, None)
