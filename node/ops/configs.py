"""An organisation's node config as `fedledger init` writes it: everything checked that can be
checked before the node runs, paths relative to the organisation's directory so it can move."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from .. import defaults
from ..chain.deployment import Deployment
from ..errors import InputError
from ..peer.config import Chain, Ipfs, Keystore, NodeConfig, Organisation, Task, WorkloadSettings, parse_gateways
from ..training.partition import check_partition, parse_scheme
from ..training.api import load_workload
from ..training.workloads import get_workload
from .access import check_password_source, ipfs_api_of, parse_address, password_file_warning


@dataclass
class WrittenConfig:
    path: Path
    config: NodeConfig
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def write_node_config(org: str, *, dir: Optional[Path], deployment: Optional[Path], rpc: Optional[str], poa: bool,
                      ipfs_api: Optional[str], ipfs_repo: Optional[Path], keystore: Optional[Path], password: str,
                      task: int, workload: str, data: Optional[str], partition: str, org_index: int, num_orgs: int,
                      partition_seed: int, training: Mapping[str, Any], gateways: list[str] | None,
                      force: bool, workload_path: Optional[Path] = None) -> WrittenConfig:
    """Check an organisation's settings and write DIR/node.toml (DIR defaults to ./ORG).
    `workload` is a built-in name or the organisation's own MODULE:ATTRIBUTE (imported now, from
    `workload_path` or DIR, to check it). `training` holds the training options the operator gave
    (None: the workload's default)."""
    warnings: list[str] = []
    if not org or len(org.encode()) > 64:
        raise InputError("the organisation name must be 1-64 bytes")
    base = (dir or Path(org)).expanduser()
    own = ":" in workload
    if own:
        if org_index != 0 or num_orgs != 1:
            raise InputError("--org-index and --num-orgs slice a built-in data set (a simulation); your own workload "
                             "reads your own data (--data)")
        spec = load_workload(workload, [workload_path or base])
    else:
        spec = get_workload(workload)
    if org_index >= num_orgs:
        raise InputError(f"--org-index {org_index} must be below --num-orgs {num_orgs}")
    if own:
        parse_scheme(partition)
    else:
        check_partition(workload, partition, num_orgs, partition_seed, data)
    check_password_source(password)
    if data:  # read by `node run` from its own working directory: pin the path down now
        data = str(Path(data).expanduser().resolve())
    if spec.needs_data_path and not data:
        warnings.append(f"{workload} needs --data (its data files); add `data = ...` under [workload] before "
                        "`node run`")
    cfg_path = base / "node.toml"
    if cfg_path.exists() and not force:
        raise InputError(f"{cfg_path} exists; pass --force to overwrite it")
    dep_path = (deployment or base / defaults.DEPLOYMENT_FILE).expanduser()
    chain_id = None
    dep_rpc = None
    if dep_path.exists():
        dep = Deployment.load(dep_path)
        chain_id, dep_rpc = dep.chain_id, dep.rpc_url
    else:
        warnings.append(f"no deployment file at {dep_path} yet: put the one the admin hands out there")
    api = ipfs_api_of(ipfs_api, ipfs_repo) or defaults.IPFS_API
    url = rpc or dep_rpc or defaults.RPC_URL
    for what, value in (("--rpc", url), ("--ipfs-api", api)):
        if not re.match(r"^https?://", value):
            raise InputError(f"{what} {value!r} must be an http:// or https:// URL")
    ks = (keystore or base / "keystore.json").expanduser()
    if not ks.exists():
        warnings.append(f"no keystore at {ks} yet: create it with `fedledger keys new {ks}`")
    warning = password_file_warning(password)
    if warning:
        warnings.append(warning)
    settings = spec.default_config.overridden(training)
    gateway_table = {}
    for item in gateways or []:
        address, sep, gw_url = item.partition("=")
        if not sep:
            raise InputError(f"--gateway {item!r} must be ADDRESS=URL, e.g. 0xAbC...=http://10.0.0.12:8080")
        gateway_table[parse_address(address.strip())] = gw_url.strip()
    gateway_table = parse_gateways(gateway_table, Path("--gateway"))
    base.mkdir(parents=True, exist_ok=True)
    root = base.resolve()

    def rel(p: Path) -> Path:
        return Path(os.path.relpath(p.resolve(), root))

    if password.startswith("file:"):
        # Given relative to the working directory; written relative to the config, as every path.
        password = f"file:{rel(Path(password[5:]).expanduser())}"

    cfg = NodeConfig(
        organisation=Organisation(name=org, work_dir=Path(".")),
        chain=Chain(rpc_url=url, deployment=rel(dep_path), chain_id=chain_id, poa=poa),
        ipfs=Ipfs(api_url=api, gateways=gateway_table),
        keystore=Keystore(path=rel(ks), password=password),
        task=Task(id=task),
        workload=(WorkloadSettings(builtin=None, object=workload, data=data,
                                   path=rel(workload_path.expanduser()) if workload_path else None) if own else
                  WorkloadSettings(builtin=workload, data=data, partition=partition, org_index=org_index,
                                   num_orgs=num_orgs, partition_seed=partition_seed)),
        training=settings,
    )
    cfg_path.write_text(cfg.to_toml())
    NodeConfig.load(cfg_path)  # what we wrote must load
    summary = {"config": str(cfg_path), "name": org, "rpc_url": url, "chain_id": chain_id, "ipfs_api": api,
               "keystore": str(ks), "deployment": str(dep_path), "task": task}
    return WrittenConfig(cfg_path, cfg, summary, warnings)
