"""The `fedledger` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="fedledger: decentralized federated learning coordinated by a smart contract.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
devnet_app = typer.Typer(help="Start, stop and inspect the embedded devnet (Anvil on loopback).",
                         no_args_is_help=True)
app.add_typer(devnet_app, name="devnet")

console = Console(stderr=True)
DEFAULT_DEVNET = Path("runs/devnet")


def fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def emit(data: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        for line in lines:
            print(line)


# ----------------------------------------------------------------------- devnet


@devnet_app.command("up")
def devnet_up(
    dir: Path = typer.Option(DEFAULT_DEVNET, "--dir", help="Run directory: chain state and devnet.json live here."),
    block_time: Optional[float] = typer.Option(None, help="Seconds per block; default mines on every transaction."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Start Anvil on a free loopback port, restoring its state from DIR if it has one."""
    from .devnet import Devnet, DevnetError

    try:
        net = Devnet.load(dir).up(block_time=block_time)
    except DevnetError as exc:
        fail(str(exc))
    st = net.status()
    emit(st, as_json, [f"chain  {st['chain']['rpc_url']}  chain id {st['chain']['chain_id']}  pid {st['chain']['pid']}",
                       f"state  {st['chain']['state_file']}"])


@devnet_app.command("down")
def devnet_down(
    dir: Path = typer.Option(DEFAULT_DEVNET, "--dir", help="Run directory given to `devnet up`."),
) -> None:
    """Stop the devnet's processes (SIGTERM: Anvil writes its state file first)."""
    from .devnet import Devnet

    net = Devnet.load(dir)
    if net.anvil is None:
        fail(f"no devnet recorded in {dir}")
    net.down()
    print(f"stopped; state kept in {net.anvil.state_file}")


