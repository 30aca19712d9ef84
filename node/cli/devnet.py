"""`fedledger devnet up|down|status` and `fedledger deploy`: the local chain and the contract on it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from .. import defaults
from ..errors import EXIT_UNREACHABLE, InputError
from .output import EXIT_CODES_HELP, emit, json_opt, reflow, reporting

devnet_app = typer.Typer(help="Start, stop and inspect the embedded devnet (Anvil on loopback).",
                         no_args_is_help=True, epilog=EXIT_CODES_HELP)

_DIR_HELP = "Run directory: chain state and devnet.json live here."


@devnet_app.command("up", epilog=EXIT_CODES_HELP)
def devnet_up(
    dir: Path = typer.Option(Path(defaults.DEVNET_DIR), "--dir", help=_DIR_HELP),
    block_time: Optional[float] = typer.Option(None, help="Seconds per block; default mines on every transaction."),
    as_json: bool = json_opt(),
) -> None:
    """Start Anvil on a free loopback port, restoring its state from DIR if it has one."""
    from ..chain.devnet import Devnet

    with reporting(as_json):
        net = Devnet.load(dir).up(block_time=block_time)
        st = net.status()
        emit(as_json, st, [f"chain  {st['chain']['rpc_url']}  chain id {st['chain']['chain_id']}  pid {st['chain']['pid']}",
                           f"state  {st['chain']['state_file']}"])


@devnet_app.command("down", epilog=EXIT_CODES_HELP)
def devnet_down(
    dir: Path = typer.Option(Path(defaults.DEVNET_DIR), "--dir", help="Run directory given to `devnet up`."),
) -> None:
    """Stop the devnet's processes (SIGTERM: Anvil writes its state file first)."""
    from ..chain.devnet import Devnet

    with reporting():
        net = Devnet.load(dir)
        if net.anvil is None:
            raise InputError(f"no devnet recorded in {dir}")
        from ..procs import pid_alive

        was_running = pid_alive(net.anvil.pid)
        net.down()
        print(f"stopped; state kept in {net.anvil.state_file}" if was_running else
              f"nothing to stop: the devnet in {dir} was not running (its state is in {net.anvil.state_file})")


@devnet_app.command("status", epilog=EXIT_CODES_HELP)
def devnet_status(
    dir: Path = typer.Option(Path(defaults.DEVNET_DIR), "--dir", help="Run directory given to `devnet up`."),
    as_json: bool = json_opt(),
) -> None:
    """Show whether the devnet's chain is running, and where. Exit 3 when it is not."""
    from ..chain.devnet import Devnet

    with reporting(as_json):
        st = Devnet.load(dir).status()
    chain = st["chain"]
    if chain is None:
        emit(as_json, st, [f"no devnet recorded in {dir}"])
        raise typer.Exit(EXIT_UNREACHABLE)
    emit(as_json, st, [f"chain  {'running' if chain['running'] else 'stopped'}  {chain['rpc_url']}  "
                       f"chain id {chain['chain_id']}  pid {chain['pid']}"])
    if not chain["running"]:
        raise typer.Exit(EXIT_UNREACHABLE)


@reflow
def deploy(
    out: Path = typer.Option(Path(defaults.DEPLOYMENT_FILE), "--out", help="Where to write the deployment file."),
    rpc: Optional[str] = typer.Option(None, help="JSON-RPC URL of the chain node."),
    keystore: Optional[Path] = typer.Option(None, help="Encrypted keystore of the admin account."),
    password: str = typer.Option("prompt", help="Where the keystore password comes from: prompt, env:VAR or file:PATH."),
    poa: bool = typer.Option(False, help="The chain is proof-of-authority (Besu QBFT, Clique): adds the PoA middleware."),
    devnet: Optional[Path] = typer.Option(None, help="Deploy to the devnet of this run directory with its dev key 0."),
    as_json: bool = json_opt(),
) -> None:
    """Deploy the FedLedger contract; the deploying account becomes the consortium admin.

    The deployment file (chain id, address, ABI hash, block) is what every member is handed."""
    with reporting(as_json):
        from eth_account import Account

        from ..chain.deployment import deploy as do_deploy
        from ..chain.devnet import DEV_KEYS, Devnet
        from ..chain.keys import load_account, read_password

        if devnet is not None:
            net = Devnet.load(devnet)
            if net.anvil is None:
                raise InputError(f"no devnet recorded in {devnet}: run `fedledger devnet up --dir {devnet}`")
            rpc = rpc or net.anvil.rpc_url
            account = Account.from_key(DEV_KEYS[0])
        else:
            if rpc is None or keystore is None:
                raise InputError("give --rpc and --keystore (or --devnet DIR for the local devnet)")
            account = load_account(keystore, read_password(password))
        dep = do_deploy(rpc, account, out, poa=poa)
        emit(as_json, asdict(dep), [f"FedLedger deployed at {dep.address} (chain {dep.chain_id}, block {dep.block})",
                                    f"deployment file: {out}"])


def register(app: typer.Typer) -> None:
    app.add_typer(devnet_app, name="devnet")
    app.command("deploy", epilog=EXIT_CODES_HELP)(deploy)
