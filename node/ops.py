"""Operator commands: everything an organisation's operator does, each a documented command.

    fedledger keys new|import|list|address        encrypted member keystores
    fedledger init ORG                            a commented node config for one organisation
    fedledger member add|remove|fund|list         the consortium's members (add/remove: admin only)
    fedledger task create|list|show               federated training tasks (create: admin only)
    fedledger ipfs init|up|down|status|addr       an organisation's dev IPFS node (Kubo in production)

Nothing here depends on sharing a filesystem or a loopback interface with another organisation:
what crosses between organisations is the deployment file, addresses and multiaddrs, handed
over by the operators (docs/consortium.md, docs/deploy.md).

Exit codes, the same for every command here (scripts may rely on them):

    0  success
    1  the operator's input is wrong: a missing or malformed file, a wrong password, a bad value
    2  the command line is wrong: unknown option, missing argument (the CLI's usage errors)
    3  a service did not answer or failed: the chain node's JSON-RPC or the IPFS node's API
    4  the chain refused: the contract reverted with a named custom error (NotAdmin,
       AlreadyMember, InvalidArgument, ...) or the node rejected the transaction

With `--json` a command prints one JSON object on stdout, also when it fails
(`{"ok": false, "exit_code": 4, "error": "NotAdmin", "message": ..., "args": {...}}`); human
messages and warnings go to stderr. Keys are never printed or logged; passwords come from a
prompt, `env:VAR` or `file:PATH`, never from an argument.

`register(app)` adds these commands to the `fedledger` CLI. The helpers `create_task`,
`load_genesis_file`, `send_ether` and `render_node_config` are what the commands are made of,
for other code (the simulation) to share.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import math
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

# Only light modules at import time: the CLI imports this module for every command, even --help.
# The chain client (web3) and the keystores (eth-account) load when a command needs them.
from .config import ConfigError, NodeConfig, TrainingConfig, parse_gateways
from .ipfs import IpfsClient, StorageError
from .ipfs_daemon import META_FILE, IpfsDaemon, IpfsDaemonError, free_port, loopback_config

if TYPE_CHECKING:
    from .chain import ChainClient, TaskConfig
    from .deploy import Deployment

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 wrong input (file, password, value); 2 wrong command line; "
    "3 chain or IPFS node unreachable; 4 the chain refused (the custom error is named)."
)

DEFAULT_IPFS_API = "http://127.0.0.1:5001"
DEFAULT_RPC = "http://127.0.0.1:8545"


class OpsError(Exception):
    """A mistake in what the operator gave (exit 1); the message says what to do instead."""


# ============================================================================ output and errors


def _reflow(func):
    """Join the lines of each docstring paragraph: the CLI's help renders every newline."""
    import inspect

    doc = inspect.cleandoc(func.__doc__ or "")
    func.__doc__ = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))
    return func


def _say(message: str) -> None:
    """Human-readable progress and warnings: stderr, so stdout stays clean for --json."""
    print(message, file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    _say(f"warning: {message}")


def _emit(as_json: bool, data: Mapping[str, Any], lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        for line in lines:
            print(line)


def _fail(as_json: bool, code: int, error: str, message: str, args: Mapping[str, Any] | None = None) -> None:
    _say(f"error: {message}")
    if as_json:
        print(json.dumps({"ok": False, "exit_code": code, "error": error, "message": message,
                          "args": dict(args or {})}, indent=2, default=str))
    raise typer.Exit(code)


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, error name) for an exception raised by an operator command."""
    import httpx

    from .chain import ChainError, ContractRevert

    if isinstance(exc, ContractRevert):
        return EXIT_REFUSED, exc.error
    if isinstance(exc, ChainError):
        text = str(exc)
        if "refused by the chain node" in text:
            return EXIT_REFUSED, "TransactionRejected"
        return EXIT_UNREACHABLE, "ChainUnreachable"
    if isinstance(exc, IpfsDaemonError):
        return EXIT_UNREACHABLE, "IpfsDaemonError"
    if isinstance(exc, StorageError) and not _is_model_rejection(exc):
        return EXIT_UNREACHABLE, type(exc).__name__
    if isinstance(exc, httpx.HTTPError):
        return EXIT_UNREACHABLE, "ServiceUnreachable"
    import requests
    from web3.exceptions import Web3RPCError

    if isinstance(exc, requests.exceptions.RequestException):
        return EXIT_UNREACHABLE, "ServiceUnreachable"
    if isinstance(exc, Web3RPCError):  # the node turned a call down (insufficient funds, gas limit...)
        return EXIT_REFUSED, "TransactionRejected"
    return EXIT_INPUT, type(exc).__name__


def _is_model_rejection(exc: BaseException) -> bool:
    from .modelfile import ModelRejected

    return isinstance(exc, ModelRejected)


def _handled_errors() -> tuple[type[BaseException], ...]:
    """What an operator command may raise that has a message for the operator (not a bug)."""
    import httpx
    from web3.exceptions import Web3Exception

    from .chain import ChainError
    from .deploy import DeploymentError
    from .keys import KeystoreError

    return (OpsError, KeystoreError, ConfigError, DeploymentError, ChainError, StorageError, httpx.HTTPError,
            Web3Exception, ValueError, OSError)


@contextmanager
def reporting(as_json: bool) -> Iterator[None]:
    """Turn what an operator command raises into a message, a JSON error and an exit code."""
    from .chain import ContractRevert

    try:
        yield
    except typer.Exit:
        raise
    except _handled_errors() as exc:
        code, name = classify(exc)
        args = exc.args_ if isinstance(exc, ContractRevert) else None
        _fail(as_json, code, name, str(exc), args)


# ============================================================================ shared helpers


def check_password_source(source: str) -> str:
    """Refuse a password given in clear; accept prompt, env:VAR, file:PATH (not read here)."""
    kind, sep, ref = source.partition(":")
    if source == "prompt" or (sep and kind in ("env", "file") and ref):
        return source
    # The value is not repeated: it may be a password someone typed where its source belongs.
    raise OpsError("the password source is not understood: use 'prompt', 'env:VARIABLE' or 'file:PATH' "
                   "(a password itself never goes on the command line or in a config)")


def _password_file_warning(source: str) -> None:
    kind, _, ref = source.partition(":")
    if kind != "file":
        return
    path = Path(ref).expanduser()
    try:
        mode = path.stat().st_mode
    except OSError:
        _warn(f"password file {path} does not exist yet; create it with mode 600 before `fedledger node run`")
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _warn(f"password file {path} is readable by other users (mode {stat.S_IMODE(mode):o}): chmod 600 {path}")


def parse_address(value: str) -> str:
    """A member given as a 0x address or as the path of its keystore (read without decrypting)."""
    from eth_utils import is_address, to_checksum_address

    from .keys import keystore_address

    text = value.strip()
    if text.lower().startswith("0x"):
        if not is_address(text):
            raise OpsError(f"{value!r} is not an Ethereum address (0x followed by 40 hex digits)")
        return to_checksum_address(text)
    path = Path(text).expanduser()
    if path.is_file():
        return keystore_address(path)
    raise OpsError(f"{value!r} is neither a 0x address nor an existing keystore file")


def _ether_to_wei(amount: float) -> int:
    if not math.isfinite(amount) or amount < 0:
        raise OpsError(f"an amount of ether must be a non-negative number, got {amount}")
    return int(round(amount * 10**18))


def send_ether(client: ChainClient, to: str, wei: int, timeout: float = 60.0) -> str:
    """Send `wei` from the client's account to `to` (gas for a member on a chain that charges it);
    returns the transaction hash. Shares the client's nonce bookkeeping."""
    from eth_utils import to_checksum_address

    from .chain import ChainError

    w3 = client.w3
    sender = client.sender
    with client._lock:
        if client._nonce is None:
            client._nonce = client._rpc(lambda: w3.eth.get_transaction_count(sender, "pending"))
        tx = {"to": to_checksum_address(to), "value": int(wei), "gas": 21000,
              "gasPrice": client._rpc(lambda: w3.eth.gas_price), "nonce": client._nonce, "chainId": client.chain_id}
        signed = client.account.sign_transaction(tx)
        try:
            tx_hash = client._rpc(lambda: w3.eth.send_raw_transaction(signed.raw_transaction))
        except ChainError:
            raise
        except Exception as exc:  # web3's RPC error: insufficient funds and the like
            client._nonce = None
            raise ChainError(f"sending ether was refused by the chain node: {exc}") from exc
        client._nonce += 1
    receipt = client._rpc(lambda: w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout,
                                                                      poll_latency=client.poll_latency))
    if receipt["status"] != 1:
        raise ChainError(f"sending ether to {to} was refused by the chain node (status 0)")
    return "0x" + bytes(tx_hash).hex()


