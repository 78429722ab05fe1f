"""API keys: their text, the stored hash, and the ``stepline keys`` commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.cli import main
from app.security.keys import (
    KEY_PATTERN,
    SCOPES,
    hash_secret,
    new_key,
    parse_key,
    parse_scopes,
    verify_secret,
)
from tests.databases import execute


def test_a_new_key_has_a_public_id_and_only_its_secrets_hash_is_kept() -> None:
    text, row = new_key(" ci ", ["run,read"])

    assert KEY_PATTERN.fullmatch(text)
    key_id, secret = parse_key(text) or ("", "")
    assert text == f"sl_{key_id}_{secret}"
    assert (row.id, row.name, row.scopes) == (key_id, "ci", ("read", "run"))
    assert secret not in row.secret_hash
    assert row.secret_hash.startswith("scrypt$16384$8$1$")
    assert verify_secret(secret, row.secret_hash)
    assert not verify_secret(secret + "x", row.secret_hash)


def test_the_same_secret_hashes_differently_with_every_salt() -> None:
    assert hash_secret("s") != hash_secret("s")
    assert hash_secret("s", b"0" * 16) == hash_secret("s", b"0" * 16)


@pytest.mark.parametrize(
    "encoded", ["", "plain", "md5$1$1$1$AA$AA", "scrypt$x$8$1$AA$AA", "scrypt$16384$8$1$!!$AA"]
)
def test_a_malformed_stored_hash_verifies_nothing(encoded: str) -> None:
    assert verify_secret("secret", encoded) is False


@pytest.mark.parametrize(
    "text",
    ["", "sl_", "sl_0123456789ab_", "xx_0123456789ab_secret", "sl_short_secret", "Bearer sl_x"],
)
def test_text_that_is_not_a_key_does_not_parse(text: str) -> None:
    assert parse_key(text) is None


def test_a_secret_may_contain_underscores() -> None:
    assert parse_key("sl_0123456789ab_a_b_c") == ("0123456789ab", "a_b_c")


def test_scopes_are_canonical_and_known() -> None:
    assert parse_scopes(["admin,read", " run "]) == SCOPES
    with pytest.raises(ValueError, match="unknown scopes"):
        parse_scopes(["write"])
    with pytest.raises(ValueError, match="at least one scope"):
        parse_scopes([" , "])


def test_the_keys_commands_create_list_and_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stepline.db'}"
    monkeypatch.setenv("STEPLINE_DATABASE_URL", url)

    assert main(["keys", "create", "--name", "ci", "--scopes", "read,run"]) == 0
    created = capsys.readouterr()
    key = created.out.strip()
    assert KEY_PATTERN.fullmatch(key)
    assert "only time it is shown" in created.err
    assert key not in created.err

    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    key_id, secret = parse_key(key) or ("", "")
    assert re.search(rf"^{key_id}\s+ci\s+read,run\s+\S+ \S+\s+-$", listing, re.M), listing
    assert secret not in listing

    assert main(["keys", "create", "--name", "ci", "--scopes", "read"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "x", "--scopes", "write"]) == 2
    assert "unknown scopes" in capsys.readouterr().err

    assert main(["keys", "revoke", "ci"]) == 0
    assert f"revoked key {key_id}" in capsys.readouterr().out
    assert main(["keys", "revoke", "nobody"]) == 1
    stored = execute(url, "SELECT id, secret_hash, revoked_at FROM api_keys")
    assert [(row[0], secret in row[1], row[2] is not None) for row in stored] == [
        (key_id, False, True)
    ]
