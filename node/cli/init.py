"""`fedledger init ORG`: write an organisation's node config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import defaults
from ..training.config import TrainingConfig
from ..training.workloads import WORKLOADS
from .output import EXIT_CODES_HELP, add_options, deprecated, emit, json_opt, pick, reflow, reporting, warn


@add_options(TrainingConfig, unset_default=True, panel="Local training (default: the workload's)")
@reflow
def init(
    org: str = typer.Argument(..., help="The organisation's name, as the admin admits it (1-64 characters)."),
    dir: Optional[Path] = typer.Option(None, "--dir", help="The organisation's directory; the config is DIR/node.toml "
                                                           "(default: ./ORG)."),
    deployment: Optional[Path] = typer.Option(None, "--deployment", "-d",
                                              help="The deployment file the admin handed out (default: "
                                                   f"DIR/{defaults.DEPLOYMENT_FILE}). When it exists, the chain id "
                                                   "and RPC URL are taken from it."),
    rpc: Optional[str] = typer.Option(None, "--rpc", help="Your chain node's JSON-RPC URL (default: the deployment "
                                                          f"file's, else {defaults.RPC_URL})."),
    poa: bool = typer.Option(False, "--poa/--no-poa", help="The chain is proof-of-authority (Besu QBFT, Clique)."),
    ipfs_api: Optional[str] = typer.Option(None, "--ipfs-api", help=f"Your IPFS node's RPC API (default: "
                                                                    f"{defaults.IPFS_API})."),
    ipfs_repo: Optional[Path] = typer.Option(None, "--ipfs-repo", help="Take the API URL from this dev IPFS node's repo "
                                                                       "(`fedledger ipfs init --repo`)."),
    keystore: Optional[Path] = typer.Option(None, "--keystore", help="Your member keystore (default: DIR/keystore.json)."),
    password: str = typer.Option("prompt", "--password", help="Where `node run` gets the keystore password: prompt, "
                                                              "env:VARIABLE or file:PATH."),
    task: int = typer.Option(0, "--task", min=0, help="The task id to take part in (`fedledger task list`)."),
    workload: str = typer.Option(defaults.WORKLOAD, "--workload", help="The model and data you train: a built-in "
                                 f"one ({', '.join(WORKLOADS)}) or your own, MODULE:ATTRIBUTE (docs/workloads.md)."),
    workload_path: Optional[Path] = typer.Option(None, "--workload-path", help="Where your workload's module is "
                                                 "(default: DIR, beside the config)."),
    builtin: Optional[str] = typer.Option(None, "--builtin", hidden=True, help="Deprecated: --workload."),
    data: Optional[str] = typer.Option(None, "--data", help="Your data: the path your workload's load_data reads "
                                                            "(built-in: only cifar10-cnn reads files)."),
    partition: str = typer.Option(defaults.PARTITION, "--partition", help="Your share of the built-in data: iid, "
                                                                          "dirichlet:ALPHA, shards:K, skew:DEF."),
    org_index: int = typer.Option(0, "--org-index", min=0, help="Which share is yours: 0 .. num-orgs-1."),
    num_orgs: int = typer.Option(1, "--num-orgs", min=1, help="Into how many shares the data is split."),
    partition_seed: int = typer.Option(0, "--partition-seed", min=0, help="Seed of the split (the same for everyone)."),
    gateway: Optional[list[str]] = typer.Option(None, "--gateway", help="ADDRESS=URL: another member's IPFS gateway "
                                                "(`fedledger ipfs status` prints it), tried before the swarm for what "
                                                "that member stored; repeat for each. Without any, models move "
                                                "through the swarm alone."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing DIR/node.toml."),
    as_json: bool = json_opt(),
    **training: Any,
) -> None:
    """Write an organisation's node config, DIR/node.toml, commented, ready for `fedledger node
    run --config DIR/node.toml`. Paths in it are relative to DIR, so the directory can move.

    It names your chain node, the deployment file, your IPFS node, your keystore and where its
    password comes from, the task, your workload and how you train. Nothing secret is written.
    Missing files (keystore, deployment) are reported as warnings: create or fetch them before
    `node run`."""
    if builtin is not None:
        deprecated("--builtin NAME", "--workload NAME")
        workload = builtin
    with reporting(as_json):
        from ..ops.configs import write_node_config

        written = write_node_config(org, dir=dir, deployment=deployment, rpc=rpc, poa=poa, ipfs_api=ipfs_api,
                                    ipfs_repo=ipfs_repo, keystore=keystore, password=password, task=task,
                                    workload=workload, data=data, partition=partition, org_index=org_index,
                                    num_orgs=num_orgs, partition_seed=partition_seed,
                                    training=pick(TrainingConfig, training), gateways=gateway, force=force,
                                    workload_path=workload_path)
        for w in written.warnings:
            warn(w)
        emit(as_json, {"ok": True, **written.summary},
             [f"wrote {written.path}", f"next: fedledger node run --config {written.path}"])


def register(app: typer.Typer) -> None:
    app.command("init", epilog=EXIT_CODES_HELP)(init)