@devnet_app.command("status")
def devnet_status(
    dir: Path = typer.Option(DEFAULT_DEVNET, "--dir", help="Run directory given to `devnet up`."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show whether the devnet's chain is running, and where. Exit 3 when it is not."""
    from .devnet import Devnet

    st = Devnet.load(dir).status()
    chain = st["chain"]
    if chain is None:
        emit(st, as_json, [f"no devnet recorded in {dir}"])
        raise typer.Exit(3)
    emit(st, as_json, [f"chain  {'running' if chain['running'] else 'stopped'}  {chain['rpc_url']}  "
                       f"chain id {chain['chain_id']}  pid {chain['pid']}"])
    if not chain["running"]:
        raise typer.Exit(3)


# ----------------------------------------------------------------------- deploy


@app.command()
def deploy(
    out: Path = typer.Option(Path("deployment.json"), "--out", help="Where to write the deployment file."),
    rpc: Optional[str] = typer.Option(None, help="JSON-RPC URL of the chain node."),
    keystore: Optional[Path] = typer.Option(None, help="Encrypted keystore of the admin account."),
    password: str = typer.Option("prompt", help="Where the keystore password comes from: prompt, env:VAR or file:PATH."),
    poa: bool = typer.Option(False, help="The chain is proof-of-authority (Besu QBFT, Clique): adds the PoA middleware."),
    devnet: Optional[Path] = typer.Option(None, help="Deploy to the devnet of this run directory with its dev key 0."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Deploy the FedLedger contract; the deploying account becomes the consortium admin.

    The deployment file (chain id, address, ABI hash, block) is what every member is handed."""
    from dataclasses import asdict

    from eth_account import Account

    from .chain import ChainError
    from .deploy import deploy as do_deploy
    from .devnet import DEV_KEYS, Devnet
    from .keys import KeystoreError, load_account, read_password

    try:
        if devnet is not None:
            net = Devnet.load(devnet)
            if net.anvil is None:
                fail(f"no devnet recorded in {devnet}: run `fedledger devnet up --dir {devnet}`")
            rpc = rpc or net.anvil.rpc_url
            account = Account.from_key(DEV_KEYS[0])
        else:
            if rpc is None or keystore is None:
                fail("give --rpc and --keystore (or --devnet DIR for the local devnet)")
            account = load_account(keystore, read_password(password))
        dep = do_deploy(rpc, account, out, poa=poa)
    except (KeystoreError, ChainError) as exc:
        fail(str(exc))
    emit(asdict(dep), as_json, [f"FedLedger deployed at {dep.address} (chain {dep.chain_id}, block {dep.block})",
                                f"deployment file: {out}"])


# ----------------------------------------------------------------------- status


@app.command()
def status(
    deployment: Path = typer.Option(Path("deployment.json"), help="The deployment file the consortium handed out."),
    rpc: Optional[str] = typer.Option(None, help="JSON-RPC URL (default: the one in the deployment file)."),
    task: Optional[int] = typer.Option(None, help="Show only this task (default: every task)."),
    poa: bool = typer.Option(False, help="The chain is proof-of-authority."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show a running federation: members, tasks, the current round, its phase, leader and deadlines."""
    import time as _time

    from .chain import ChainError, Phase
    from .deploy import Deployment, DeploymentError

    try:
        client = Deployment.load(deployment).client(rpc_url=rpc, poa=poa)
        dep = Deployment.load(deployment)
        members = {}
        for ev in client.events(from_block=dep.block, names=["MemberAdded", "MemberRemoved"]):
            if ev.name == "MemberAdded":
                members[ev["member"]] = ev["name"]
            else:
                members.pop(ev["member"], None)
        tasks = []
        ids = [task] if task is not None else range(client.task_count())
        for t in ids:
            cfg, st = client.task_config(t), client.task_state(t)
            entry = {"task": t, "rule": cfg.rule_id, "max_rounds": cfg.max_rounds, "completed": st.completed,
                     "round": st.current_round, "global_sha256": st.global_sha256, "global_cid": st.global_cid}
            if not st.completed:
                info = client.round_info(t, st.current_round)
                entry.update(phase=info.phase.name.lower(), updates=info.count, attempt=info.attempt,
                             leader=members.get(info.leader, info.leader) if info.leader else None,
                             deadline=info.deadline, seconds_left=round(info.deadline - _time.time(), 1))
                if info.phase in (Phase.AGGREGATION, Phase.VERIFICATION):
                    entry["verifiers"] = [members.get(v, v) for v in client.verifiers_of(t, st.current_round, info.attempt)]
            tasks.append(entry)
    except (ChainError, DeploymentError) as exc:
        fail(str(exc))
    data = {"contract": dep.address, "chain_id": dep.chain_id, "members": members, "tasks": tasks}
    lines = [f"FedLedger {dep.address} on chain {dep.chain_id}: {len(members)} members ({', '.join(members.values())})"]
    for e in tasks:
        if e["completed"]:
            lines.append(f"task {e['task']} [{e['rule']}]: completed after {e['round']} rounds, final model {e['global_sha256'][:16]}")
        else:
            line = (f"task {e['task']} [{e['rule']}]: round {e['round']}/{e['max_rounds']} {e['phase']}, "
                    f"{e['updates']} updates, deadline in {e['seconds_left']:.0f} s")
            if e.get("leader"):
                line += f", leader {e['leader']} (attempt {e['attempt']}), verifiers {', '.join(e.get('verifiers', [])) or 'none'}"
            lines.append(line)
    emit(data, as_json, lines)


# ------------------------------------------------------------------------- node

node_app = typer.Typer(help="Run this organisation's peer node.", no_args_is_help=True)
app.add_typer(node_app, name="node")


@node_app.command("run")
def node_run(
    config: Path = typer.Option(..., "--config", help="The organisation's TOML config (see `fedledger init`)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log lost races and other routine detail."),
) -> None:
    """Take part in the configured task until it completes: submit updates, lead when elected,
    verify when picked, and call close/timeout when deadlines pass. Safe to restart at any time:
    the node derives where the round stands from the chain."""
    import logging

    from .config import ConfigError, NodeConfig
    from .deploy import DeploymentError
    from .keys import KeystoreError
    from .runtime import build_peer

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from .chain import ChainError
    from .ipfs import StorageError

    try:
        peer = build_peer(NodeConfig.load(config))
    except (ConfigError, KeystoreError, DeploymentError, ValueError) as exc:
        fail(str(exc))
    except ChainError as exc:
        fail(f"{exc}; is the chain node running and the RPC URL in {config} right?", code=3)
    except StorageError as exc:
        fail(f"cannot fetch the task's model spec from IPFS ({exc}); is this organisation's IPFS node running "
             "and connected to the others (`fedledger ipfs status`)?", code=3)
    try:
        peer.run()
    except KeyboardInterrupt:
        raise typer.Exit(130)


# -------------------------------------------------------------------------- sim


@app.command()
def sim(
    orgs: int = typer.Option(4, min=1, max=200, help="Number of organisations (one node process and IPFS node each)."),
    rounds: int = typer.Option(5, min=1, help="Rounds to run."),
    task: str = typer.Option("digits-mlp", help="Built-in task: digits-mlp, breast-cancer, cifar10-cnn."),
    data: Optional[str] = typer.Option(None, help="Data path for tasks that read files (cifar10-cnn: the directory of CIFAR-10 binary batches)."),
    partition: str = typer.Option("dirichlet:0.5", help="How data is split: iid, dirichlet:ALPHA, shards:K, skew:DEF."),
    rule: str = typer.Option("fedavg", help="Aggregation rule: fedavg, median, trimmed_mean, geomedian, krum, multikrum, bulyan."),
    rule_params: str = typer.Option("{}", help='Rule parameters as JSON, e.g. \'{"beta": 0.1}\' for trimmed_mean.'),
    verifiers: int = typer.Option(2, min=0, max=16, help="Verifiers per round; 0 trusts the leader."),
    quorum: Optional[int] = typer.Option(None, help="Agreeing verifiers needed to finalize (default: all verifiers)."),
    seed: int = typer.Option(0, help="Seed for the genesis model, the data split and local training."),
    epochs: int = typer.Option(1, min=1, help="Local epochs per round."),
    lr: Optional[float] = typer.Option(None, help="Local learning rate (default: the task's)."),
    batch_size: Optional[int] = typer.Option(None, help="Local batch size (default: the task's)."),
    mu: float = typer.Option(0.0, min=0.0, help="FedProx proximal term (0 = plain FedAvg training)."),
    lr_decay: float = typer.Option(1.0, min=0.0, max=1.0, help="Round r trains with lr x LR_DECAY^(r-1) (1 = constant); helps label-skewed data settle."),
    fedcurv_lambda: float = typer.Option(0.0, min=0.0, help="FedCurv penalty (0 = off); updates then carry Fisher terms, summed at aggregation."),
    out: Path = typer.Option(Path("runs/sim"), help="Run directory: report, plot, chain state and IPFS repos."),
    timeout: float = typer.Option(1800.0, help="Give up after this many seconds."),
    submission_window: int = typer.Option(120, min=1, help="Seconds a round accepts updates before it may close with fewer than all organisations (it closes at once when all have submitted)."),
    aggregation_window: int = typer.Option(60, min=1, help="Seconds an elected leader has to publish before anyone may time it out."),
    verification_window: int = typer.Option(60, min=1, help="Seconds the verifiers have to attest."),
    restart_org: Optional[str] = typer.Option(None, help="Fault: SIGKILL NAME's node process when round ROUND opens and restart it, e.g. org2@2.", rich_help_panel="Faults and attacks"),
    drop_org: Optional[str] = typer.Option(None, help="Fault: SIGKILL NAME's node process when round ROUND opens, for good, e.g. org3@2.", rich_help_panel="Faults and attacks"),
    kill_leader_at: Optional[int] = typer.Option(None, help="Fault: SIGKILL the elected leader of this round before it publishes.", rich_help_panel="Faults and attacks"),
    byzantine_leader_at: Optional[str] = typer.Option(None, help="Attack: the first leader of these rounds publishes a wrong aggregate: 3, 2,4 or all.", rich_help_panel="Faults and attacks"),
    attackers: int = typer.Option(0, min=0, help="Attack: the last K organisations send poisoned updates (see --attack).", rich_help_panel="Faults and attacks"),
    attack: str = typer.Option("signflip", help="signflip, scale:X, noise:SIGMA, labelflip, or malformed:KIND (malformed:cycle tries a different kind each round).", rich_help_panel="Faults and attacks"),
    restart_chain_at: Optional[int] = typer.Option(None, help="Fault: stop the chain node when this round opens and restart it from its state file.", rich_help_panel="Faults and attacks"),
    restart_ipfs: Optional[str] = typer.Option(None, help="Fault: restart NAME's IPFS node when round ROUND opens, e.g. org1@2.", rich_help_panel="Faults and attacks"),
    ipfs_nodes: Optional[int] = typer.Option(None, min=1, help="Share this many IPFS nodes among the organisations (organisation i uses node i mod K) to fit large simulations in memory; default: one each."),
    gateways: bool = typer.Option(True, "--gateways/--swarm-only", help="Fetch each model first from the IPFS HTTP gateway of the member who stored it (hash-checked, falling back to the swarm), or only through each organisation's own node and the swarm (bitswap)."),
) -> None:
    """Simulate a consortium on this machine: N organisations, each a separate node process with its
    own key and IPFS node, federate on a local Anvil chain. Writes OUT/report.json and OUT/accuracy.png."""
    from .sim import SimError, SimOptions, run_sim

    opts = SimOptions(orgs=orgs, rounds=rounds, task=task, data=data, partition=partition, rule=rule,
                      rule_params=rule_params, verifiers=verifiers, quorum=quorum, seed=seed, out=str(out),
                      epochs=epochs, lr=lr, batch_size=batch_size, mu=mu, fedcurv_lambda=fedcurv_lambda, lr_decay=lr_decay, timeout=timeout,
                      submission_window=submission_window, aggregation_window=aggregation_window,
                      verification_window=verification_window, restart_org=restart_org, drop_org=drop_org,
                      kill_leader_at=kill_leader_at, byzantine_leader_at=byzantine_leader_at, attackers=attackers,
                      attack=attack, restart_chain_at=restart_chain_at, restart_ipfs=restart_ipfs,
                      ipfs_nodes=ipfs_nodes, gateways=gateways)
    started = __import__("time").time()
    try:
        report = run_sim(opts, say=lambda line: console.print(f"[dim]{__import__('time').time() - started:6.1f}s[/dim] {line}"))
    except SimError as exc:
        fail(str(exc))
    print_rounds(report)
    print(f"final accuracy {report['final_accuracy']:.4f} (centralized baseline {report['centralized_accuracy']:.4f})")
    print(f"report: {out / 'report.json'}   plot: {out / 'accuracy.png'}")


def print_rounds(report: dict) -> None:
    from rich.table import Table

    table = Table(title="rounds", title_justify="left")
    for col in ("round", "leader", "attempts", "updates", "accuracy", "gas", "seconds", "global model sha256"):
        table.add_column(col, no_wrap=True)
    for r in report["rounds"]:
        attempts = " ".join(f"{a['leader']}:{a['outcome']}" for a in r["attempts"])
        table.add_row(str(r["round"]), r["leader"], attempts, str(len(r["participants"])), f"{r['accuracy']:.4f}",
                      f"{r['gas_used']:,}", f"{r['seconds']['total']:.2f}", r["model_sha256"][:16])
    Console(width=140).print(table)


from .audit import register as _register_audit  # noqa: E402  (heavy imports happen inside the command)

_register_audit(app)
from .ops import register as _register_operator_commands  # noqa: E402  keys, init, member, task, ipfs

_register_operator_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
