"""Encrypted keystores: the only way a member's key exists on disk."""

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
from eth_utils import keccak

from fedledger.node.chain.keys import (
    DEV_SCRYPT_N,
    PRODUCTION_SCRYPT_N,
    KeystoreError,
    create_keystore,
    keystore_address,
    load_account,
    read_password,
)

#: What a member's keystore must say about its key derivation (Web3 Secret Storage v3, scrypt).
#: N = 2**18 is the strength operators' keys get unless they lower it for throwaway keys.
STRONG_KDF = {"kdf": "scrypt", "n": 2**18, "r": 8, "p": 1, "dklen": 32}


def kdf_of(path) -> dict:
    crypto = json.loads(path.read_text())["crypto"]
    params = crypto["kdfparams"]
    return {"kdf": crypto["kdf"], **{k: params[k] for k in ("n", "r", "p", "dklen")}}


def assert_mac_proves_the_kdf(path, password: str) -> None:
    """Derive the key from the password with the file's own scrypt parameters (hashlib, not the
    library that wrote it) and check the file's MAC: the parameters it states are the ones used."""
    crypto = json.loads(path.read_text())["crypto"]
    p = crypto["kdfparams"]
    derived = hashlib.scrypt(password.encode(), salt=bytes.fromhex(p["salt"]), n=p["n"], r=p["r"], p=p["p"],
                             dklen=p["dklen"], maxmem=2**30)
    assert keccak(derived[16:32] + bytes.fromhex(crypto["ciphertext"])).hex() == crypto["mac"]
    assert crypto["cipher"] == "aes-128-ctr" and len(bytes.fromhex(p["salt"])) >= 16


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


def test_a_keystore_made_with_the_defaults_uses_scrypt_at_n_2_18_and_says_so(tmp_path):
    path = tmp_path / "org.json"
    assert PRODUCTION_SCRYPT_N == STRONG_KDF["n"]
    create_keystore(path, "a long passphrase")
    assert kdf_of(path) == STRONG_KDF
    assert_mac_proves_the_kdf(path, "a long passphrase")


def test_the_dev_work_factor_is_written_as_given_and_proven_by_the_mac(tmp_path):
    path = tmp_path / "org.json"
    create_keystore(path, "pw", scrypt_n=DEV_SCRYPT_N)
    assert kdf_of(path) == {**STRONG_KDF, "n": DEV_SCRYPT_N}
    assert_mac_proves_the_kdf(path, "pw")


def test_keys_new_on_the_command_line_writes_scrypt_n_2_18_unless_told_otherwise(tmp_path):
    env = dict(os.environ, ORG_PW="a long passphrase")
    for name, extra, n in (("default.json", [], 2**18), ("fast.json", ["--scrypt-n", "16384"], 2**14)):
        out = subprocess.run([sys.executable, "-m", "fedledger.node.cli", "keys", "new", str(tmp_path / name),
                              "--password", "env:ORG_PW", "--json", *extra],
                             capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["keystore"] == str(tmp_path / name)
        assert kdf_of(tmp_path / name) == {**STRONG_KDF, "n": n}
    assert_mac_proves_the_kdf(tmp_path / "default.json", "a long passphrase")
