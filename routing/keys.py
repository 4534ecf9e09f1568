"""Route-table signing keys: where the pair lives and which public keys a reader trusts.

On one machine the pair lives under ``VAR_DIR/keys/``: ``route-table.key`` (the private key,
PKCS#8 PEM, mode 0600, in a 0700 directory) and ``route-table.pub`` (the public key as one line,
``ed25519:<base64>``). Whichever process needs it first makes it (``load_or_create_signing_key``;
two processes racing get the same pair), and every publisher and reader on the machine finds it
there with no flag. Across machines every publisher is given the same private key file and every
reader the public key(s) by a flag or the ``ROUTES_TRUSTED_KEYS`` environment variable: a value
of one or two keys (``ed25519:...``) or files holding them, separated by commas or spaces. Two
keys are trusted at once while a key is rotated (docs/routing.md, "Rotating the signing key
without a gap").

    python -m routing.keys new DIR                 make a key pair in DIR
    python -m routing.keys show [--var-dir DIR | --key FILE] [--id]
                                                   print the public key to give to readers
                                                   (or its id, as in signature lines)

No Django, no Redis, no settings: callers pass ``VAR_DIR`` and the flag's or variable's value.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from routing.signing import MAX_TRUSTED_KEYS, key_id, parse_public_key, public_key_text

__all__ = [
    "KEY_DIR",
    "PRIVATE_NAME",
    "PUBLIC_NAME",
    "SIGNING_KEY_ENV",
    "TRUSTED_KEYS_ENV",
    "generate_pair",
    "load_or_create_signing_key",
    "load_signing_key",
    "parse_trusted_keys",
    "signing_key_from",
    "trusted_keys_from",
]

KEY_DIR = "keys"
PRIVATE_NAME = "route-table.key"
PUBLIC_NAME = "route-table.pub"
# Names for the flags' environment variables, so every process spells them alike.
TRUSTED_KEYS_ENV = "ROUTES_TRUSTED_KEYS"
SIGNING_KEY_ENV = "ROUTES_SIGNING_KEY_FILE"
MAX_KEY_FILE = 64 * 1024
_K = TypeVar("_K")

_SEPARATORS = re.compile(r"[\s,]+")


def key_dir(var_dir: str | os.PathLike[str]) -> Path:
    return Path(var_dir) / KEY_DIR


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all, failing with ``FileExistsError`` if it exists: the
    content goes to a temporary file that is then hard-linked into place (atomic, exclusive)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_key_file(path: Path) -> bytes:
    """The bytes of key file ``path``, refusing one larger than any key file can be."""
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise ValueError(f"{path} is over {MAX_KEY_FILE} bytes: not a key file")
    return data


def generate_pair(directory: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Make a new pair in ``directory`` (``route-table.key`` and ``route-table.pub``);
    ``FileExistsError`` if a private key is already there."""
    where = Path(directory)
    where.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    _write_new(where / PRIVATE_NAME, pem, 0o600)
    _write_public(where, key.public_key())
    return key


def _write_public(directory: Path, public: Ed25519PublicKey) -> None:
    with contextlib.suppress(FileExistsError):
        _write_new(directory / PUBLIC_NAME, (public_key_text(public) + "\n").encode(), 0o644)


