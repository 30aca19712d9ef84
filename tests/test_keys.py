"""Encrypted keystores: the only way a member's key exists on disk."""

import os
import stat

import pytest

from fedledger.node.chain.keys import DEV_SCRYPT_N, KeystoreError, create_keystore, keystore_address, load_account, read_password


def test_keystore_round_trip_gives_back_the_same_address(tmp_path):
    path = tmp_path / "org.json"
    addr = create_keystore(path, "s3cret", scrypt_n=DEV_SCRYPT_N)
    assert keystore_address(path) == addr
    assert load_account(path, "s3cret").address == addr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_keystore_file_does_not_contain_the_key_in_clear(tmp_path):
    key = "0x" + "11" * 32
    path = tmp_path / "org.json"
    create_keystore(path, "pw", private_key=key, scrypt_n=DEV_SCRYPT_N)
    assert "11" * 32 not in path.read_text()


def test_wrong_password_is_a_clear_error(tmp_path):
    path = tmp_path / "org.json"
    create_keystore(path, "right", scrypt_n=DEV_SCRYPT_N)
    with pytest.raises(KeystoreError, match="wrong password"):
        load_account(path, "wrong")


def test_existing_keystore_is_never_overwritten(tmp_path):
    path = tmp_path / "org.json"
    create_keystore(path, "pw", scrypt_n=DEV_SCRYPT_N)
    before = path.read_text()
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        create_keystore(path, "pw", scrypt_n=DEV_SCRYPT_N)
    assert path.read_text() == before


def test_password_sources_env_and_file_work_and_clear_text_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ORG_PW", "from-env")
    assert read_password("env:ORG_PW") == "from-env"
    (tmp_path / "pw").write_text("from-file\n")
    assert read_password(f"file:{tmp_path / 'pw'}") == "from-file"
    with pytest.raises(KeystoreError, match="not set"):
        read_password("env:NOPE_NOT_SET")
    with pytest.raises(KeystoreError, match="not understood"):
        read_password("hunter2")
