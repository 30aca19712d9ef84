"""An organisation's node configuration (TOML): where its chain node, IPFS node, key and data are.

One file per organisation; `fedledger init ORG` writes a commented one, `fedledger sim` one per
simulated organisation. Nothing secret goes in it: the keystore is encrypted and its password
comes from `prompt`, `env:VAR` or `file:PATH`.

Each TOML section is one dataclass below, each key one field with its default and the comment
the writer puts beside it: `NodeConfig.load` is the one reader and `NodeConfig.to_toml` the one
writer, both driven by these declarations, so a setting has one name from the TOML key to the
attribute (`[ipfs] api_url` is `cfg.ipfs.api_url`). Paths are relative to the config file.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import defaults
from ..errors import ConfigError
from ..training.config import TrainingConfig


def _key(default: Any = None, note: str = "", *, required: bool = False, example: str | None = None) -> Any:
    """A TOML key: its default, the comment written beside it, and (for optional keys left unset)
    the commented-out example the writer shows instead."""
    meta = {"note": note, "required": required, "example": example}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Organisation:
    name: str = _key("", "as the consortium admitted you (fedledger member list)", required=True)
    work_dir: Path = _key(Path("."), "updates, downloaded models, metrics.jsonl")
    poll_seconds: float = _key(defaults.POLL_SECONDS, "seconds between block-number checks (a full read on each "
                                                      "new block, and every second)")


@dataclass
class Chain:
    rpc_url: str = _key("", "YOUR chain node's JSON-RPC (Besu: on localhost)", required=True)
    deployment: Path = _key(Path(defaults.DEPLOYMENT_FILE), "the deployment file the admin handed out", required=True)
    chain_id: int | None = _key(None, "refuse to run against any other chain", example="chain_id = 1337")
    poa: bool = _key(False, "true on proof-of-authority chains (Besu QBFT, Clique)")
    ws_url: str | None = _key(None, "the chain node's WebSocket: blocks pushed, not polled (Anvil: the RPC port; "
                                    "Besu: --rpc-ws-enabled)", example='ws_url = "ws://127.0.0.1:8546"')


@dataclass
class Ipfs:
    api_url: str = _key("", "YOUR IPFS node's RPC API, never another organisation's", required=True)
    keep_others_updates: bool = _key(False, "true keeps every member's updates pinned")
    prefetch_max_mb: float = _key(defaults.PREFETCH_MAX_MB, "fetch every update as announced if models are this "
                                                            "small (0: off)")
    #: member address -> that member's IPFS gateway, tried before the swarm (hash-checked): [ipfs.gateways]
    gateways: dict = _key({}, "other members' IPFS gateways, tried before the swarm (every download is hash-checked)")


@dataclass
class Keystore:
    path: Path = _key(Path("keystore.json"), "encrypted (fedledger keys new); never share it", required=True)
    password: str = _key("prompt", "prompt | env:VARIABLE | file:PATH (mode 600)")


@dataclass
class Task:
    id: int = _key(0, "the task to take part in (fedledger task list)")


@dataclass
class WorkloadSettings:
    builtin: str | None = _key(defaults.WORKLOAD, "the model and data: a built-in workload",
                               example=f'builtin = "{defaults.WORKLOAD}"')
    object: str | None = _key(None, "or your own workload: MODULE:ATTRIBUTE (docs/workloads.md)",
                              example='object = "hospital_fl:workload"')
    path: Path | None = _key(None, "where the workload's module is (default: this file's directory)",
                             example='path = "."')
    data: str | None = _key(None, "your data: the path the workload's load_data reads",
                            example='data = "/path/to/data"')
    partition: str = _key(defaults.PARTITION, "your share of the built-in data: iid, dirichlet:A, shards:K, skew:D")
    org_index: int = _key(0, "which share is yours: 0 .. num_orgs-1")
    num_orgs: int = _key(1, "into how many shares the data is split")
    partition_seed: int = _key(0, "the same for every organisation")


#: [workload] keys that slice a built-in data set among simulated members.
SIMULATION_ONLY = ("partition", "org_index", "num_orgs", "partition_seed")
#: The sections in the order the writer puts them; `training` and `adversary` follow.
SECTIONS = (("organisation", Organisation), ("chain", Chain), ("ipfs", Ipfs), ("keystore", Keystore),
            ("task", Task), ("workload", WorkloadSettings))
#: Keys of earlier versions: (section, key) -> (section, key) now. Read with a warning, never written.
RENAMED = {("task", "builtin"): ("workload", "builtin"), ("task", "data"): ("workload", "data"),
           ("task", "partition"): ("workload", "partition"), ("task", "org_index"): ("workload", "org_index"),
           ("task", "num_orgs"): ("workload", "num_orgs"), ("task", "partition_seed"): ("workload", "partition_seed")}
_TRAINING_NOTES = {"mu": "FedProx proximal term; 0 is plain local SGD", "fedcurv_lambda": "FedCurv penalty; 0 is off",
                   "lr_decay": "round r trains with lr * lr_decay^(r-1); 1 is constant"}

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass
class NodeConfig:
    organisation: Organisation
    chain: Chain
    ipfs: Ipfs
    keystore: Keystore
    task: Task = field(default_factory=Task)
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    adversary: dict = field(default_factory=dict)  # fault/attack experiments only; see peer/adversary.py

    @property
    def name(self) -> str:
        return self.organisation.name

    @classmethod
    def load(cls, path: Path) -> "NodeConfig":
        """Read and check a node config; `ConfigError` naming the file and the key otherwise."""
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read node config {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        base = path.parent
        for (old_sec, old_key), (new_sec, new_key) in RENAMED.items():
            if old_key in doc.get(old_sec, {}):
                value = doc[old_sec].pop(old_key)
                print(f"warning: {path}: [{old_sec}] {old_key} is deprecated; write it as [{new_sec}] {new_key}",
                      file=sys.stderr)
                doc.setdefault(new_sec, {}).setdefault(new_key, value)
        sections = {}
        for name, kind in SECTIONS:
            table = doc.get(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{name}] must be a table")
            if name == "workload" and table.get("object") is not None:
                if table.get("builtin") is not None:
                    raise ConfigError(f"{path}: [workload] names both builtin and object; keep one")
                table = {**table, "builtin": None}
            values = {}
            for f in fields(kind):
                if f.name in table:
                    values[f.name] = _value(path, name, f, table[f.name], base)
                elif f.metadata["required"]:
                    raise ConfigError(f"{path}: [{name}] {f.name} is required")
                elif f.type == "Path":  # a default path is relative to the config file too
                    values[f.name] = _value(path, name, f, str(f.default), base)
            sections[name] = kind(**values)
        try:
            training = TrainingConfig.from_dict(doc.get("training", {}), where=f"{path}: [training]")
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc) if str(path) in str(exc) else f"{path}: [training] {exc}") from exc
        w = sections["workload"]
        if w.object is not None and w.path is None:
            w.path = base  # the workload's module sits beside its config unless told otherwise
        if w.object is None and w.builtin is None:
            raise ConfigError(f"{path}: [workload] needs builtin (a built-in workload) or object (your own)")
        sections["ipfs"].gateways = parse_gateways(sections["ipfs"].gateways, path)
        sections["keystore"].password = _relative_password_file(sections["keystore"].password, base)
        return cls(**sections, training=training, adversary=dict(doc.get("adversary", {})))

    def to_toml(self) -> str:
        """The config as commented TOML; `NodeConfig.load` reads it back unchanged."""
        rows: list[tuple[str, str]] = []
        for name, _ in SECTIONS:
            section = getattr(self, name)
            rows += [("", ""), (f"[{name}]", "")]
            for f in fields(section):
                value = getattr(section, f.name)
                if name == "workload" and section.object is not None and f.name in SIMULATION_ONLY:
                    continue  # slicing a shared data set is for built-in workloads in simulations
                if f.name == "gateways":
                    if value:
                        rows += [("", ""), ("[ipfs.gateways]", f.metadata["note"])]
                        rows += [(f"{_toml(a)} = {_toml(u)}", "") for a, u in sorted(value.items())]
                    continue
                if value is None:
                    rows.append((f"# {f.metadata['example']}", f.metadata["note"]))
                else:
                    rows.append((f"{f.name} = {_toml(value)}", f.metadata["note"]))
        rows += [("", ""), ("[training]", "local training, each round")]
        rows += [(f"{k} = {json.dumps(v)}", _TRAINING_NOTES.get(k, "")) for k, v in self.training.to_dict().items()]
        if self.adversary:  # experiments only: never written by `fedledger init`
            rows += [("", ""), ("[adversary]", "this organisation MISBEHAVES on purpose (an experiment)")]
            rows += [(f"{k} = {json.dumps(v)}", "") for k, v in self.adversary.items()]
        width = max(36, max(len(code) for code, note in rows if note) + 2)
        head = [
            f"# fedledger node configuration of organisation {self.name}.",
            "# Nothing secret belongs here: the key is in an encrypted keystore, its password comes from a",
            "# prompt, an environment variable or a file. Relative paths are relative to this file.",
            "# Start the node with:  fedledger node run --config THIS_FILE",
        ]
        body = [f"{code:<{width}}# {note}" if note else code for code, note in rows]
        return "\n".join(head + body) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are valid TOML escapes


def _value(path: Path, section: str, f: Any, value: Any, base: Path) -> Any:
    """One key's value, as its field declares it."""
    kind = f.type
    where = f"{path}: [{section}] {f.name}"
    if kind == "Path | None" and value is None:
        return None
    if kind in ("Path", "Path | None"):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path (a string), got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if kind == "bool":
        return bool(value)
    if kind in ("int", "int | None"):
        return None if value is None else int(value)
    if kind == "float":
        return float(value)
    if kind == "str | None":
        if f.name == "ws_url":
            return _ws_url(value, path)
        return value or None
    return value


def _relative_password_file(source: str, base: Path) -> str:
    """`file:` password paths in a config are relative to the config file, not the working directory."""
    if source.startswith("file:"):
        path = Path(source[5:]).expanduser()
        if not path.is_absolute():
            return f"file:{base / path}"
    return source


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
