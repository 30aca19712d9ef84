"""Where an operator command's chain is and who signs for it; members and addresses as operators
give them. The pieces every operator command shares."""

from __future__ import annotations

import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from eth_account import Account

from .. import defaults
from ..chain.client import ChainClient
from ..chain.deployment import Deployment
from ..chain.devnet import CHAIN_ID, DEV_KEYS, Devnet
from ..chain.keys import keystore_address, load_account, read_password
from ..errors import InputError
from ..peer.config import NodeConfig


def check_password_source(source: str) -> str:
    """Refuse a password given in clear; accept prompt, env:VAR, file:PATH (not read here)."""
    kind, sep, ref = source.partition(":")
    if source == "prompt" or (sep and kind in ("env", "file") and ref):
        return source
    # The value is not repeated: it may be a password someone typed where its source belongs.
    raise InputError("the password source is not understood: use 'prompt', 'env:VARIABLE' or 'file:PATH' "
                   "(a password itself never goes on the command line or in a config)")


def password_file_warning(source: str) -> str | None:
    """What is wrong with a `file:` password source, if anything: missing, or readable by others."""
    kind, _, ref = source.partition(":")
    if kind != "file":
        return None
    path = Path(ref).expanduser()
    try:
        mode = path.stat().st_mode
    except OSError:
        return f"password file {path} does not exist yet; create it with mode 600 before `fedledger node run`"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"password file {path} is readable by other users (mode {stat.S_IMODE(mode):o}): chmod 600 {path}"
    return None


def parse_address(value: str) -> str:
    """A member given as a 0x address or as the path of its keystore (read without decrypting)."""
    from eth_utils import is_address, to_checksum_address

    text = value.strip()
    if text.lower().startswith("0x"):
        if not is_address(text):
            raise InputError(f"{value!r} is not an Ethereum address (0x followed by 40 hex digits)")
        return to_checksum_address(text)
    path = Path(text).expanduser()
    if path.is_file():
        return keystore_address(path)
    raise InputError(f"{value!r} is neither a 0x address nor an existing keystore file")


def ether_to_wei(amount: float) -> int:
    if not math.isfinite(amount) or amount < 0:
        raise InputError(f"an amount of ether must be a non-negative number, got {amount}")
    return int(round(amount * 10**18))


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
    cfg = NodeConfig.load(config) if config is not None else None
    dep_path = deployment or (cfg.chain.deployment if cfg else Path(defaults.DEPLOYMENT_FILE))
    dep = Deployment.load(dep_path)
    use_poa = poa if poa is not None else (cfg.chain.poa if cfg else False)
    account = None
    if devnet is not None and (keystore is not None or password is not None):
        raise InputError("give --devnet DIR (its dev key signs) or --keystore/--password, not both")
    if devnet is not None:
        net = Devnet.load(devnet)
        if net.anvil is None:
            raise InputError(f"no devnet recorded in {devnet}: run `fedledger devnet up --dir {devnet}`")
        rpc = rpc or net.anvil.rpc_url
        if dep.chain_id != CHAIN_ID:
            raise InputError(f"--devnet signs with a public dev key; the deployment is on chain {dep.chain_id}, "
                           f"not the devnet's {CHAIN_ID}: use --keystore")
        if sign:
            account = Account.from_key(DEV_KEYS[0])
    elif sign:
        ks = keystore or (cfg.keystore.path if cfg else None)
        if ks is None:
            raise InputError("this command signs a transaction: give --keystore (the admin's keystore), "
                           "--config (an organisation's node config) or --devnet DIR (local devnet)")
        source = password or (cfg.keystore.password if cfg and keystore is None else "prompt")
        account = load_account(ks, read_password(check_password_source(source)))
    url = rpc or (cfg.chain.rpc_url if cfg else None) or dep.rpc_url
    client = dep.client(rpc_url=url, account=account, poa=use_poa)
    return ChainAccess(client, dep, Path(dep_path))


def members_of(client: ChainClient, from_block: int) -> dict[str, dict[str, Any]]:
    """Every address ever admitted, from the event log: name, active, when it joined/left."""
    out: dict[str, dict[str, Any]] = {}
    for ev in client.events(from_block=from_block, names=["MemberAdded", "MemberRemoved"]):
        if ev.name == "MemberAdded":
            out[ev["member"]] = {"address": ev["member"], "name": ev["name"], "active": True,
                                 "added_block": ev.block_number, "removed_block": None}
        elif ev["member"] in out:
            out[ev["member"]].update(active=False, removed_block=ev.block_number)
    return out


def name_of(members: dict, address: str | None) -> str | None:
    """A member's name from `members_of`, else its address."""
    if address is None:
        return None
    m = members.get(address)
    return m["name"] if m else address


def ipfs_api_of(ipfs_api: Optional[str], ipfs_repo: Optional[Path]) -> str | None:
    """The IPFS API URL an operator named: given directly, or read from a dev node's repo."""
    from ..storage.daemon import META_FILE
    from ..storage.orgnode import OrgIpfsDaemon

    if ipfs_repo is not None and ipfs_api is not None:
        raise InputError("give --ipfs-api or --ipfs-repo, not both")
    if ipfs_repo is None:
        return ipfs_api
    if not (ipfs_repo / META_FILE).exists():
        raise InputError(f"{ipfs_repo} is not a fedledger IPFS repo: run `fedledger ipfs init --repo {ipfs_repo}`")
    return OrgIpfsDaemon(ipfs_repo).api_url
