"""`fedledger keys new|import|list|address`: encrypted member keystores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from .output import EXIT_CODES_HELP, emit, json_opt, reflow, reporting, warn

keys_app = typer.Typer(help="Encrypted member keystores: create, import, list, show the address. A member's key "
                            "is the only way to act for it; it never leaves the keystore in clear.",
                       no_args_is_help=True, epilog=EXIT_CODES_HELP)

_SCRYPT_HELP = "scrypt work factor (default 262144, about 1 s per unlock). Lower it only for throwaway test keys."


@keys_app.command("new", epilog=EXIT_CODES_HELP)
@reflow
def keys_new(
    path: Path = typer.Argument(..., help="Where to write the keystore, e.g. org1/keystore.json. Never overwritten."),
    password: str = typer.Option("prompt", "--password", help="prompt (asked twice), env:VARIABLE or file:PATH."),
    scrypt_n: Optional[int] = typer.Option(None, "--scrypt-n", min=2**10, help=_SCRYPT_HELP),
    as_json: bool = json_opt(),
) -> None:
    """Create a new member key in an encrypted keystore (Web3 Secret Storage v3, scrypt) and print
    its address, the one the consortium admin admits with `fedledger member add`.

    The file is created with mode 600 and never overwritten: losing a member's key loses the
    member, so back it up (and its password) where your organisation keeps secrets."""
    with reporting(as_json):
        from ..chain.keys import create_keystore
        from ..ops.keys import new_password, scrypt_n as work_factor

        if path.exists():
            raise InputError(f"{path} exists already; refusing to overwrite a keystore (choose another path)")
        secret, warnings = new_password(password)
        for w in warnings:
            warn(w)
        address = create_keystore(path, secret, scrypt_n=work_factor(scrypt_n))
        emit(as_json, {"ok": True, "address": address, "keystore": str(path)},
             [f"address  {address}", f"keystore {path} (encrypted; mode 600)",
              "next: send the address (never the keystore) to the consortium admin for `fedledger member add`"])


@keys_app.command("import", epilog=EXIT_CODES_HELP)
@reflow
def keys_import(
    path: Path = typer.Argument(..., help="Where to write the keystore. Never overwritten."),
    key_from: str = typer.Option("prompt", "--key-from",
                                 help="Where the private key (64 hex digits) comes from: prompt, env:VARIABLE or "
                                      "file:PATH. Never the key itself."),
    password: str = typer.Option("prompt", "--password", help="prompt (asked twice), env:VARIABLE or file:PATH."),
    scrypt_n: Optional[int] = typer.Option(None, "--scrypt-n", min=2**10, help=_SCRYPT_HELP),
    as_json: bool = json_opt(),
) -> None:
    """Put an existing private key (an account your organisation already holds, or a chain's
    pre-funded account) into an encrypted keystore. The key is read from a prompt, an environment
    variable or a file, never from the command line, and is never printed."""
    with reporting(as_json):
        from ..chain.keys import create_keystore
        from ..ops.keys import new_password, private_key_from, scrypt_n as work_factor

        if path.exists():
            raise InputError(f"{path} exists already; refusing to overwrite a keystore")
        key = private_key_from(key_from)
        secret, warnings = new_password(password)
        for w in warnings:
            warn(w)
        address = create_keystore(path, secret, private_key=key, scrypt_n=work_factor(scrypt_n))
        emit(as_json, {"ok": True, "address": address, "keystore": str(path)},
             [f"address  {address}", f"keystore {path} (encrypted; mode 600)"])


@keys_app.command("list", epilog=EXIT_CODES_HELP)
@reflow
def keys_list(
    paths: Optional[list[Path]] = typer.Argument(None, help="Keystore files or directories to search (default: .)."),
    as_json: bool = json_opt(),
) -> None:
    """List keystores and their addresses, without decrypting anything. Directories are searched
    recursively for *.json keystores (skipping node_modules, .git, .venv and IPFS repos)."""
    with reporting(as_json):
        from ..ops.keys import find_keystores

        found = find_keystores(list(paths or [Path(".")]))
        emit(as_json, {"ok": True, "keystores": found},
             [f"{k['address']}  {k['keystore']}" for k in found] or ["no keystores found"])


@keys_app.command("address", epilog=EXIT_CODES_HELP)
@reflow
def keys_address(
    path: Path = typer.Argument(..., help="A keystore file."),
    check: bool = typer.Option(False, "--check", help="Also decrypt it, to prove the password opens it (exit 1 if not)."),
    password: str = typer.Option("prompt", "--password", help="With --check: prompt, env:VARIABLE or file:PATH."),
    as_json: bool = json_opt(),
) -> None:
    """Print the address a keystore holds. Without --check the keystore is not decrypted."""
    with reporting(as_json):
        from ..chain.keys import keystore_address, load_account, read_password
        from ..ops.access import check_password_source

        address = keystore_address(path)
        if check:
            account = load_account(path, read_password(check_password_source(password)))
            if account.address != address:
                raise InputError(f"{path} says {address} but its key belongs to {account.address}: the file was altered")
        emit(as_json, {"ok": True, "address": address, "keystore": str(path), "checked": check},
             [address + ("  (password checked)" if check else "")])


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