def load_private_key_file(path: str | os.PathLike[str], kind: type[_K], what: str) -> _K:
    """The private key of class ``kind`` in unencrypted PEM file ``path`` (``what`` names it in
    messages, e.g. "signing key"); ``ValueError`` naming the problem."""
    where = Path(path)
    try:
        data = read_key_file(where)
    except FileNotFoundError:
        raise ValueError(f"no {what} at {where}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, kind):
        label = kind.__name__.removesuffix("PrivateKey")
        raise ValueError(f"{where} holds a {type(key).__name__}, not an {label} key")
    return key


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file ``path``; ``ValueError`` naming the problem."""
    return load_private_key_file(path, Ed25519PrivateKey, "signing key")


def load_or_create_signing_key(var_dir: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The machine's pair under ``VAR_DIR/keys/``, made on first use.

    ``ValueError`` when the public key file beside it is not the private key's (someone replaced
    one of the two): readers would refuse every table, so the publisher refuses to start.
    """
    directory = key_dir(var_dir)
    path = directory / PRIVATE_NAME
    if not path.exists():
        try:
            return generate_pair(directory)
        except FileExistsError:
            pass  # another process made it first: use theirs
    key = load_signing_key(path)
    public = directory / PUBLIC_NAME
    if not public.exists():
        _write_public(directory, key.public_key())
    written = parse_trusted_keys(str(public))
    if [key_id(k) for k in written] != [key_id(key.public_key())]:
        raise ValueError(
            f"{public} does not hold the public key of {path} "
            f"(key {key_id(key.public_key())}); put {public_key_text(key.public_key())} there"
        )
    return key


def signing_key_from(var_dir: str | os.PathLike[str], path_value: str | None) -> Ed25519PrivateKey:
    """The publisher's key: the file named by a flag or ``ROUTES_SIGNING_KEY_FILE`` when given
    (across machines), else the machine's pair under ``VAR_DIR`` (made on first use)."""
    if path_value and path_value.strip():
        return load_signing_key(path_value.strip())
    return load_or_create_signing_key(var_dir)


def parse_trusted_keys(value: str) -> tuple[Ed25519PublicKey, ...]:
    """The keys in ``value``: ``ed25519:...`` keys or paths of files holding them (one a line,
    ``#`` comments), separated by commas or white space. ``ValueError`` unless one or two
    distinct keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for item in _SEPARATORS.split(value.strip()):
        if not item:
            continue
        if item.startswith("ed25519:"):
            found = [parse_public_key(item)]
        else:
            try:
                text = read_key_file(Path(item)).decode("utf-8")
            except FileNotFoundError:
                raise ValueError(
                    f"trusted key {item!r} is neither 'ed25519:<base64>' nor a file"
                ) from None
            except UnicodeDecodeError:
                raise ValueError(f"{item} is not a text file of public keys") from None
            lines = [ln.strip() for ln in text.splitlines()]
            try:
                found = [parse_public_key(ln) for ln in lines if ln and not ln.startswith("#")]
            except ValueError as exc:
                raise ValueError(f"{item}: {exc}") from None
            if not found:
                raise ValueError(f"{item} holds no public key")
        for key in found:
            keys[key_id(key)] = key
    if not keys:
        raise ValueError("no trusted key given")
    if len(keys) > MAX_TRUSTED_KEYS:
        raise ValueError(
            f"{len(keys)} trusted keys ({', '.join(keys)}): give one, or two while rotating"
        )
    return tuple(keys.values())


def trusted_keys_from(
    var_dir: str | os.PathLike[str] | None, env_value: str | None
) -> tuple[Ed25519PublicKey, ...]:
    """The public keys a reader trusts: those in ``env_value`` (a flag or
    ``ROUTES_TRUSTED_KEYS``) when it is not empty, else the machine's under ``VAR_DIR/keys/``
    (the pair is made there on first use, so a reader may start before the publisher)."""
    if env_value and env_value.strip():
        return parse_trusted_keys(env_value)
    if var_dir is None:
        raise ValueError(f"no trusted route-table key: set {TRUSTED_KEYS_ENV} or give a VAR_DIR")
    public = key_dir(var_dir) / PUBLIC_NAME
    if public.exists():
        return parse_trusted_keys(str(public))
    return (load_or_create_signing_key(var_dir).public_key(),)


def _default_var_dir() -> str:
    return os.environ.get("VAR_DIR") or "var"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m routing.keys",
        description="Make and show the Ed25519 key pair that signs route tables.",
        epilog=(
            f"Readers on other machines are given the public key by a flag or {TRUSTED_KEYS_ENV} "
            "(one key, or two separated by a comma while rotating); publishers on other "
            f"machines the private key file by a flag or {SIGNING_KEY_ENV}."
        ),
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    new = sub.add_parser("new", help=f"make a key pair in DIR ({PRIVATE_NAME}, {PUBLIC_NAME})")
    new.add_argument("dir", metavar="DIR", help="directory for the pair (made 0700 if missing)")
    show = sub.add_parser("show", help="print the public key of a pair")
    source = show.add_mutually_exclusive_group()
    source.add_argument(
        "--var-dir",
        default=None,
        help=f"the machine's pair under VAR_DIR/{KEY_DIR}/ (default: $VAR_DIR, else ./var)",
    )
    source.add_argument("--key", default=None, help="a private key file (PEM)")
    show.add_argument(
        "--id", action="store_true", help="print the key id (as in signature lines) instead"
    )
    args = parser.parse_args(argv)
    try:
        if args.verb == "new":
            key = generate_pair(args.dir)
            directory = Path(args.dir)
            private, public_file = directory / PRIVATE_NAME, directory / PUBLIC_NAME
            print(f"wrote {private} (keep it secret) and {public_file}")
            print(public_key_text(key.public_key()))
            return 0
        if args.key:
            publics: tuple[Ed25519PublicKey, ...] = (load_signing_key(args.key).public_key(),)
        else:
            directory = key_dir(args.var_dir or _default_var_dir())
            if (directory / PUBLIC_NAME).exists():
                publics = parse_trusted_keys(str(directory / PUBLIC_NAME))
            elif (directory / PRIVATE_NAME).exists():
                publics = (load_signing_key(directory / PRIVATE_NAME).public_key(),)
            else:
                print(
                    f"error: no key pair in {directory} (the first publisher or reader makes "
                    "one; or run: python -m routing.keys new DIR)",
                    file=sys.stderr,
                )
                return 1
        for public in publics:
            print(key_id(public) if args.id else public_key_text(public))
        return 0
    except FileExistsError as exc:
        print(f"error: {exc.filename or exc} exists: not overwriting a key", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