@dataclass
class ChainAccess:
    """Where the chain is and who signs: resolved from explicit options, an org config, a devnet."""

    client: ChainClient
    deployment: Deployment
    deployment_path: Path


def chain_access(
    *,
    deployment: Optional[Path],
    rpc: Optional[str],
    poa: Optional[bool],
    config: Optional[Path],
    keystore: Optional[Path] = None,
    password: Optional[str] = None,
    devnet: Optional[Path] = None,
    sign: bool = False,
) -> ChainAccess:
    """A chain client for the deployment; with `sign`, one that signs with the admin's key.

    Precedence: explicit options, then the organisation config (`--config`), then defaults.
    `--devnet DIR` signs with the local devnet's dev key 0 (the account `fedledger deploy
    --devnet` made admin); it refuses any chain but the devnet's."""
    from .deploy import Deployment
    from .keys import load_account, read_password

    cfg = NodeConfig.load(config) if config is not None else None
    dep_path = deployment or (cfg.deployment if cfg else Path("deployment.json"))
    dep = Deployment.load(dep_path)
    use_poa = poa if poa is not None else (cfg.poa if cfg else False)
    account = None
    if devnet is not None and (keystore is not None or password is not None):
        raise OpsError("give --devnet DIR (its dev key signs) or --keystore/--password, not both")
    if devnet is not None:
        from eth_account import Account

        from .devnet import CHAIN_ID, DEV_KEYS, Devnet

        net = Devnet.load(devnet)
        if net.anvil is None:
            raise OpsError(f"no devnet recorded in {devnet}: run `fedledger devnet up --dir {devnet}`")
        rpc = rpc or net.anvil.rpc_url
        if dep.chain_id != CHAIN_ID:
            raise OpsError(f"--devnet signs with a public dev key; the deployment is on chain {dep.chain_id}, "
                           f"not the devnet's {CHAIN_ID}: use --keystore")
        if sign:
            account = Account.from_key(DEV_KEYS[0])
    elif sign:
        ks = keystore or (cfg.keystore if cfg else None)
        if ks is None:
            raise OpsError("this command signs a transaction: give --keystore (the admin's keystore), "
                           "--config (an organisation's node config) or --devnet DIR (local devnet)")
        source = password or (cfg.password if cfg and keystore is None else "prompt")
        account = load_account(ks, read_password(check_password_source(source)))
    url = rpc or (cfg.rpc_url if cfg else None) or dep.rpc_url
    client = dep.client(rpc_url=url, account=account, poa=use_poa)
    return ChainAccess(client, dep, Path(dep_path))


def _members(client: ChainClient, from_block: int) -> dict[str, dict[str, Any]]:
    """Every address ever admitted, from the event log: name, active, when it joined/left."""
    out: dict[str, dict[str, Any]] = {}
    for ev in client.events(from_block=from_block, names=["MemberAdded", "MemberRemoved"]):
        if ev.name == "MemberAdded":
            out[ev["member"]] = {"address": ev["member"], "name": ev["name"], "active": True,
                                 "added_block": ev.block_number, "removed_block": None}
        elif ev["member"] in out:
            out[ev["member"]].update(active=False, removed_block=ev.block_number)
    return out


# ============================================================================ genesis and tasks


