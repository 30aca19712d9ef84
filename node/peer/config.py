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

import difflib
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


def _key(default: Any = None, note: str = "", *, required: bool = False, example: str | None = None,
         lo: float | None = None, lo_open: bool = False) -> Any:
    """A TOML key: its default, the comment written beside it, (for optional keys left unset) the
    commented-out example the writer shows instead, and the lowest value a number may take."""
    meta = {"note": note, "required": required, "example": example, "lo": lo, "lo_open": lo_open}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Organisation:
    name: str = _key("", "as the consortium admitted you (fedledger member list)", required=True)
    work_dir: Path = _key(Path("."), "updates, downloaded models, metrics.jsonl")
    poll_seconds: float = _key(defaults.POLL_SECONDS, "seconds between block-number checks (a full read on each "
                                                      "new block, and every second)", lo=0, lo_open=True)


@dataclass
class Chain:
    rpc_url: str = _key("", "YOUR chain node's JSON-RPC (Besu: on localhost)", required=True)
    deployment: Path = _key(Path(defaults.DEPLOYMENT_FILE), "the deployment file the admin handed out", required=True)
    chain_id: int | None = _key(None, "refuse to run against any other chain", example="chain_id = 1337", lo=1)
    poa: bool = _key(False, "true on proof-of-authority chains (Besu QBFT, Clique)")
    ws_url: str | None = _key(None, "the chain node's WebSocket: blocks pushed, not polled (Anvil: the RPC port; "
                                    "Besu: --rpc-ws-enabled)", example='ws_url = "ws://127.0.0.1:8546"')


@dataclass
class Ipfs:
    api_url: str = _key("", "YOUR IPFS node's RPC API, never another organisation's", required=True)
    keep_others_updates: bool = _key(False, "true keeps every member's updates pinned")
    prefetch_max_mb: float = _key(defaults.PREFETCH_MAX_MB, "fetch every update as announced if models are this "
                                                            "small (0: off)", lo=0)
    #: member address -> that member's IPFS gateway, tried before the swarm (hash-checked): [ipfs.gateways]
    gateways: dict = _key({}, "other members' IPFS gateways, tried before the swarm (every download is hash-checked)")


@dataclass
class Keystore:
    path: Path = _key(Path("keystore.json"), "encrypted (fedledger keys new); never share it", required=True)
    password: str = _key("prompt", "prompt | env:VARIABLE | file:PATH (mode 600)")


@dataclass
class Task:
    id: int = _key(0, "the task to take part in (fedledger task list)", lo=0)


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
    org_index: int = _key(0, "which share is yours: 0 .. num_orgs-1", lo=0)
    num_orgs: int = _key(1, "into how many shares the data is split", lo=1)
    partition_seed: int = _key(0, "the same for every organisation", lo=0)


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
            text = path.read_text()
            doc = tomllib.loads(text)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not a text file (UTF-8)") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read node config {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        base = path.parent
        lines = _Lines(path, text)
        _refuse_unknown(doc, lines)
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
                    values[f.name] = _value(lines, name, f, table[f.name], base)
                elif f.metadata["required"]:
                    raise ConfigError(f"{path}: [{name}] {f.name} is required")
                elif f.type == "Path":  # a default path is relative to the config file too
                    values[f.name] = _value(lines, name, f, str(f.default), base)
            sections[name] = kind(**values)
        training_table = doc.get("training", {})
        if not isinstance(training_table, dict):
            raise ConfigError(f"{lines.at('training')}: [training] must be a table")
        try:
            training = TrainingConfig.from_dict(training_table, where=f"{path}: [training]")
        except (ValueError, TypeError) as exc:
            key = next((k for k in training_table if str(exc).startswith(f"{k} ")), None)
            raise ConfigError(f"{lines.at('training', key)}: [training] {exc}") from exc
        w = sections["workload"]
        if w.org_index >= w.num_orgs:
            raise ConfigError(f"{lines.at('workload', 'org_index')}: [workload] org_index {w.org_index} must be below "
                              f"num_orgs {w.num_orgs} (shares are numbered 0 .. num_orgs-1)")
        if w.object is not None and w.path is None:
            w.path = base  # the workload's module sits beside its config unless told otherwise
        if w.object is None and w.builtin is None:
            raise ConfigError(f"{path}: [workload] needs builtin (a built-in workload) or object (your own)")
        sections["ipfs"].gateways = parse_gateways(sections["ipfs"].gateways, path)
        sections["keystore"].password = _password_source(sections["keystore"].password, base, lines)
        adversary = doc.get("adversary", {})
        if not isinstance(adversary, dict):
            raise ConfigError(f"{lines.at('adversary')}: [adversary] must be a table")
        return cls(**sections, training=training, adversary=dict(adversary))

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
        own = {f.name for f in fields(TrainingConfig) if f.metadata.get("cli", True)}  # not the task's dp_*
        rows += [(f"{k} = {json.dumps(v)}", _TRAINING_NOTES.get(k, "")) for k, v in self.training.to_dict().items()
                 if k in own]
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


