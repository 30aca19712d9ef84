"""One exception tree for fedledger, and the exit codes the command line maps it to.

Every error a user can cause, or a service can cause, is a `FedledgerError`; each class carries
its exit code, so nobody decides an exit code by matching message text. Callers catch the root,
or the one subclass they can handle (a node retries on `UnreachableError`, say).

    0  EXIT_OK           success (the audit: the lineage verifies)
    1  EXIT_INPUT        the user's input is wrong: a missing or malformed file, a wrong password,
                         a bad value
    2  EXIT_USAGE        the command line is wrong: unknown option, missing argument
    3  EXIT_UNREACHABLE  a service did not answer or failed: the chain node's JSON-RPC, the IPFS
                         node's API; the audit could not run
    4  EXIT_REFUSED      the chain refused: the contract reverted with a named custom error
                         (NotAdmin, AlreadyMember, ...) or the chain node rejected the transaction
    5  EXIT_BROKEN       verification failed: the audit found a broken link in the lineage

This module imports nothing heavy: every command, `--help` included, loads it.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
EXIT_BROKEN = 5

#: One line for every command's --help epilog.
EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 wrong input (file, password, value); 2 wrong command line; "
    "3 chain or IPFS node unreachable; 4 the chain refused (the custom error is named); "
    "5 verification failed (audit)."
)


class FedledgerError(Exception):
    """The root of every error fedledger raises on purpose. `exit_code` is what the CLI exits with."""

    exit_code = EXIT_INPUT

    @property
    def kind(self) -> str:
        """A stable, machine-readable name (the class name), as `--json` output gives it."""
        return type(self).__name__


class InputError(FedledgerError, ValueError):
    """What the user gave is wrong (a file, a value, a password); the message says what to do."""

    exit_code = EXIT_INPUT


class UnreachableError(FedledgerError):
    """A service (the chain node, an IPFS node) did not answer or failed."""

    exit_code = EXIT_UNREACHABLE


class RefusedError(FedledgerError):
    """The chain refused what was asked."""

    exit_code = EXIT_REFUSED


class VerificationFailed(FedledgerError):
    """A check of the record failed (the audit's broken lineage)."""

    exit_code = EXIT_BROKEN


# --------------------------------------------------------------------------- the concrete errors
# Defined here, once, so every layer raises the same class; each module re-exports what it raises.


class ConfigError(InputError):
    """A node configuration is missing something or holds a wrong value; the message says which."""


class KeystoreError(InputError):
    """A keystore could not be read, decrypted or written; the message says what to do."""


class DeploymentError(InputError):
    """The deployment file is missing, malformed or does not match this node's contract."""


class WorkloadDataError(InputError):
    """A workload's data is missing, in the wrong format or malformed; the message says what to do."""


class OpsError(InputError):
    """A mistake in what an operator gave (a file, a value, an option); the message says what to do instead."""


class SimError(FedledgerError):
    """The simulation could not run to the end; the message says where it stopped."""


class DevnetError(FedledgerError):
    """The local devnet could not be started or found; the message says what to do."""


class AnchorMismatch(VerificationFailed):
    """The chain under audit does not contain the block the auditor anchored it to: another chain."""


class AuditError(UnreachableError):
    """The audit could not run (no chain, no contract, unusable run directory); the message says
    what to do. A lineage that fails verification is not an error: it is an `AuditResult`."""


class ChainError(UnreachableError):
    """The chain node could not be reached or did not answer in time."""

    @property
    def kind(self) -> str:
        return "ChainUnreachable" if type(self) is ChainError else type(self).__name__


class TransactionRejected(ChainError):
    """The chain node turned a transaction down before running it (no funds, a bad nonce, ...)."""

    exit_code = EXIT_REFUSED


class ContractRevert(ChainError):
    """A call reverted. `error` is the custom error's name, `args_` its named arguments."""

    exit_code = EXIT_REFUSED

    def __init__(self, error: str, args: dict, function: str):
        self.error = error
        self.args_ = args
        self.function = function
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        super().__init__(f"{function} reverted with {error}({shown})")

    @property
    def kind(self) -> str:
        return self.error


def _show(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value)


class StorageError(UnreachableError):
    """A storage operation failed. `reason_code` is a short, stable, machine-readable cause
    (`unavailable`, `hash_mismatch`, `too_large`, `bad_header`, ...) that leaders and verifiers
    record when they exclude an update."""

    reason_code = "storage_error"

    def __init__(self, message: str, reason_code: str | None = None):
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- exit codes


def exit_code_of(exc: BaseException) -> int:
    """The exit code for anything a command raised: a `FedledgerError` says its own; the
    transport errors of the libraries below us are services that did not answer (3) or a chain
    node that refused (4); any other ValueError or OSError is wrong input (1)."""
    if isinstance(exc, FedledgerError):
        return exc.exit_code
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPError):
        return EXIT_UNREACHABLE
    requests = sys.modules.get("requests")
    if requests is not None and isinstance(exc, requests.exceptions.RequestException):
        return EXIT_UNREACHABLE
    web3_exc = sys.modules.get("web3.exceptions")
    if web3_exc is not None and isinstance(exc, web3_exc.Web3RPCError):
        return EXIT_REFUSED
    if isinstance(exc, ConnectionError):
        return EXIT_UNREACHABLE
    return EXIT_INPUT


def kind_of(exc: BaseException) -> str:
    """A stable name for `--json` output: the custom error of a revert, else the class name."""
    if isinstance(exc, FedledgerError):
        return exc.kind
    code = exit_code_of(exc)
    if code == EXIT_UNREACHABLE:
        return "ServiceUnreachable"
    if code == EXIT_REFUSED:
        return "TransactionRejected"
    return type(exc).__name__


def handled() -> tuple[type[BaseException], ...]:
    """What a command may raise that carries a message for the user rather than a bug."""
    out: list[type[BaseException]] = [FedledgerError, ValueError, OSError]
    for module, name in (("httpx", "HTTPError"), ("web3.exceptions", "Web3Exception"),
                         ("requests.exceptions", "RequestException")):
        mod = sys.modules.get(module)
        if mod is not None:
            out.append(getattr(mod, name))
    return tuple(out)