def load_genesis_file(path: Path, builtin: str | None = None) -> dict[str, Any]:
    """The tensors of a user's safetensors file, validated as a genesis model: readable without
    executing anything, every dtype one the model format supports, every value finite, tensor
    names valid, and (given `builtin`) exactly the names, shapes and dtypes that built-in task's
    model has, so every member's trainer can load it."""
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    from .modelfile import DTYPES, ModelSpec

    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OpsError(f"cannot read genesis file {path}: {exc.strerror}") from exc
    try:
        raw = st_load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise OpsError(f"{path} is not a safetensors file numpy can read ({exc}); write it with "
                       "safetensors.torch.save_file / safetensors.numpy.save_file, dtypes float/int (no bfloat16)") from exc
    if not raw:
        raise OpsError(f"{path} holds no tensors")
    allowed = {dt.name for dt in DTYPES.values()}
    tensors: dict[str, Any] = {}
    for name in sorted(raw):
        a = raw[name]
        dt = np.dtype(a.dtype).newbyteorder("=")
        if dt.name not in allowed:
            raise OpsError(f"{path}: tensor {name!r} has dtype {a.dtype}; the model format takes {', '.join(sorted(allowed))}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.isfinite(a).sum())
            raise OpsError(f"{path}: tensor {name!r} holds {bad} NaN/Inf values; a genesis model must be finite")
        tensors[name] = np.ascontiguousarray(a.astype(dt.newbyteorder("<"), copy=False))
    try:
        spec = ModelSpec.from_tensors(tensors)
    except ValueError as exc:
        raise OpsError(f"{path}: {exc}") from exc
    if builtin is not None:
        from .tasks import get_task

        want = ModelSpec.from_tensors(get_task(builtin).genesis_weights(0)).tensors
        problems = [f"missing {n}" for n in sorted(set(want) - set(spec.tensors))]
        problems += [f"unexpected {n}" for n in sorted(set(spec.tensors) - set(want))]
        problems += [f"{n}: shape {list(spec.tensors[n].shape)} dtype {spec.tensors[n].dtype}, the {builtin} model has "
                     f"shape {list(want[n].shape)} dtype {want[n].dtype}"
                     for n in sorted(set(want) & set(spec.tensors)) if spec.tensors[n] != want[n]]
        if problems:
            raise OpsError(f"{path} does not fit the {builtin} model the members train: " + "; ".join(problems))
    return tensors


def genesis_weights(builtin: str | None, seed: int, genesis_file: Path | None) -> dict[str, Any]:
    """The genesis model: a built-in task's initial weights for `seed`, or a user's file."""
    if genesis_file is not None:
        return load_genesis_file(genesis_file, builtin)
    if builtin is None:
        raise OpsError("give --builtin NAME (the built-in task's initial model for --seed) or --genesis FILE.safetensors")
    from .tasks import get_task

    return dict(get_task(builtin).genesis_weights(seed))


@dataclass
class TaskPlan:
    """What a task fixes on chain besides its genesis model. `quorum` defaults to `verifiers`."""

    rule: str = "fedavg"
    rule_params: Mapping[str, Any] | None = None
    min_participants: int = 2
    max_participants: int = 10
    submission_window: int = 60
    aggregation_window: int = 60
    verification_window: int = 60
    verifiers: int = 2
    quorum: int | None = None
    rounds: int = 5

    def check(self) -> None:
        if self.min_participants < 1:
            raise OpsError("--min-participants must be at least 1")
        if self.max_participants < self.min_participants:
            raise OpsError(f"--max-participants ({self.max_participants}) is below --min-participants "
                           f"({self.min_participants})")
        for name in ("submission_window", "aggregation_window", "verification_window", "rounds"):
            if getattr(self, name) < 1:
                raise OpsError(f"--{name.replace('_', '-')} must be at least 1")
        quorum = self.verifiers if self.quorum is None else self.quorum
        if not 0 <= self.verifiers <= 16:
            raise OpsError("--verifiers must be between 0 and 16")
        if quorum > self.verifiers or (self.verifiers > 0 and quorum < 1):
            raise OpsError(f"--quorum must be between 1 and --verifiers ({self.verifiers}); got {quorum}")


@dataclass
class CreatedTask:
    task: int
    config: TaskConfig
    genesis_path: Path
    spec_path: Path | None
    tx_hash: str
    block: int
    gas_used: int

    def to_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["rule_params"] = self.config.rule_params.decode("ascii", errors="replace")
        return {"task": self.task, "config": cfg, "genesis_file": str(self.genesis_path),
                "model_spec_file": str(self.spec_path) if self.spec_path else None,
                "tx_hash": self.tx_hash, "block": self.block, "gas_used": self.gas_used}


def create_task(admin: ChainClient, ipfs: IpfsClient, genesis: Mapping[str, Any], genesis_path: Path,
                plan: TaskPlan, spec_path: Path | None = None) -> CreatedTask:
    """Create a task: write the genesis model file, add it and the ModelSpec JSON to `ipfs`
    (pinned there: the operator's node serves them to every member), then createTask on chain.

    `admin` signs. The genesis file records the task id it is created for (the next free id);
    both files stay on disk as the operator's record of what the task started from."""
    from fedledger.aggregation.registry import encode_params, get_rule

    from .chain import TaskConfig
    from .modelfile import ModelSpec, write_model_file

    plan.check()
    get_rule(plan.rule)  # ValueError naming the known rules
    params = encode_params(plan.rule, dict(plan.rule_params or {}))
    spec = ModelSpec.from_tensors(genesis)
    spec_json = spec.to_json()
    task_guess = admin.task_count()
    genesis_path = Path(genesis_path)
    genesis_path.parent.mkdir(parents=True, exist_ok=True)
    gsha = write_model_file(genesis_path, genesis, {"kind": "genesis", "task": str(task_guess), "round": "0",
                                                    "rule": plan.rule})
    if spec_path is not None:
        Path(spec_path).write_bytes(spec_json)
    spec_cid = ipfs.add_bytes(spec_json)
    gcid = ipfs.add_file(genesis_path)
    for cid in (spec_cid, gcid):
        ipfs.pin_add(cid)
    config = TaskConfig(
        model_spec_cid=spec_cid, genesis_cid=gcid, genesis_sha256=gsha, rule_id=plan.rule, rule_params=params,
        min_participants=plan.min_participants, max_participants=plan.max_participants,
        submission_window=plan.submission_window, aggregation_window=plan.aggregation_window,
        verification_window=plan.verification_window, verifiers_per_round=plan.verifiers,
        quorum=plan.verifiers if plan.quorum is None else plan.quorum, max_rounds=plan.rounds,
    )
    task_id, tx = admin.create_task(config)
    return CreatedTask(task_id, config, genesis_path, Path(spec_path) if spec_path else None, tx.tx_hash,
                       tx.block_number, tx.gas_used)


def task_summary(client: ChainClient, task: int, members: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    cfg, st = client.task_config(task), client.task_state(task)
    out: dict[str, Any] = {"task": task, "rule": cfg.rule_id, "rounds": cfg.max_rounds, "completed": st.completed,
                           "round": st.current_round, "global_sha256": st.global_sha256, "global_cid": st.global_cid}
    if not st.completed:
        info = client.round_info(task, st.current_round)
        out.update(phase=info.phase.name.lower(), updates=info.count, attempt=info.attempt,
                   leader=_name(members, info.leader) if info.leader else None, deadline=info.deadline)
    return out


def _name(members: Mapping[str, Mapping[str, Any]], address: str | None) -> str | None:
    if address is None:
        return None
    m = members.get(address)
    return m["name"] if m else address


# ============================================================================ node config


def _toml_str(value: Any) -> str:
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are valid TOML escapes


def render_node_config(cfg: NodeConfig) -> str:
    """The organisation config as commented TOML; `NodeConfig.load` reads it back unchanged.
    Relative paths are relative to the config file's directory."""
    rows: list[tuple[str, str]] = [
        ("[organisation]", ""),
        (f"name = {_toml_str(cfg.name)}", "as the consortium admitted you (fedledger member list)"),
        (f"work_dir = {_toml_str(cfg.work_dir)}", "updates, downloaded models, metrics.jsonl"),
        (f"poll_seconds = {cfg.poll_seconds}", "seconds between block-number checks (a full read on each new block, and every second)"),
        ("", ""),
        ("[chain]", ""),
        (f"rpc_url = {_toml_str(cfg.rpc_url)}", "YOUR chain node's JSON-RPC (Besu: on localhost)"),
        (f"deployment = {_toml_str(cfg.deployment)}", "the deployment file the admin handed out"),
        (f"chain_id = {cfg.chain_id}" if cfg.chain_id is not None else "# chain_id = 1337",
         "refuse to run against any other chain"),
        (f"poa = {str(cfg.poa).lower()}", "true on proof-of-authority chains (Besu QBFT, Clique)"),
        (f"ws_url = {_toml_str(cfg.ws_url)}" if cfg.ws_url else '# ws_url = "ws://127.0.0.1:8546"',
         "the chain node's WebSocket: blocks pushed, not polled (Anvil: the RPC port; Besu: --rpc-ws-enabled)"),
        ("", ""),
        ("[ipfs]", ""),
        (f"api_url = {_toml_str(cfg.ipfs_api)}", "YOUR IPFS node's RPC API, never another organisation's"),
        (f"keep_others_updates = {str(cfg.keep_others_updates).lower()}", "true keeps every member's updates pinned"),
        (f"prefetch_max_mb = {cfg.prefetch_max_mb}", "fetch every update as announced if models are this small (0: off)"),
        *([("", ""), ("[ipfs.gateways]", "other members' IPFS gateways, tried before the swarm (every download is hash-checked)")]
          + [(f"{_toml_str(a)} = {_toml_str(u)}", "") for a, u in sorted(cfg.gateways.items())] if cfg.gateways else []),
        ("", ""),
        ("[keystore]", ""),
        (f"path = {_toml_str(cfg.keystore)}", "encrypted (fedledger keys new); never share it"),
        (f"password = {_toml_str(cfg.password)}", "prompt | env:VARIABLE | file:PATH (mode 600)"),
        ("", ""),
        ("[task]", ""),
        (f"id = {cfg.task}", "the task to take part in (fedledger task list)"),
        (f"builtin = {_toml_str(cfg.builtin)}", "model and data: digits-mlp, breast-cancer, cifar10-cnn"),
        (f"data = {_toml_str(cfg.data)}" if cfg.data else '# data = "/path/to/data"', "for tasks that read files (cifar10-cnn)"),
        (f"partition = {_toml_str(cfg.partition)}", "your share of the data: iid, dirichlet:A, shards:K, skew:D"),
        (f"org_index = {cfg.org_index}", "which share is yours: 0 .. num_orgs-1"),
        (f"num_orgs = {cfg.num_orgs}", "into how many shares the data is split"),
        (f"partition_seed = {cfg.partition_seed}", "the same for every organisation"),
        ("", ""),
        ("[training]", "local training, each round"),
    ]
    notes = {"mu": "FedProx proximal term; 0 is plain local SGD", "fedcurv_lambda": "FedCurv penalty; 0 is off",
             "lr_decay": "round r trains with lr * lr_decay^(r-1); 1 is constant"}
    rows += [(f"{k} = {json.dumps(v)}", notes.get(k, "")) for k, v in asdict(cfg.training).items()]
    adversary = getattr(cfg, "adversary", None)
    if adversary:  # experiments only: never written by `fedledger init`
        rows += [("", ""), ("[adversary]", "this organisation MISBEHAVES on purpose (an experiment)")]
        rows += [(f"{k} = {json.dumps(v)}", "") for k, v in adversary.items()]
    width = max(36, max(len(code) for code, note in rows if note) + 2)
    head = [
        f"# fedledger node configuration of organisation {cfg.name}.",
        "# Nothing secret belongs here: the key is in an encrypted keystore, its password comes from a",
        "# prompt, an environment variable or a file. Relative paths are relative to this file.",
        "# Start the node with:  fedledger node run --config THIS_FILE",
        "",
    ]
    body = [f"{code:<{width}}# {note}" if note else code for code, note in rows]
    return "\n".join(head + body) + "\n"


# ============================================================================ the dev IPFS node


_MULTIADDR = re.compile(r"^/(ip4|ip6|dns4|dns6|dns)/[^/]+/tcp/\d{1,5}/(p2p|ipfs)/[1-9A-HJ-NP-Za-km-z]{20,}$")


def check_multiaddr(addr: str) -> str:
    if not _MULTIADDR.match(addr.strip()):
        raise OpsError(f"{addr!r} is not a dialable peer multiaddr; expected /ip4/ADDR/tcp/PORT/p2p/PEER_ID "
                       "(`fedledger ipfs init` or `ipfs id` on the other organisation's node prints it)")
    return addr.strip()


class OrgIpfsDaemon(IpfsDaemon):
    """An organisation's dev IPFS node: the loopback-only dev daemon, plus what an organisation
    needs to take part from its own host: the swarm listening on a chosen address (so other
    organisations can connect), fixed ports if wanted, and a bootstrap list of the other
    organisations' nodes that the daemon dials by itself (and redials), as Kubo's
    Bootstrap/Peering lists do in production. The RPC API always stays on 127.0.0.1; the
    read-only HTTP gateway listens beside the swarm, for the other organisations' peers to fetch
    what this one stored (hash-checked by them, like everything they download).

    Settings given once are kept in the repo's fedledger-ipfs.json and reused by later starts."""

    def __init__(self, repo_dir: Path | str, name: str | None = None, *, swarm_host: str | None = None,
                 swarm_port: int | None = None, api_port: int | None = None,
                 bootstrap: list[str] | None = None, gateway_port: int | None = None):
        if name is None:  # the name given at init, else a neutral one
            try:
                name = json.loads((Path(repo_dir) / META_FILE).read_text()).get("name") or "ipfs"
            except (OSError, ValueError):
                name = "ipfs"
        super().__init__(repo_dir, name)
        if swarm_host is not None:
            try:
                ip = ipaddress.IPv4Address(swarm_host)
            except ValueError:
                raise OpsError(f"--swarm-host {swarm_host!r} is not an IPv4 address") from None
            if ip.is_unspecified:
                raise OpsError("--swarm-host must be the address other organisations dial, not 0.0.0.0")
        self._want: dict[str, Any] = {"swarm_host": swarm_host, "swarm_port": swarm_port, "api_port": api_port,
                                      "gateway_port": gateway_port,
                                      "bootstrap": [check_multiaddr(a) for a in bootstrap] if bootstrap is not None else None}

    def _pick_ports(self) -> dict[str, int]:  # type: ignore[override]
        fixed = {k: self._want[k] for k in ("swarm_port", "api_port", "gateway_port") if self._want.get(k)}
        if len(set(fixed.values())) < len(fixed):
            raise OpsError(f"the swarm, API and gateway ports must differ, got {fixed}")
        ports = set(fixed.values())
        out = dict(fixed)
        for key in ("swarm_port", "api_port", "gateway_port"):
            if key not in out:
                p = free_port()
                while p in ports:
                    p = free_port()
                out[key] = p
                ports.add(p)
        return out

    def _apply_config(self, meta: dict[str, Any]) -> None:
        for key, value in self._want.items():
            if value is not None:
                meta[key] = value
        self._write_json(self.repo_dir / META_FILE, meta)
        cfg = loopback_config(self._config(), meta["swarm_port"], meta["api_port"], meta["gateway_port"])
        cfg["Addresses"]["Swarm"] = [f"/ip4/{meta.get('swarm_host', '127.0.0.1')}/tcp/{meta['swarm_port']}"]
        cfg["Addresses"]["Gateway"] = f"/ip4/{meta.get('swarm_host', '127.0.0.1')}/tcp/{meta['gateway_port']}"
        cfg["Bootstrap"] = list(meta.get("bootstrap") or [])
        self._write_json(self.config_path, cfg)

    @property
    def swarm_host(self) -> str:
        return self._meta().get("swarm_host", "127.0.0.1")

    @property
    def bootstrap(self) -> list[str]:
        return list(self._meta().get("bootstrap") or [])

    def swarm_addrs(self) -> list[str]:
        return [f"/ip4/{self.swarm_host}/tcp/{self._meta()['swarm_port']}/p2p/{self.peer_id}"]

    @property
    def gateway_url(self) -> str:  # type: ignore[override]
        return f"http://{self.swarm_host}:{self._meta()['gateway_port']}"

    def dial_bootstrap(self, timeout: float = 5.0) -> dict[str, str]:
        """Dial every bootstrap peer once now (the daemon keeps redialling them on its own);
        returns multiaddr -> "connected" or the reason it failed (the peer may not be up yet)."""
        out = {}
        with self.client(timeout=timeout) as client:
            for addr in self.bootstrap:
                try:
                    client.swarm_connect(addr, timeout=timeout)
                    out[addr] = "connected"
                except StorageError as exc:
                    reason = "not reachable yet" if "rejected" in str(exc) else str(exc)
                    out[addr] = f"{reason} (the daemon keeps redialling)"
        return out

    def describe(self) -> dict[str, Any]:
        running = self.running
        meta = self._meta()
        info: dict[str, Any] = {"repo": str(self.repo_dir), "name": self.name, "running": running,
                                "api_url": self.api_url, "peer_id": self.peer_id, "swarm_addrs": self.swarm_addrs(),
                                "swarm_port": meta["swarm_port"], "api_port": meta["api_port"],
                                "gateway_url": self.gateway_url,
                                "bootstrap": self.bootstrap, "pid": self.pid if running else None}
        if running:
            try:
                with self.client(timeout=5) as c:
                    info["connected_peers"] = c.swarm_peers()
            except StorageError:
                info["connected_peers"] = None
        return info


def _ipfs_api_of(ipfs_api: Optional[str], ipfs_repo: Optional[Path]) -> str | None:
    if ipfs_repo is not None and ipfs_api is not None:
        raise OpsError("give --ipfs-api or --ipfs-repo, not both")
    if ipfs_repo is None:
        return ipfs_api
    if not (ipfs_repo / META_FILE).exists():
        raise OpsError(f"{ipfs_repo} is not a fedledger IPFS repo: run `fedledger ipfs init --repo {ipfs_repo}`")
    return OrgIpfsDaemon(ipfs_repo).api_url


# ============================================================================ CLI: option factories


def _json_opt() -> Any:
    return typer.Option(False, "--json", help="Print one JSON object on stdout (also on failure), for scripts.")


def _deployment_opt() -> Any:
    return typer.Option(None, "--deployment", "-d",
                        help="The deployment file (`fedledger deploy` writes it; the admin hands it out). "
                             "Default: the one in --config, else ./deployment.json.")


def _rpc_opt() -> Any:
    return typer.Option(None, "--rpc", help="JSON-RPC URL of your chain node. Default: from --config, --devnet, "
                                            "else the URL recorded in the deployment file.")


def _poa_opt() -> Any:
    return typer.Option(None, "--poa/--no-poa", help="The chain is proof-of-authority (Besu QBFT). Default: from "
                                                     "--config, else no.")


def _config_opt() -> Any:
    return typer.Option(None, "--config", "-c", help="An organisation's node config (`fedledger init`): its "
                                                     "deployment, RPC URL, keystore and password source are used.")


def _keystore_opt() -> Any:
    return typer.Option(None, "--keystore", help="The admin's encrypted keystore (the account that deployed, or "
                                                 "the one the admin role was transferred to).")


def _password_opt() -> Any:
    return typer.Option(None, "--password", help="Where the keystore password comes from: prompt, env:VARIABLE or "
                                                 "file:PATH. Never the password itself. Default: prompt.")


def _devnet_opt() -> Any:
    return typer.Option(None, "--devnet", help="Sign with the local devnet's dev key 0 (the admin `fedledger "
                                               "deploy --devnet` made), on the devnet of this run directory.")


# ============================================================================ CLI: keys

keys_app = typer.Typer(help="Encrypted member keystores: create, import, list, show the address. A member's key "
                            "is the only way to act for it; it never leaves the keystore in clear.",
                       no_args_is_help=True, epilog=EXIT_CODES_HELP)


def _new_password(source: str) -> str:
    from .keys import read_password

    check_password_source(source)
    if source == "prompt":
        first = getpass.getpass("new keystore password: ")
        if first != getpass.getpass("repeat the password: "):
            raise OpsError("the two passwords differ; nothing was written")
        password = first
    else:
        password = read_password(source)
    if not password:
        raise OpsError("the password is empty; a keystore needs one")
    if len(password) < 8:
        _warn("the password is shorter than 8 characters")
    return password


@keys_app.command("new", epilog=EXIT_CODES_HELP)
@_reflow
def keys_new(
    path: Path = typer.Argument(..., help="Where to write the keystore, e.g. org1/keystore.json. Never overwritten."),
    password: str = typer.Option("prompt", "--password", help="prompt (asked twice), env:VARIABLE or file:PATH."),
    scrypt_n: Optional[int] = typer.Option(None, "--scrypt-n", min=2**10,
                                           help="scrypt work factor (default 262144, about 1 s per unlock). Lower "
                                                "it only for throwaway test keys."),
    as_json: bool = _json_opt(),
) -> None:
    """Create a new member key in an encrypted keystore (Web3 Secret Storage v3, scrypt) and print
    its address, the one the consortium admin admits with `fedledger member add`.

    The file is created with mode 600 and never overwritten: losing a member's key loses the
    member, so back it up (and its password) where your organisation keeps secrets."""
    with reporting(as_json):
        from .keys import create_keystore

        if path.exists():
            raise OpsError(f"{path} exists already; refusing to overwrite a keystore (choose another path)")
        address = create_keystore(path, _new_password(password), scrypt_n=_scrypt_n(scrypt_n))
        _emit(as_json, {"ok": True, "address": address, "keystore": str(path)},
              [f"address  {address}", f"keystore {path} (encrypted; mode 600)",
               "next: send the address (never the keystore) to the consortium admin for `fedledger member add`"])


@keys_app.command("import", epilog=EXIT_CODES_HELP)
@_reflow
def keys_import(
    path: Path = typer.Argument(..., help="Where to write the keystore. Never overwritten."),
    key_from: str = typer.Option("prompt", "--key-from",
                                 help="Where the private key (64 hex digits) comes from: prompt, env:VARIABLE or "
                                      "file:PATH. Never the key itself."),
    password: str = typer.Option("prompt", "--password", help="prompt (asked twice), env:VARIABLE or file:PATH."),
    scrypt_n: Optional[int] = typer.Option(None, "--scrypt-n", min=2**10,
                                           help="scrypt work factor (default 262144, about 1 s per unlock)."),
    as_json: bool = _json_opt(),
) -> None:
    """Put an existing private key (an account your organisation already holds, or a chain's
    pre-funded account) into an encrypted keystore. The key is read from a prompt, an environment
    variable or a file, never from the command line, and is never printed."""
    with reporting(as_json):
        from .keys import create_keystore, read_password

        if path.exists():
            raise OpsError(f"{path} exists already; refusing to overwrite a keystore")
        check_password_source(key_from)
        raw = (getpass.getpass("private key (hex): ") if key_from == "prompt" else read_password(key_from)).strip()
        hexpart = raw[2:] if raw.lower().startswith("0x") else raw
        if not re.fullmatch(r"[0-9a-fA-F]{64}", hexpart):
            raise OpsError("the private key must be 64 hexadecimal digits (optionally 0x-prefixed)")
        address = create_keystore(path, _new_password(password), private_key="0x" + hexpart,
                                  scrypt_n=_scrypt_n(scrypt_n))
        _emit(as_json, {"ok": True, "address": address, "keystore": str(path)},
              [f"address  {address}", f"keystore {path} (encrypted; mode 600)"])


def _scrypt_n(value: int | None) -> int:
    from .keys import PRODUCTION_SCRYPT_N

    if value is None:
        return PRODUCTION_SCRYPT_N
    if value & (value - 1):
        raise OpsError("--scrypt-n must be a power of two")
    return value


def _is_keystore(path: Path) -> str | None:
    from .keys import KeystoreError, keystore_address

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


_SKIP_DIRS = {"node_modules", ".git", ".venv", "__pycache__", "ipfs"}


@keys_app.command("list", epilog=EXIT_CODES_HELP)
@_reflow
def keys_list(
    paths: Optional[list[Path]] = typer.Argument(None, help="Keystore files or directories to search (default: .)."),
    as_json: bool = _json_opt(),
) -> None:
    """List keystores and their addresses, without decrypting anything. Directories are searched
    recursively for *.json keystores (skipping node_modules, .git, .venv and IPFS repos)."""
    with reporting(as_json):
        found: list[dict[str, str]] = []
        for root in paths or [Path(".")]:
            if root.is_file():
                candidates = [root]
            elif root.is_dir():
                candidates = []
                for dirpath, dirnames, filenames in os.walk(root):
                    dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                    candidates += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".json")]
            else:
                raise OpsError(f"{root} does not exist")
            for p in candidates:
                addr = _is_keystore(p)
                if addr:
                    found.append({"address": addr, "keystore": str(p)})
        _emit(as_json, {"ok": True, "keystores": found},
              [f"{k['address']}  {k['keystore']}" for k in found] or ["no keystores found"])


