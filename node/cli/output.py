"""What every command shares: printing (JSON on stdout, people's messages on stderr), turning an
exception into its exit code and message, the options many commands take, and building options
from a declaration (a dataclass whose fields carry their help lines).

Exit codes are `errors.EXIT_*`: each exception class carries its own, nothing matches message text.
"""

from __future__ import annotations

import inspect
import json
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, fields
from typing import Any, Optional

import typer

from .. import defaults
from ..errors import EXIT_CODES_HELP, ContractRevert, exit_code_of, handled, kind_of

__all__ = ["EXIT_CODES_HELP", "emit", "fail", "reporting", "reflow", "say", "warn", "deprecated", "add_options"]


def reflow(func):
    """Join the lines of each docstring paragraph: the CLI's help renders every newline."""
    doc = inspect.cleandoc(func.__doc__ or "")
    func.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    return func


def say(message: str) -> None:
    """Human-readable progress and warnings: stderr, so stdout stays clean for --json."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    say(f"warning: {message}")


def deprecated(old: str, new: str) -> None:
    """An old spelling still accepted: say what to write instead."""
    warn(f"{old} is deprecated; use {new}")


def emit(as_json: bool, data: Mapping[str, Any], lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            print(line)


def fail(as_json: bool, code: int, error: str, message: str, args: Mapping[str, Any] | None = None) -> None:
    say(f"error: {message}")
    if as_json:
        print(json.dumps({"ok": False, "exit_code": code, "error": error, "message": message,
                          "args": dict(args or {})}, indent=2, default=str))
    raise typer.Exit(code)


@contextmanager
def reporting(as_json: bool = False, hint: Callable[[BaseException], str | None] | None = None) -> Iterator[None]:
    """Turn what a command raises into a message, a JSON error and the exception's exit code.
    `hint(exc)` may add what to check (a command knows which service it talked to)."""
    try:
        yield
    except typer.Exit:
        raise
    except handled() as exc:
        message = str(exc)
        extra = hint(exc) if hint is not None else None
        if extra:
            message = f"{message}; {extra}"
        fail(as_json, exit_code_of(exc), kind_of(exc), message, exc.args_ if isinstance(exc, ContractRevert) else None)


# --------------------------------------------------------------------------- shared options


def json_opt() -> Any:
    return typer.Option(False, "--json", help="Print one JSON object on stdout (also on failure), for scripts.")


def deployment_opt() -> Any:
    return typer.Option(None, "--deployment", "-d",
                        help="The deployment file (`fedledger deploy` writes it; the admin hands it out). "
                             f"Default: the one in --config, else ./{defaults.DEPLOYMENT_FILE}.")


def rpc_opt() -> Any:
    return typer.Option(None, "--rpc", help="JSON-RPC URL of your chain node. Default: from --config, --devnet, "
                                            "else the URL recorded in the deployment file.")


def poa_opt() -> Any:
    return typer.Option(None, "--poa/--no-poa", help="The chain is proof-of-authority (Besu QBFT). Default: from "
                                                     "--config, else no.")


def config_opt() -> Any:
    return typer.Option(None, "--config", "-c", help="An organisation's node config (`fedledger init`): its "
                                                     "deployment, RPC URL, keystore and password source are used.")


def keystore_opt(help: str = "The admin's encrypted keystore (the account that deployed, or the one the admin "
                             "role was transferred to).") -> Any:
    return typer.Option(None, "--keystore", help=help)


def password_opt() -> Any:
    return typer.Option(None, "--password", help="Where the keystore password comes from: prompt, env:VARIABLE or "
                                                 "file:PATH. Never the password itself. Default: prompt.")


def devnet_opt() -> Any:
    return typer.Option(None, "--devnet", help="Sign with the local devnet's dev key 0 (the admin `fedledger "
                                               "deploy --devnet` made), on the devnet of this run directory.")


# --------------------------------------------------------------------------- options from a declaration


def add_options(cls: type, *, exclude: tuple[str, ...] = (), unset_default: bool = False,
                panel: str | None = None) -> Callable[[Callable], Callable]:
    """A decorator giving a command one option per field of the dataclass `cls` (after its own
    parameters), named after the field (`ipfs_nodes` is `--ipfs-nodes`), with the field's
    `help`, `flags` and `panel` metadata. The command receives them as keyword arguments under
    the fields' names. With `unset_default`, an option not given is None (the command then knows
    what the user set), and the help shows the field's default."""

    def decorate(func: Callable) -> Callable:
        hints = typing.get_type_hints(func)
        sig = inspect.signature(func)
        # A command written as f(own options, **declared) shows typer its own options and the declared ones.
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
                  if p.kind is not inspect.Parameter.VAR_KEYWORD]
        module = sys.modules[cls.__module__]
        added = {}
        for f in fields(cls):
            if f.name in exclude or not f.metadata.get("cli", True) or "help" not in f.metadata:
                continue
            kind = typing.get_type_hints(cls, vars(module)).get(f.name, Any)
            default = None if unset_default else (f.default if f.default is not MISSING else None)
            help_text = f.metadata["help"]
            if unset_default and not f.metadata.get("workload_default"):
                help_text += f" [default: {f.default}]"
            if unset_default and kind in (int, float, str, bool):
                kind = Optional[kind]
            flags = f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)
            option = typer.Option(default, *flags, help=help_text, rich_help_panel=f.metadata.get("panel") or panel,
                                  show_default=not unset_default)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
            added[f.name] = kind
        func.__signature__ = sig.replace(parameters=params)
        func.__annotations__ = {**hints, **added}
        return func

    return decorate


def pick(cls: type, values: Mapping[str, Any], *, drop_none: bool = False) -> dict[str, Any]:
    """The entries of `values` that are fields of the dataclass `cls`."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names and not (drop_none and v is None)}
