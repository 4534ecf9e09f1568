"""routing.keys: the key pair under VAR_DIR, the readers' trusted keys, the key command."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest

from routing.keys import (
    PRIVATE_NAME,
    PUBLIC_NAME,
    load_or_create_signing_key,
    load_signing_key,
    parse_trusted_keys,
    signing_key_from,
    trusted_keys_from,
)
from routing.signing import key_id, public_key_text
from tests.routing.support import FORGER, NEXT, PUBLISHER
from tests.support import child_env, repo_root


def ids(keys) -> list[str]:
    return [key_id(k if not hasattr(k, "public_key") else k.public_key()) for k in keys]


def keys_command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "routing.keys", *args],
        cwd=repo_root(),
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_pair_is_made_on_first_use_and_found_again(tmp_path):
    first = load_or_create_signing_key(tmp_path)
    again = load_or_create_signing_key(tmp_path)
    assert ids([first]) == ids([again])
    private = tmp_path / "keys" / PRIVATE_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(private.parent.stat().st_mode) == 0o700
    text = (tmp_path / "keys" / PUBLIC_NAME).read_text()
    assert text == public_key_text(first.public_key()) + "\n"


def test_processes_racing_to_make_the_pair_all_get_the_same_one(tmp_path):
    code = (
        "import sys; from routing.keys import load_or_create_signing_key as k; "
        "from routing.signing import key_id; print(key_id(k(sys.argv[1]).public_key()))"
    )
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=repo_root(),
            env=child_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    printed = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert printed == {key_id(load_signing_key(tmp_path / "keys" / PRIVATE_NAME).public_key())}


def test_a_reader_on_the_same_machine_trusts_the_publishers_key_with_no_flag(tmp_path):
    publisher = load_or_create_signing_key(tmp_path)
    assert ids(trusted_keys_from(tmp_path, None)) == ids([publisher])
    assert ids(trusted_keys_from(tmp_path, "  ")) == ids([publisher])


def test_a_reader_that_starts_first_makes_the_pair_the_publisher_then_uses(tmp_path):
    trusted = trusted_keys_from(tmp_path, "")
    assert ids(trusted) == ids([signing_key_from(tmp_path, None)])


def test_the_flag_or_variable_wins_over_var_dir(tmp_path):
    load_or_create_signing_key(tmp_path)
    value = public_key_text(NEXT.public_key())
    assert ids(trusted_keys_from(tmp_path, value)) == ids([NEXT])


def test_two_keys_are_trusted_at_once_for_a_rotation(tmp_path):
    value = f"{public_key_text(PUBLISHER.public_key())}, {public_key_text(NEXT.public_key())}"
    assert ids(parse_trusted_keys(value)) == ids([PUBLISHER, NEXT])


def test_a_trusted_key_may_be_given_as_a_file(tmp_path):
    path = tmp_path / "route-table.pub"
    path.write_text(f"# the current key\n{public_key_text(PUBLISHER.public_key())}\n")
    assert ids(parse_trusted_keys(str(path))) == ids([PUBLISHER])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "no trusted key"),
        ("/nonexistent/route-table.pub", "neither"),
        ("ed25519:AAAA", "3 bytes"),
        (
            ",".join(public_key_text(k.public_key()) for k in (PUBLISHER, NEXT, FORGER)),
            "3 trusted keys",
        ),
    ],
)
def test_bad_trusted_keys_are_refused_naming_the_problem(value, problem):
    with pytest.raises(ValueError, match=problem):
        parse_trusted_keys(value)


def test_a_reader_without_a_key_or_var_dir_is_refused():
    with pytest.raises(ValueError, match="ROUTES_TRUSTED_KEYS"):
        trusted_keys_from(None, None)


def test_a_public_key_file_that_does_not_match_the_private_key_is_refused(tmp_path):
    load_or_create_signing_key(tmp_path)
    (tmp_path / "keys" / PUBLIC_NAME).write_text(public_key_text(FORGER.public_key()) + "\n")
    with pytest.raises(ValueError, match="does not hold the public key"):
        load_or_create_signing_key(tmp_path)


def test_a_publisher_across_machines_loads_the_named_key_file(tmp_path):
    made = load_or_create_signing_key(tmp_path / "elsewhere")
    path = tmp_path / "elsewhere" / "keys" / PRIVATE_NAME
    assert ids([signing_key_from(tmp_path / "unused", str(path))]) == ids([made])
    assert not (tmp_path / "unused").exists()


def test_a_missing_or_wrong_key_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no signing key"):
        load_signing_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(ValueError, match="not an unencrypted PEM"):
        load_signing_key(tmp_path / "junk.key")


def test_the_command_has_help():
    result = keys_command("--help")
    assert result.returncode == 0
    assert "ROUTES_TRUSTED_KEYS" in result.stdout


def test_the_command_makes_a_pair_and_never_overwrites_it(tmp_path):
    made = keys_command("new", str(tmp_path / "pair"))
    assert made.returncode == 0, made.stderr
    key = load_signing_key(tmp_path / "pair" / PRIVATE_NAME)
    assert public_key_text(key.public_key()) in made.stdout
    again = keys_command("new", str(tmp_path / "pair"))
    assert again.returncode == 1
    assert "not overwriting" in again.stderr
    assert ids([load_signing_key(tmp_path / "pair" / PRIVATE_NAME)]) == ids([key])


def test_the_command_shows_the_machines_public_key(tmp_path):
    key = load_or_create_signing_key(tmp_path)
    by_dir = keys_command("show", "--var-dir", str(tmp_path))
    by_env = keys_command("show", env=child_env(VAR_DIR=str(tmp_path)))
    by_file = keys_command("show", "--key", str(tmp_path / "keys" / PRIVATE_NAME))
    for result in (by_dir, by_env, by_file):
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == public_key_text(key.public_key())


def test_the_command_shows_the_key_id_of_signature_lines(tmp_path):
    key = load_or_create_signing_key(tmp_path)
    result = keys_command("show", "--id", "--var-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == key_id(key.public_key())


def test_the_command_says_when_there_is_no_pair(tmp_path):
    result = keys_command("show", "--var-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no key pair" in result.stderr