@keys_app.command("address", epilog=EXIT_CODES_HELP)
@_reflow
def keys_address(
    path: Path = typer.Argument(..., help="A keystore file."),
    check: bool = typer.Option(False, "--check", help="Also decrypt it, to prove the password opens it (exit 1 if not)."),
    password: str = typer.Option("prompt", "--password", help="With --check: prompt, env:VARIABLE or file:PATH."),
    as_json: bool = _json_opt(),
) -> None:
    """Print the address a keystore holds. Without --check the keystore is not decrypted."""
    with reporting(as_json):
        from .keys import keystore_address, load_account, read_password

        address = keystore_address(path)
        if check:
            account = load_account(path, read_password(check_password_source(password)))
            if account.address != address:
                raise OpsError(f"{path} says {address} but its key belongs to {account.address}: the file was altered")
        _emit(as_json, {"ok": True, "address": address, "keystore": str(path), "checked": check},
              [address + ("  (password checked)" if check else "")])


# ============================================================================ CLI: init


@_reflow
def init_command(
    org: str = typer.Argument(..., help="The organisation's name, as the admin admits it (1-64 characters)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="The organisation's directory; the config is DIR/node.toml "
                                                           "(default: ./ORG)."),
    deployment: Optional[Path] = typer.Option(None, "--deployment", "-d",
                                              help="The deployment file the admin handed out (default: DIR/deployment.json). "
                                                   "When it exists, the chain id and RPC URL are taken from it."),
    rpc: Optional[str] = typer.Option(None, "--rpc", help=f"Your chain node's JSON-RPC URL (default: the deployment "
                                                          f"file's, else {DEFAULT_RPC})."),
    poa: bool = typer.Option(False, "--poa/--no-poa", help="The chain is proof-of-authority (Besu QBFT, Clique)."),
    ipfs_api: Optional[str] = typer.Option(None, "--ipfs-api", help=f"Your IPFS node's RPC API (default: {DEFAULT_IPFS_API})."),
    ipfs_repo: Optional[Path] = typer.Option(None, "--ipfs-repo", help="Take the API URL from this dev IPFS node's repo "
                                                                       "(`fedledger ipfs init --repo`)."),
    keystore: Optional[Path] = typer.Option(None, "--keystore", help="Your member keystore (default: DIR/keystore.json)."),
    password: str = typer.Option("prompt", "--password", help="Where `node run` gets the keystore password: prompt, "
                                                              "env:VARIABLE or file:PATH."),
    task: int = typer.Option(0, "--task", min=0, help="The task id to take part in (`fedledger task list`)."),
    builtin: str = typer.Option("digits-mlp", "--builtin", help="The model and data of the task: digits-mlp, "
                                                                "breast-cancer, cifar10-cnn."),
    data: Optional[str] = typer.Option(None, "--data", help="Data path, for tasks that read files (cifar10-cnn)."),
    partition: str = typer.Option("iid", "--partition", help="Your share of the built-in data: iid, dirichlet:ALPHA, "
                                                             "shards:K, skew:DEF."),
    org_index: int = typer.Option(0, "--org-index", min=0, help="Which share is yours: 0 .. num-orgs-1."),
    num_orgs: int = typer.Option(1, "--num-orgs", min=1, help="Into how many shares the data is split."),
    partition_seed: int = typer.Option(0, "--partition-seed", min=0, help="Seed of the split (the same for everyone)."),
    epochs: int = typer.Option(1, "--epochs", min=1, help="Local epochs per round."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Local learning rate (default: the task's)."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum (default: the task's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Local batch size (default: the task's)."),
    mu: float = typer.Option(0.0, "--mu", min=0.0, help="FedProx proximal term (0: plain local training)."),
    lr_decay: float = typer.Option(1.0, "--lr-decay", min=0.0, max=1.0, help="Round r trains with lr x LR_DECAY^(r-1) (1: constant)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of local training."),
    gateway: Optional[list[str]] = typer.Option(None, "--gateway", help="ADDRESS=URL: another member's IPFS gateway "
                                                "(`fedledger ipfs status` prints it), tried before the swarm for what "
                                                "that member stored; repeat for each. Without any, models move "
                                                "through the swarm alone."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing DIR/node.toml."),
    as_json: bool = _json_opt(),
) -> None:
    """Write an organisation's node config, DIR/node.toml, commented, ready for `fedledger node
    run --config DIR/node.toml`. Paths in it are relative to DIR, so the directory can move.

    It names your chain node, the deployment file, your IPFS node, your keystore and where its
    password comes from, the task and how you train. Nothing secret is written. Missing files
    (keystore, deployment) are reported as warnings: create or fetch them before `node run`."""
    with reporting(as_json):
        from .deploy import Deployment
        from .partition import parse_scheme
        from .tasks import get_task

        if not org or len(org.encode()) > 64:
            raise OpsError("the organisation name must be 1-64 bytes")
        spec = get_task(builtin)
        parse_scheme(partition)
        if org_index >= num_orgs:
            raise OpsError(f"--org-index {org_index} must be below --num-orgs {num_orgs}")
        check_password_source(password)
        if password.startswith("file:"):
            # `node run` reads the file relative to ITS working directory: pin the path down now.
            password = "file:" + str(Path(password[5:]).expanduser().resolve())
        if data:  # read by `node run` from its own working directory: pin the path down now
            data = str(Path(data).expanduser().resolve())
        if spec.needs_data_path and not data:
            _warn(f"{builtin} needs --data (its data files); add `data = ...` under [task] before `node run`")
        base = (dir or Path(org)).expanduser()
        cfg_path = base / "node.toml"
        if cfg_path.exists() and not force:
            raise OpsError(f"{cfg_path} exists; pass --force to overwrite it")
        dep_path = (deployment or base / "deployment.json").expanduser()
        chain_id = None
        dep_rpc = None
        if dep_path.exists():
            dep = Deployment.load(dep_path)
            chain_id, dep_rpc = dep.chain_id, dep.rpc_url
        else:
            _warn(f"no deployment file at {dep_path} yet: put the one the admin hands out there")
        api = _ipfs_api_of(ipfs_api, ipfs_repo) or DEFAULT_IPFS_API
        url = rpc or dep_rpc or DEFAULT_RPC
        for what, value in (("--rpc", url), ("--ipfs-api", api)):
            if not re.match(r"^https?://", value):
                raise OpsError(f"{what} {value!r} must be an http:// or https:// URL")
        ks = (keystore or base / "keystore.json").expanduser()
        if not ks.exists():
            _warn(f"no keystore at {ks} yet: create it with `fedledger keys new {ks}`")
        _password_file_warning(password)
        d = spec.default_config
        training = TrainingConfig(epochs=epochs, lr=lr if lr is not None else d.lr,
                                  momentum=momentum if momentum is not None else d.momentum,
                                  batch_size=batch_size or d.batch_size, mu=mu, seed=seed, lr_decay=lr_decay)
        gateways = {}
        for item in gateway or []:
            address, sep, gw_url = item.partition("=")
            if not sep:
                raise OpsError(f"--gateway {item!r} must be ADDRESS=URL, e.g. 0xAbC...=http://10.0.0.12:8080")
            gateways[parse_address(address.strip())] = gw_url.strip()
        gateways = parse_gateways(gateways, Path("--gateway"))
        base.mkdir(parents=True, exist_ok=True)
        root = base.resolve()

        def rel(p: Path) -> Path:
            return Path(os.path.relpath(p.resolve(), root))

        cfg = NodeConfig(name=org, work_dir=Path("."), rpc_url=url, deployment=rel(dep_path), ipfs_api=api,
                         keystore=rel(ks), password=password, chain_id=chain_id, poa=poa, task=task, builtin=builtin,
                         data=data, partition=partition, org_index=org_index, num_orgs=num_orgs,
                         partition_seed=partition_seed, training=training, gateways=gateways)
        text = render_node_config(cfg)
        cfg_path.write_text(text)
        NodeConfig.load(cfg_path)  # what we wrote must load
        _emit(as_json, {"ok": True, "config": str(cfg_path), "name": org, "rpc_url": url, "chain_id": chain_id,
                        "ipfs_api": api, "keystore": str(ks), "deployment": str(dep_path), "task": task},
              [f"wrote {cfg_path}", f"next: fedledger node run --config {cfg_path}"])


# ============================================================================ CLI: member

member_app = typer.Typer(help="The consortium's members. Adding and removing are the admin's; anyone can list.",
                         no_args_is_help=True, epilog=EXIT_CODES_HELP)


@member_app.command("add", epilog=EXIT_CODES_HELP)
@_reflow
def member_add(
    member: str = typer.Argument(..., help="The member's address (0x...), or its keystore file (read without decrypting)."),
    name: str = typer.Option(..., "--name", help="The organisation's name, 1-64 bytes, shown in lineage and reports."),
    fund: float = typer.Option(0.0, "--fund", help="Also send this much ether from the admin for gas (chains that "
                                                   "charge gas, such as the devnet; free-gas Besu needs none)."),
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), keystore: Optional[Path] = _keystore_opt(),
    password: Optional[str] = _password_opt(), devnet: Optional[Path] = _devnet_opt(),
    as_json: bool = _json_opt(),
) -> None:
    """Admit an organisation: addMember(address, name), signed with the admin's key.

    The chain refuses (exit 4) a caller that is not the admin (NotAdmin), an address that is
    already a member (AlreadyMember) and an empty or too long name (InvalidArgument)."""
    with reporting(as_json):
        address = parse_address(member)
        wei = _ether_to_wei(fund)
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        tx = acc.client.add_member(address, name)
        data: dict[str, Any] = {"ok": True, "member": address, "name": name, "tx_hash": tx.tx_hash,
                                "block": tx.block_number, "gas_used": tx.gas_used, "funded_wei": 0}
        lines = [f"admitted {name} ({address}) in block {tx.block_number}"]
        if wei:
            data["fund_tx_hash"] = send_ether(acc.client, address, wei)
            data["funded_wei"] = wei
            lines.append(f"sent {fund:g} ether to {address} for gas")
        else:
            w3 = acc.client.w3
            price = acc.client._rpc(lambda: w3.eth.gas_price)
            if price > 0 and acc.client._rpc(lambda: w3.eth.get_balance(address)) == 0:
                _warn(f"{address} holds no ether and this chain charges gas ({price} wei per gas): its node cannot "
                      "send transactions. Fund it (`fedledger member fund`), or run a free-gas chain (docs/deploy.md)")
        _emit(as_json, data, lines)


@member_app.command("fund", epilog=EXIT_CODES_HELP)
@_reflow
def member_fund(
    member: str = typer.Argument(..., help="The address (0x...) or keystore file to send ether to."),
    ether: float = typer.Option(..., "--ether", help="How much ether to send."),
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), keystore: Optional[Path] = _keystore_opt(),
    password: Optional[str] = _password_opt(), devnet: Optional[Path] = _devnet_opt(),
    as_json: bool = _json_opt(),
) -> None:
    """Send ether for gas to a member (from the admin, or any account whose keystore you give).
    Only chains that charge gas need this, such as the devnet; a free-gas Besu network
    (docs/deploy.md) does not. The node rejects the transfer (exit 4) if the sender cannot pay."""
    with reporting(as_json):
        address = parse_address(member)
        wei = _ether_to_wei(ether)
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        tx_hash = send_ether(acc.client, address, wei)
        balance = acc.client._rpc(lambda: acc.client.w3.eth.get_balance(address))
        _emit(as_json, {"ok": True, "member": address, "wei": wei, "tx_hash": tx_hash, "balance_wei": balance},
              [f"sent {ether:g} ether to {address}; it now holds {balance / 10**18:g} ether"])


@member_app.command("remove", epilog=EXIT_CODES_HELP)
@_reflow
def member_remove(
    member: str = typer.Argument(..., help="The member's address (0x...) or its keystore file."),
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), keystore: Optional[Path] = _keystore_opt(),
    password: Optional[str] = _password_opt(), devnet: Optional[Path] = _devnet_opt(),
    as_json: bool = _json_opt(),
) -> None:
    """Remove a member: removeMember(address), signed with the admin's key. Its past updates stay
    in the lineage; from now on the chain refuses its submissions (NotMember). Refused with
    NotMember when the address is not a member, NotAdmin when you are not the admin."""
    with reporting(as_json):
        address = parse_address(member)
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        tx = acc.client.remove_member(address)
        _emit(as_json, {"ok": True, "member": address, "tx_hash": tx.tx_hash, "block": tx.block_number},
              [f"removed {address} in block {tx.block_number}"])


@member_app.command("list", epilog=EXIT_CODES_HELP)
@_reflow
def member_list(
    all_: bool = typer.Option(False, "--all", help="Also list removed members."),
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), as_json: bool = _json_opt(),
) -> None:
    """List the members, from the chain's event log since the deployment block: address, name,
    and whether each is still a member. Needs no key."""
    with reporting(as_json):
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        members = [m for m in _members(acc.client, acc.deployment.block).values() if all_ or m["active"]]
        admin = acc.client.admin()
        lines = [f"admin {admin}"] + [f"{m['address']}  {m['name']}" + ("" if m["active"] else "  (removed)")
                                      for m in members]
        _emit(as_json, {"ok": True, "admin": admin, "contract": acc.deployment.address,
                        "chain_id": acc.deployment.chain_id, "members": members}, lines)


