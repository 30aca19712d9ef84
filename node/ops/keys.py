"""Member keystores as an operator handles them: a new password (asked twice, or read from its
source), the scrypt work factor, and finding keystores on disk without decrypting them."""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path

from ..chain.keys import PRODUCTION_SCRYPT_N, keystore_address, read_password
from ..errors import InputError, KeystoreError
from .access import check_password_source

#: Directories `keys list` does not descend into.
SKIP_DIRS = {"node_modules", ".git", ".venv", "__pycache__", "ipfs"}


def new_password(source: str) -> tuple[str, list[str]]:
    """A new keystore's password from `source` (`prompt` asks twice) and any warnings about it."""
    check_password_source(source)
    if source == "prompt":
        first = getpass.getpass("new keystore password: ")
        if first != getpass.getpass("repeat the password: "):
            raise InputError("the two passwords differ; nothing was written")
        password = first
    else:
        password = read_password(source)
    if not password:
        raise InputError("the password is empty; a keystore needs one")
    return password, (["the password is shorter than 8 characters"] if len(password) < 8 else [])


def scrypt_n(value: int | None) -> int:
    """The scrypt work factor: the production default, or a power of two the operator chose."""
    if value is None:
        return PRODUCTION_SCRYPT_N
    if value & (value - 1):
        raise InputError("--scrypt-n must be a power of two")
    return value


def private_key_from(source: str) -> str:
    """A private key read from prompt, env:VAR or file:PATH (never an argument), as 0x-hex."""
    check_password_source(source)
    raw = (getpass.getpass("private key (hex): ") if source == "prompt" else read_password(source)).strip()
    hexpart = raw[2:] if raw.lower().startswith("0x") else raw
    if not re.fullmatch(r"[0-9a-fA-F]{64}", hexpart):
        raise InputError("the private key must be 64 hexadecimal digits (optionally 0x-prefixed)")
    return "0x" + hexpart


def keystore_address_if_any(path: Path) -> str | None:
    """The address of a file that is a Web3 Secret Storage v3 keystore, else None (not decrypted)."""
    try:
        if path.stat().st_size > 65536:
            return None
        blob = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(blob, dict) or blob.get("version") != 3 or not ("crypto" in blob or "Crypto" in blob):
        return None
    try:
        return keystore_address(path)
    except KeystoreError:
        return None


def find_keystores(roots: list[Path]) -> list[dict[str, str]]:
    """Every keystore in these files and directories (searched recursively for *.json)."""
    found: list[dict[str, str]] = []
    for root in roots:
        if root.is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
                candidates += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".json")]
        else:
            raise InputError(f"{root} does not exist")
        for p in candidates:
            addr = keystore_address_if_any(p)
            if addr:
                found.append({"address": addr, "keystore": str(p)})
    return found
