"""Member keys: encrypted Ethereum keystores (eth-account, Web3 Secret Storage v3).

A member's key is the only way to act for it. Keys live only in encrypted keystore files; the
password comes from a prompt, an environment variable or a file, never from a command-line
argument (arguments show up in `ps` and shell history). Nothing here prints or logs a key.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ..errors import KeystoreError

# scrypt work factor: the eth-account default (2**18, about 1 s) for operators' keys; the
# devnet's throwaway keys use 2**14 so a 50-organisation simulation starts in seconds.
PRODUCTION_SCRYPT_N = 2**18
DEV_SCRYPT_N = 2**14


def read_password(source: str) -> str:
    """Resolve a password source: `env:VAR`, `file:PATH` or `prompt`.

    A bare string is refused: a password typed into a config file or a command line in clear is
    exactly what keystores exist to avoid."""
    if source == "prompt":
        return getpass.getpass("keystore password: ")
    kind, _, ref = source.partition(":")
    if kind == "env" and ref:
        value = os.environ.get(ref)
        if value is None:
            raise KeystoreError(f"password source {source!r}: environment variable {ref} is not set")
        return value
    if kind == "file" and ref:
        path = Path(ref).expanduser()
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise KeystoreError(f"password source {source!r}: cannot read {path}: {exc.strerror}") from exc
    # Never repeat the value: it may be a password typed where its source belongs.
    raise KeystoreError("the password source is not understood: use 'prompt', 'env:VARIABLE' or 'file:PATH'")


def create_keystore(
    path: Path, password: str, private_key: bytes | str | None = None, scrypt_n: int = PRODUCTION_SCRYPT_N
) -> str:
    """Write an encrypted keystore for a new (or the given) key; return its address.

    Refuses to overwrite an existing file: losing a member's key loses the member."""
    path = Path(path)
    if path.exists():
        raise KeystoreError(f"{path} exists already; refusing to overwrite a keystore")
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    blob = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        json.dump(blob, fh)
    return account.address


def keystore_address(path: Path) -> str:
    """The address a keystore holds, read without decrypting it."""
    try:
        blob = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"{path} is not a readable keystore: {exc}") from exc
    addr = blob.get("address")
    if not addr:
        raise KeystoreError(f"{path} has no address field; is it a Web3 Secret Storage v3 keystore?")
    return to_checksum_address(addr if addr.startswith("0x") else "0x" + addr)


def load_account(path: Path, password: str) -> LocalAccount:
    """Decrypt a keystore into a signing account (the key stays in memory only)."""
    try:
        blob = json.loads(Path(path).read_text())
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeystoreError(f"{path} is not valid JSON; is it a keystore?") from exc
    try:
        key = Account.decrypt(blob, password)
    except ValueError as exc:
        raise KeystoreError(f"cannot decrypt {path}: wrong password (or a corrupted keystore)") from exc
    return Account.from_key(key)