def _value(lines: "_Lines", section: str, f: Any, value: Any, base: Path) -> Any:
    """One key's value, exactly of the type its field declares (TOML's own types: nothing is
    coerced, so `poa = "no"` or `org_index = 0.5` is an error, not true and 0)."""
    kind = f.type
    where = f"{lines.at(section, f.name)}: [{section}] {f.name}"
    optional = kind.endswith(" | None")
    if optional and value is None:
        return None
    base_kind = kind.removesuffix(" | None")
    if base_kind == "Path":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where} must be a path in quotes, got {_shown(value)}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p
    if base_kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false (no quotes), got {_shown(value)}")
        return value
    if base_kind in ("int", "float"):
        number = isinstance(value, int) if base_kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not number:
            what = "an integer" if base_kind == "int" else "a number"
            raise ConfigError(f"{where} must be {what} (no quotes), got {_shown(value)}")
        lo, lo_open = f.metadata.get("lo"), f.metadata.get("lo_open")
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise ConfigError(f"{where} must be {'above' if lo_open else 'at least'} {lo:g}, got {value!r}")
        return float(value) if base_kind == "float" else value
    if base_kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string in quotes, got {_shown(value)}")
        if f.name == "ws_url":
            return _ws_url(value, lines.path)
        return value or None if optional else value
    return value


def _shown(value: Any) -> str:
    """A TOML value as the user wrote it, with its type: `"no" (a string)`."""
    kinds = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", dict: "a table", list: "an array"}
    kind = kinds.get(type(value), type(value).__name__)
    written = _toml(value) if isinstance(value, (str, bool, int, float)) else repr(value)
    return f"{written} ({kind})"


class _Lines:
    """Where a section or key is in the config file, for errors that name file and line."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self._where: dict[tuple[str, str | None], int] = {}
        section = ""
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            header = re.match(r"^\[\s*([^\]\s]+)\s*\]", stripped)
            if header:
                section = header.group(1).strip('"')
                self._where.setdefault((section, None), number)
                continue
            key = re.match(r'^"?([A-Za-z0-9_\-.]+)"?\s*=', stripped)
            if key:
                self._where.setdefault((section, key.group(1)), number)

    def at(self, section: str, key: str | None = None) -> str:
        """`path:line` of the key (or the section header); the path alone if not found."""
        number = self._where.get((section, key)) or self._where.get((section, None))
        return f"{self.path}:{number}" if number else str(self.path)


def _nearest(word: str, names: list[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else f"the valid ones: {', '.join(names)}"


def _refuse_unknown(doc: dict, lines: _Lines) -> None:
    """Every section and key must be one this version reads: a typo is an error naming the file,
    the line and the nearest valid name, never a setting silently left at its default."""
    known = {name: [f.name for f in fields(kind)] for name, kind in SECTIONS}
    # The dp_* fields come from the task on chain (node/training/privacy.py), never from a member's file.
    known["training"] = [f.name for f in fields(TrainingConfig) if f.metadata.get("cli", True)]
    known["adversary"] = _adversary_keys()
    renamed = {sec: [key for (s2, key) in RENAMED if s2 == sec] for sec in known}
    for name, table in doc.items():
        if name not in known:
            if isinstance(table, dict):
                hint = _nearest(f"[{name}]", [f"[{n}]" for n in known])
                raise ConfigError(f"{lines.at(name)}: unknown section [{name}]; {hint}")
            raise ConfigError(f"{lines.at('', name)}: {name} is outside any section; every key belongs in one "
                              f"of {', '.join(f'[{n}]' for n in known)}")
        if not isinstance(table, dict):
            continue  # "[name] must be a table", said where the section is read
        for key in table:
            if key not in known[name] and key not in renamed[name]:
                raise ConfigError(f"{lines.at(name, key)}: [{name}] unknown key {key}; {_nearest(key, known[name])}")


def _adversary_keys() -> list[str]:
    from .adversary import Adversary  # experiments only: imported when a config is read

    return [f.name for f in fields(Adversary) if f.name != "seed"]


def _password_source(source: str, base: Path, lines: _Lines) -> str:
    """prompt, env:VAR or file:PATH; `file:` paths in a config are relative to the config file,
    not the working directory."""
    if source != "prompt" and not source.startswith(("env:", "file:")):
        raise ConfigError(f"{lines.at('keystore', 'password')}: [keystore] password must be prompt, env:VARIABLE "
                          "or file:PATH: where the password comes from, never the password itself")
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
