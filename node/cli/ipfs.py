"""`fedledger ipfs init|up|addr|down|status`: an organisation's dev IPFS node (Kubo in production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import typer

from ..errors import EXIT_UNREACHABLE, InputError
from ..storage.daemon import META_FILE
from ..storage.orgnode import OrgIpfsDaemon
from .output import EXIT_CODES_HELP, emit, json_opt, reflow, reporting


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
@reflow
def ipfs_init(
    repo: Path = _repo_opt(),
    name: Optional[str] = typer.Option(None, "--name", help="A label for logs (default: the repo's parent directory)."),
    swarm_host: Optional[str] = typer.Option(None, "--swarm-host", help=_SWARM_HOST_HELP),
    swarm_port: Optional[int] = typer.Option(None, "--swarm-port", min=1, max=65535, help="Swarm TCP port (default: a free one)."),
    api_port: Optional[int] = typer.Option(None, "--api-port", min=1, max=65535, help="API port on 127.0.0.1 (default: a free one)."),
    gateway_port: Optional[int] = typer.Option(None, "--gateway-port", min=1, max=65535, help=_GATEWAY_PORT_HELP),
    bootstrap: Optional[list[str]] = typer.Option(None, "--bootstrap", help=_BOOTSTRAP_HELP),
    as_json: bool = json_opt(),
) -> None:
    """Create the node's repo (its identity) and config without starting it, and print its peer
    id and swarm multiaddr: what the other organisations put in their --bootstrap lists."""
    with reporting(as_json):
        d = _daemon(repo, name, swarm_host, swarm_port, api_port, bootstrap, gateway_port).init()
        info = d.describe()
        emit(as_json, {"ok": True} | info, _ipfs_lines(info))


@ipfs_app.command("up", epilog=EXIT_CODES_HELP)
@reflow
def ipfs_up(
    repo: Path = _repo_opt(),
    name: Optional[str] = typer.Option(None, "--name", help="A label for logs (default: the repo's parent directory)."),
    swarm_host: Optional[str] = typer.Option(None, "--swarm-host", help=_SWARM_HOST_HELP),
    swarm_port: Optional[int] = typer.Option(None, "--swarm-port", min=1, max=65535, help="Swarm TCP port."),
    api_port: Optional[int] = typer.Option(None, "--api-port", min=1, max=65535, help="API port on 127.0.0.1."),
    gateway_port: Optional[int] = typer.Option(None, "--gateway-port", min=1, max=65535, help=_GATEWAY_PORT_HELP),
    bootstrap: Optional[list[str]] = typer.Option(None, "--bootstrap", help=_BOOTSTRAP_HELP),
    timeout: float = typer.Option(90.0, "--timeout", help="Seconds to wait for the API to answer."),
    as_json: bool = json_opt(),
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
        emit(as_json, {"ok": True} | info, lines)


@ipfs_app.command("addr", epilog=EXIT_CODES_HELP)
@reflow
def ipfs_addr(repo: Path = _repo_opt(),
              gateway: bool = typer.Option(False, "--gateway", help="Print the gateway URL instead: the value "
                                                                    "other organisations pass to `init --gateway`.")) -> None:
    """Print the node's swarm multiaddr alone, for scripts: the value other organisations pass as
    --bootstrap. The node need not be running."""
    with reporting(False):
        if not (repo / META_FILE).exists():
            raise InputError(f"{repo} is not a fedledger IPFS repo: run `fedledger ipfs init --repo {repo}`")
        daemon = OrgIpfsDaemon(repo)
        print(daemon.gateway_url if gateway else daemon.swarm_addrs()[0])


@ipfs_app.command("down", epilog=EXIT_CODES_HELP)
@reflow
def ipfs_down(repo: Path = _repo_opt(), as_json: bool = json_opt()) -> None:
    """Stop the node (SIGTERM; it closes its repo cleanly). Does nothing if it is not running."""
    with reporting(as_json):
        d = OrgIpfsDaemon(repo)
        was = d.running
        d.stop()
        emit(as_json, {"ok": True, "repo": str(repo), "was_running": was},
              [f"stopped the IPFS node of {repo}" if was else f"the IPFS node of {repo} was not running"])


@ipfs_app.command("status", epilog=EXIT_CODES_HELP)
@reflow
def ipfs_status(repo: Path = _repo_opt(), as_json: bool = json_opt()) -> None:
    """Show the node: running or not, API URL, peer id, swarm multiaddr, bootstrap list and
    connected peers. Exit 3 when it is not running."""
    with reporting(as_json):
        if not (repo / META_FILE).exists():
            raise InputError(f"{repo} is not a fedledger IPFS repo: run `fedledger ipfs init --repo {repo}`")
        info = OrgIpfsDaemon(repo).describe()
        emit(as_json, {"ok": info["running"]} | info, _ipfs_lines(info))
        if not info["running"]:
            raise typer.Exit(EXIT_UNREACHABLE)


def register(app: typer.Typer) -> None:
    app.add_typer(ipfs_app, name="ipfs")
