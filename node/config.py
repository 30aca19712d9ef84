"""An organisation's node configuration (TOML): where the chain, IPFS, key and data are.

One file per organisation; `fedledger init ORG` writes a commented one, `fedledger sim` writes
one per simulated organisation. Nothing secret goes in it: the keystore is encrypted and its
password comes from `prompt`, `env:VAR` or `file:PATH`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The node configuration is missing something or holds a wrong value; the message says which."""


def _relative_password_file(source: str, base: Path) -> str:
    """`file:` password paths in a config are relative to the config file, not the working directory."""
    if source.startswith("file:"):
        path = Path(source[5:]).expanduser()
        if not path.is_absolute():
            return f"file:{base / path}"
    return source


_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def parse_gateways(table: Any, path: Path) -> dict[str, str]:
    """`[ipfs.gateways]`: member address = "http://host:port" of that member's IPFS gateway."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [ipfs] gateways must be a table of member address = gateway URL")
    out = {}
    for address, url in table.items():
        if not _ADDRESS.match(str(address)):
            raise ConfigError(f"{path}: [ipfs.gateways] key {address!r} is not a member address (0x and 40 hex digits)")
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+/?$", url):
            raise ConfigError(f"{path}: [ipfs.gateways] {address} = {url!r} is not a gateway URL like http://10.0.0.2:8080")
        out[str(address)] = url.rstrip("/")
    return out


def _ws_url(value: Any, path: Path) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not re.match(r"^wss?://[^/\s]+", value):
        raise ConfigError(f"{path}: [chain] ws_url {value!r} is not a ws:// or wss:// URL")
    return value


@dataclass
class TrainingConfig:
    epochs: int = 1
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 32
    mu: float = 0.0  # FedProx proximal term
    fedcurv_lambda: float = 0.0  # FedCurv penalty; the task's models then carry fedcurv.* Fisher tensors
    seed: int = 0
    lr_decay: float = 1.0  # round r trains with lr * lr_decay ** (r - 1); 1 keeps lr constant

    def __post_init__(self) -> None:
        if not 0.0 < float(self.lr_decay) <= 1.0:
            raise ValueError(f"[training] lr_decay must be in (0, 1], got {self.lr_decay}")


@dataclass
class NodeConfig:
    name: str
    work_dir: Path
    rpc_url: str
    deployment: Path
    ipfs_api: str
    keystore: Path
    password: str = "prompt"
    chain_id: int | None = None
    poa: bool = False
    ws_url: str | None = None  # the chain node's WebSocket endpoint: new blocks pushed instead of polled
    task: int = 0
    builtin: str = "digits-mlp"
    data: str | None = None
    partition: str = "iid"
    org_index: int = 0
    num_orgs: int = 1
    partition_seed: int = 0
    poll_seconds: float = 0.05
    keep_others_updates: bool = False
    prefetch_max_mb: float = 0.0  # fetch every update as it is announced when models are at most this size
    gateways: dict = field(default_factory=dict)  # member address -> its IPFS HTTP gateway, tried before the swarm
    training: TrainingConfig = field(default_factory=TrainingConfig)
    adversary: dict = field(default_factory=dict)  # fault/attack experiments only; see node/adversary.py

    @classmethod
    def load(cls, path: Path) -> "NodeConfig":
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read node config {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        base = path.parent

        def need(section: str, key: str) -> Any:
            try:
                return doc[section][key]
            except KeyError:
                raise ConfigError(f"{path}: [{section}] {key} is required") from None

        def rel(p: str) -> Path:
            q = Path(p).expanduser()
            return q if q.is_absolute() else (base / q)

        org, chain, ipfs, key, task = (doc.get(s, {}) for s in ("organisation", "chain", "ipfs", "keystore", "task"))
        training = TrainingConfig(**doc.get("training", {}))
        return cls(
            name=need("organisation", "name"),
            work_dir=rel(org.get("work_dir", ".")),
            rpc_url=need("chain", "rpc_url"),
            deployment=rel(need("chain", "deployment")),
            chain_id=chain.get("chain_id"),
            poa=bool(chain.get("poa", False)),
            ws_url=_ws_url(chain.get("ws_url"), path),
            ipfs_api=need("ipfs", "api_url"),
            keep_others_updates=bool(ipfs.get("keep_others_updates", False)),
            prefetch_max_mb=float(ipfs.get("prefetch_max_mb", 0.0)),
            gateways=parse_gateways(ipfs.get("gateways", {}), path),
            keystore=rel(need("keystore", "path")),
            password=_relative_password_file(key.get("password", "prompt"), base),
            task=int(task.get("id", 0)),
            builtin=task.get("builtin", "digits-mlp"),
            data=task.get("data") or None,
            partition=task.get("partition", "iid"),
            org_index=int(task.get("org_index", 0)),
            num_orgs=int(task.get("num_orgs", 1)),
            partition_seed=int(task.get("partition_seed", 0)),
            poll_seconds=float(org.get("poll_seconds", 0.05)),
            training=training,
            adversary=dict(doc.get("adversary", {})),
        )

    def to_toml(self) -> str:
        """The config as commented TOML (`ops.render_node_config`, the one writer of node configs);
        `NodeConfig.load` reads it back unchanged."""
        from .ops import render_node_config  # ops imports this module: import it when needed

        return render_node_config(self)