# ============================================================================ CLI: task

task_app = typer.Typer(help="Federated training tasks: create one (admin), list them, show one with its lineage.",
                       no_args_is_help=True, epilog=EXIT_CODES_HELP)


@task_app.command("create", epilog=EXIT_CODES_HELP)
@_reflow
def task_create(
    builtin: Optional[str] = typer.Option(None, "--builtin", help="Built-in task whose model the members train "
                                                                  "(digits-mlp, breast-cancer, cifar10-cnn). Alone: the "
                                                                  "genesis model is its initial weights for --seed."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the built-in genesis model."),
    genesis: Optional[Path] = typer.Option(None, "--genesis", help="A safetensors file to start from instead. It is "
                                                                   "validated (dtypes, finite values, and the --builtin "
                                                                   "model's names and shapes when given)."),
    rule: str = typer.Option("fedavg", "--rule", help="Aggregation rule: fedavg, median, trimmed_mean, geomedian, krum, "
                                                      "multikrum, bulyan."),
    rule_params: str = typer.Option("{}", "--rule-params", help='Rule parameters as JSON, e.g. \'{"beta": 0.1}\'.'),
    min_participants: Optional[int] = typer.Option(None, "--min-participants", min=1,
                                                   help="Updates a round needs before it may close at its deadline "
                                                        "(default: half the members, rounded up)."),
    max_participants: Optional[int] = typer.Option(None, "--max-participants", min=1,
                                                   help="A round closes at once with this many updates (default: the "
                                                        "number of members now)."),
    submission_window: int = typer.Option(60, "--submission-window", min=1, help="Seconds a round accepts updates."),
    aggregation_window: int = typer.Option(60, "--aggregation-window", min=1, help="Seconds the leader has to publish."),
    verification_window: int = typer.Option(60, "--verification-window", min=1, help="Seconds verifiers have to attest."),
    verifiers: int = typer.Option(2, "--verifiers", min=0, max=16, help="Verifiers per round; 0 trusts the leader."),
    quorum: Optional[int] = typer.Option(None, "--quorum", min=0, help="Agreements that finalize (default: all verifiers)."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Rounds the task runs."),
    ipfs_api: Optional[str] = typer.Option(None, "--ipfs-api", help=f"YOUR IPFS node's RPC API: the genesis model and "
                                                                    f"spec are added and pinned there (default: from "
                                                                    f"--config, else {DEFAULT_IPFS_API})."),
    ipfs_repo: Optional[Path] = typer.Option(None, "--ipfs-repo", help="Take the API URL from this dev IPFS node's "
                                                                       "repo (`fedledger ipfs init --repo`)."),
    out: Path = typer.Option(Path("tasks"), "--out", help="Where the genesis model, its spec and task.json are kept "
                                                          "(OUT/taskID/)."),
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), keystore: Optional[Path] = _keystore_opt(),
    password: Optional[str] = _password_opt(), devnet: Optional[Path] = _devnet_opt(),
    as_json: bool = _json_opt(),
) -> None:
    """Create a task (admin only): build the genesis model, write it as OUT/taskID/genesis.safetensors,
    add it and its ModelSpec JSON to your IPFS node (pinned: keep that node up, the members fetch
    both from it), then createTask on chain, which opens round 1 at once.

    The members must run nodes whose --builtin task has the same model; `fedledger init --task ID`
    points their node at the new task. The chain refuses (exit 4) a caller that is not the admin
    (NotAdmin) and inconsistent settings (InvalidArgument)."""
    with reporting(as_json):
        if builtin is None and genesis is None:
            raise OpsError("give --builtin NAME (its initial model for --seed) or --genesis FILE.safetensors")
        try:
            params = json.loads(rule_params)
        except ValueError as exc:
            raise OpsError(f"--rule-params is not valid JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise OpsError("--rule-params must be a JSON object")
        tensors = genesis_weights(builtin, seed, genesis)
        cfg = NodeConfig.load(config) if config is not None else None
        ipfs = IpfsClient(_ipfs_api_of(ipfs_api, ipfs_repo) or (cfg.ipfs_api if cfg else DEFAULT_IPFS_API), timeout=60)
        ipfs.id()  # unreachable: exit 3 before anything is written or sent
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        members = [m for m in _members(acc.client, acc.deployment.block).values() if m["active"]]
        n = len(members)
        max_p = max_participants or max(n, 1)
        min_p = min_participants or max(1, min(max_p, (n + 1) // 2))
        plan = TaskPlan(rule=rule, rule_params=params, min_participants=min_p, max_participants=max_p,
                        submission_window=submission_window, aggregation_window=aggregation_window,
                        verification_window=verification_window, verifiers=verifiers, quorum=quorum, rounds=rounds)
        plan.check()
        if n < min_p:
            _warn(f"the consortium has {n} members; rounds cannot close before {min_p} submit")
        if verifiers > 0 and verifiers >= max_p:
            _warn(f"{verifiers} verifiers with at most {max_p} participants: a round has at most {max_p - 1} "
                  "verifiers besides its leader")
        task_dir = out / f"task{acc.client.task_count()}"
        if (task_dir / "task.json").exists():
            raise OpsError(f"{task_dir} holds the record of an earlier task; choose another --out")
        with ipfs:
            created = create_task(acc.client, ipfs, tensors, task_dir / "genesis.safetensors", plan,
                                  spec_path=task_dir / "model-spec.json")
        if task_dir.name != f"task{created.task}":  # another task was created meanwhile
            final = out / f"task{created.task}"
            task_dir.rename(final)
            created.genesis_path = final / "genesis.safetensors"
            created.spec_path = final / "model-spec.json"
            task_dir = final
        record = created.to_dict() | {"contract": acc.deployment.address, "chain_id": acc.deployment.chain_id,
                                      "builtin": builtin, "seed": seed if genesis is None else None,
                                      "genesis_source": str(genesis) if genesis else None}
        (task_dir / "task.json").write_text(json.dumps(record, indent=2) + "\n")
        c = created.config
        _emit(as_json, {"ok": True} | record, [
            f"task {created.task} created in block {created.block}: rule {c.rule_id}, {c.max_rounds} rounds, "
            f"{c.min_participants}-{c.max_participants} participants, {c.verifiers_per_round} verifiers (quorum {c.quorum})",
            f"genesis {c.genesis_sha256}  {c.genesis_cid}",
            f"model spec {c.model_spec_cid}",
            f"record: {task_dir / 'task.json'}",
            f"next: members run `fedledger init ORG --task {created.task} --builtin {builtin or 'NAME'} ...` and "
            "`fedledger node run`",
        ])


@task_app.command("list", epilog=EXIT_CODES_HELP)
@_reflow
def task_list(
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), as_json: bool = _json_opt(),
) -> None:
    """List every task: rule, rounds, the current round and its phase, or completed. Needs no key."""
    with reporting(as_json):
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        members = _members(acc.client, acc.deployment.block)
        tasks = [task_summary(acc.client, t, members) for t in range(acc.client.task_count())]
        lines = []
        for t in tasks:
            if t["completed"]:
                lines.append(f"task {t['task']} [{t['rule']}] completed after {t['round']} rounds, "
                             f"final model {t['global_sha256'][:16]}")
            else:
                lines.append(f"task {t['task']} [{t['rule']}] round {t['round']}/{t['rounds']} {t['phase']}, "
                             f"{t['updates']} updates" + (f", leader {t['leader']}" if t.get("leader") else ""))
        _emit(as_json, {"ok": True, "tasks": tasks}, lines or ["no tasks yet"])


@task_app.command("show", epilog=EXIT_CODES_HELP)
@_reflow
def task_show(
    task: int = typer.Argument(..., min=0, help="The task id."),
    deployment: Optional[Path] = _deployment_opt(), rpc: Optional[str] = _rpc_opt(), poa: Optional[bool] = _poa_opt(),
    config: Optional[Path] = _config_opt(), as_json: bool = _json_opt(),
) -> None:
    """Show one task: its settings, where the round stands, and its lineage: every finalized
    round's global model (cid, sha256, parent) with its leader and the updates it was built from,
    read from the chain's event log. Refused with UnknownTask when there is no such task."""
    with reporting(as_json):
        from fedledger.aggregation.registry import decode_params

        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        client = acc.client
        members = _members(client, acc.deployment.block)
        summary = task_summary(client, task, members)
        cfg = client.task_config(task)
        config_out = asdict(cfg)
        config_out["rule_params"] = decode_params(cfg.rule_id, cfg.rule_params)
        events = client.events(from_block=acc.deployment.block, task=task,
                               names=["TaskCreated", "UpdateSubmitted", "RoundFinalized", "AttemptFailed"])
        updates: dict[int, list[dict[str, Any]]] = {}
        failures: dict[int, list[dict[str, Any]]] = {}
        rounds = []
        created = None
        for ev in events:
            if ev.name == "TaskCreated":
                created = {"creator": ev["creator"], "block": ev.block_number, "tx_hash": ev.tx_hash}
            elif ev.name == "UpdateSubmitted":
                updates.setdefault(ev["round"], []).append(
                    {"member": _name(members, ev["member"]), "address": ev["member"], "cid": ev["cid"],
                     "sha256": ev["sha256"], "num_samples": ev["numSamples"], "parent": ev["parent"]})
            elif ev.name == "AttemptFailed":
                failures.setdefault(ev["round"], []).append(
                    {"leader": _name(members, ev["leader"]), "attempt": ev["attempt"],
                     "reason": ["leader_timeout", "rejected", "unverified"][ev["reason"]]})
            else:
                rounds.append({"round": ev["round"], "leader": _name(members, ev["leader"]), "attempt": ev["attempt"],
                               "parent": ev["parent"], "cid": ev["cid"], "sha256": ev["sha256"],
                               "block": ev.block_number, "updates": updates.get(ev["round"], []),
                               "failed_attempts": failures.get(ev["round"], [])})
        data = {"ok": True, **summary, "config": config_out, "created": created, "lineage": rounds}
        lines = [f"task {task}: rule {cfg.rule_id} {json.dumps(config_out['rule_params'])}, {cfg.max_rounds} rounds, "
                 f"{cfg.min_participants}-{cfg.max_participants} participants, {cfg.verifiers_per_round} verifiers "
                 f"(quorum {cfg.quorum}), windows {cfg.submission_window}/{cfg.aggregation_window}/"
                 f"{cfg.verification_window} s",
                 f"genesis {cfg.genesis_sha256}  {cfg.genesis_cid}  spec {cfg.model_spec_cid}"]
        if summary["completed"]:
            lines.append(f"completed after {summary['round']} rounds")
        else:
            lines.append(f"round {summary['round']}: {summary['phase']}, {summary['updates']} updates"
                         + (f", leader {summary['leader']} (attempt {summary['attempt']})" if summary.get("leader") else ""))
        for r in rounds:
            lines.append(f"round {r['round']}: {r['sha256'][:16]} <- {r['parent'][:16]}  leader {r['leader']}, "
                         f"{len(r['updates'])} updates ({', '.join(u['member'] for u in r['updates'])})")
        _emit(as_json, data, lines)


# ============================================================================ CLI: ipfs

ipfs_app = typer.Typer(help="This organisation's dev IPFS node (js-ipfs from `make setup`), for trying fedledger "
                            "without Kubo. Its API stays on 127.0.0.1; its swarm listens where other organisations "
                            "can reach it. In production run Kubo instead (docs/deploy.md).",
                       no_args_is_help=True, epilog=EXIT_CODES_HELP)


def _repo_opt() -> Any:
    return typer.Option(..., "--repo", help="The node's repo directory (created if needed), e.g. org1/ipfs.")


def _daemon(repo: Path, name: Optional[str], swarm_host: Optional[str], swarm_port: Optional[int],
            api_port: Optional[int], bootstrap: Optional[list[str]], gateway_port: Optional[int] = None) -> OrgIpfsDaemon:
    if name is None and not (repo / META_FILE).exists():
        name = repo.resolve().parent.name or "ipfs"
    return OrgIpfsDaemon(repo, name, swarm_host=swarm_host,
                         swarm_port=swarm_port, api_port=api_port, bootstrap=bootstrap or None,
                         gateway_port=gateway_port)


_SWARM_HOST_HELP = ("IPv4 address the swarm listens on, the one other organisations dial (default 127.0.0.1: "
                    "this machine only). Kept for later starts.")
_GATEWAY_PORT_HELP = ("Port of the read-only HTTP gateway, on the swarm address: other organisations' peers fetch "
                      "what this node stored from it (default: a free one). Kept for later starts.")
_BOOTSTRAP_HELP = ("Another organisation's node, /ip4/ADDR/tcp/PORT/p2p/PEER_ID (repeat the option for each). The "
                   "daemon dials and redials them: your private swarm. Replaces the stored list when given.")


def _ipfs_lines(info: Mapping[str, Any]) -> list[str]:
    lines = [f"IPFS node {info['name']}: {'running, pid ' + str(info['pid']) if info['running'] else 'stopped'}",
             f"api      {info['api_url']}   (this machine only)",
             f"peer id  {info['peer_id']}",
             f"swarm    {' '.join(info['swarm_addrs'])}   (hand this to the other organisations)",
             f"gateway  {info['gateway_url']}   (read-only; hand it over with your member address)"]
    lines += [f"bootstrap {a}" for a in info["bootstrap"]]
    if info.get("connected_peers") is not None:
        lines.append(f"connected to {len(info['connected_peers'])} peers")
    return lines


@ipfs_app.command("init", epilog=EXIT_CODES_HELP)
@_reflow
def ipfs_init(
    repo: Path = _repo_opt(),
    name: Optional[str] = typer.Option(None, "--name", help="A label for logs (default: the repo's parent directory)."),
    swarm_host: Optional[str] = typer.Option(None, "--swarm-host", help=_SWARM_HOST_HELP),
    swarm_port: Optional[int] = typer.Option(None, "--swarm-port", min=1, max=65535, help="Swarm TCP port (default: a free one)."),
    api_port: Optional[int] = typer.Option(None, "--api-port", min=1, max=65535, help="API port on 127.0.0.1 (default: a free one)."),
    gateway_port: Optional[int] = typer.Option(None, "--gateway-port", min=1, max=65535, help=_GATEWAY_PORT_HELP),
    bootstrap: Optional[list[str]] = typer.Option(None, "--bootstrap", help=_BOOTSTRAP_HELP),
    as_json: bool = _json_opt(),
) -> None:
    """Create the node's repo (its identity) and config without starting it, and print its peer
    id and swarm multiaddr: what the other organisations put in their --bootstrap lists."""
    with reporting(as_json):
        d = _daemon(repo, name, swarm_host, swarm_port, api_port, bootstrap, gateway_port).init()
        info = d.describe()
        _emit(as_json, {"ok": True} | info, _ipfs_lines(info))


@ipfs_app.command("up", epilog=EXIT_CODES_HELP)
@_reflow
def ipfs_up(
    repo: Path = _repo_opt(),
    name: Optional[str] = typer.Option(None, "--name", help="A label for logs (default: the repo's parent directory)."),
    swarm_host: Optional[str] = typer.Option(None, "--swarm-host", help=_SWARM_HOST_HELP),
    swarm_port: Optional[int] = typer.Option(None, "--swarm-port", min=1, max=65535, help="Swarm TCP port."),
    api_port: Optional[int] = typer.Option(None, "--api-port", min=1, max=65535, help="API port on 127.0.0.1."),
    gateway_port: Optional[int] = typer.Option(None, "--gateway-port", min=1, max=65535, help=_GATEWAY_PORT_HELP),
    bootstrap: Optional[list[str]] = typer.Option(None, "--bootstrap", help=_BOOTSTRAP_HELP),
    timeout: float = typer.Option(90.0, "--timeout", help="Seconds to wait for the API to answer."),
    as_json: bool = _json_opt(),
) -> None:
    """Start the node in the background (initializing the repo first if needed), wait until its
    API answers, and dial the bootstrap peers once (those not up yet are redialled by the daemon
    later). Exit 3 if it does not come up; its log is REPO/daemon.log. Stop it with `ipfs down`."""
    with reporting(as_json):
        d = _daemon(repo, name, swarm_host, swarm_port, api_port, bootstrap, gateway_port)
        was_running = d.init().running
        d.start(timeout=timeout)
        dialled = d.dial_bootstrap()
        info = d.describe() | {"already_running": was_running, "bootstrap_dialled": dialled}
        lines = _ipfs_lines(info) + [f"  {addr}: {state}" for addr, state in dialled.items()]
        _emit(as_json, {"ok": True} | info, lines)


@ipfs_app.command("addr", epilog=EXIT_CODES_HELP)
@_reflow
def ipfs_addr(repo: Path = _repo_opt(),
              gateway: bool = typer.Option(False, "--gateway", help="Print the gateway URL instead: the value "
                                                                    "other organisations pass to `init --gateway`.")) -> None:
    """Print the node's swarm multiaddr alone, for scripts: the value other organisations pass as
    --bootstrap. The node need not be running."""
    with reporting(False):
        if not (repo / META_FILE).exists():
            raise OpsError(f"{repo} is not a fedledger IPFS repo: run `fedledger ipfs init --repo {repo}`")
        daemon = OrgIpfsDaemon(repo)
        print(daemon.gateway_url if gateway else daemon.swarm_addrs()[0])


@ipfs_app.command("down", epilog=EXIT_CODES_HELP)
@_reflow
def ipfs_down(repo: Path = _repo_opt(), as_json: bool = _json_opt()) -> None:
    """Stop the node (SIGTERM; it closes its repo cleanly). Does nothing if it is not running."""
    with reporting(as_json):
        d = OrgIpfsDaemon(repo)
        was = d.running
        d.stop()
        _emit(as_json, {"ok": True, "repo": str(repo), "was_running": was},
              [f"stopped the IPFS node of {repo}" if was else f"the IPFS node of {repo} was not running"])


@ipfs_app.command("status", epilog=EXIT_CODES_HELP)
@_reflow
def ipfs_status(repo: Path = _repo_opt(), as_json: bool = _json_opt()) -> None:
    """Show the node: running or not, API URL, peer id, swarm multiaddr, bootstrap list and
    connected peers. Exit 3 when it is not running."""
    with reporting(as_json):
        if not (repo / META_FILE).exists():
            raise OpsError(f"{repo} is not a fedledger IPFS repo: run `fedledger ipfs init --repo {repo}`")
        info = OrgIpfsDaemon(repo).describe()
        _emit(as_json, {"ok": info["running"]} | info, _ipfs_lines(info))
        if not info["running"]:
            raise typer.Exit(EXIT_UNREACHABLE)


# ============================================================================ registration


def register(app: typer.Typer) -> None:
    """Add the operator commands to the `fedledger` CLI: keys, member, task, ipfs and init."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(member_app, name="member")
    app.add_typer(task_app, name="task")
    app.add_typer(ipfs_app, name="ipfs")
    app.command("init", epilog=EXIT_CODES_HELP)(init_command)


def _full_app() -> typer.Typer:
    """The `fedledger` CLI with the operator commands, whether or not cli.py registers them."""
    from .cli import app

    if not any(g.name == "keys" for g in app.registered_groups):
        register(app)
    return app


if __name__ == "__main__":  # python -m fedledger.node.ops ... == fedledger ...
    _full_app()(prog_name="fedledger")
