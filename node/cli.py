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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
