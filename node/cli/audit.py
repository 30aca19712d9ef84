"""`fedledger audit`: verify model lineage from contract events alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from .. import defaults
from ..errors import EXIT_BROKEN, EXIT_OK, EXIT_USAGE
from .output import EXIT_CODES_HELP, fail, reflow


@reflow
def audit(
    run: Optional[Path] = typer.Option(None, "--run", help="A finished run directory: restarts its chain and IPFS "
                                                           "repos (from scratch copies) by itself."),
    rpc: Optional[str] = typer.Option(None, "--rpc", help="JSON-RPC URL of a live federation's chain node."),
    contract: Optional[str] = typer.Option(None, "--contract", help="FedLedger address (with --rpc)."),
    deployment: Optional[Path] = typer.Option(None, "--deployment", help="The deployment file instead of --contract "
                                              "(gives the chain id, first block and maybe the RPC URL)."),
    ipfs: Optional[str] = typer.Option(None, "--ipfs", help="IPFS RPC API URL to fetch models through, e.g. "
                                                            "http://127.0.0.1:5001."),
    task: Optional[int] = typer.Option(None, "--task", help="Audit only this task (default: every task)."),
    model: Optional[str] = typer.Option(None, "--model", help="Show the ancestry of one model (sha256, 8+ digit "
                                                              "prefix, or CID) and audit only it."),
    export_dir: Optional[Path] = typer.Option(None, "--export", help="Write lineage.json and a self-contained "
                                                                     "lineage.html into this directory."),
    fetch_timeout: float = typer.Option(defaults.FETCH_TIMEOUT, "--fetch-timeout", min=0.1,
                                        help="Seconds allowed to fetch each blob before it counts as unavailable."),
    from_block: Optional[int] = typer.Option(None, "--from-block", help="First block to read events from (default: "
                                                                        "the deployment block, or 0)."),
    poa: bool = typer.Option(False, "--poa", help="The chain is proof-of-authority (Besu QBFT, Clique)."),
    anchor: Optional[str] = typer.Option(None, "--anchor", help="BLOCK:HASH of a block the chain must contain (ask "
                                         "any member's own chain node, or take the head an earlier audit printed): "
                                         "a chain without it fails with exit 5, whatever it holds."),
    as_json: bool = typer.Option(False, "--json", help="Print the lineage JSON instead of the table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
) -> None:
    """Verify model lineage from contract events alone: every update and global model fetched and
    checked against its on-chain sha256, every parent link back to genesis, every aggregate
    recomputed with the task's rule. It prints what it trusted (chain id, genesis block hash,
    contract address and code hash, the head block it read), warns when the chain uses the public
    devnet keys, and with --anchor checks that the chain contains a block known from elsewhere. Exit
    0 when everything verifies, 5 naming the first broken link or a missing anchor, 3 when the audit
    could not run."""
    from rich.console import Console
    from rich.markup import escape

    from ..audit.render import export, print_report
    from ..audit.run import audit_live, audit_run, parse_anchor
    from ..errors import FedledgerError

    err = Console(stderr=True, highlight=False)
    started = time.perf_counter()

    def say(line: str) -> None:
        if not quiet:
            err.print(f"[dim]{time.perf_counter() - started:6.1f}s[/dim] {escape(line)}", soft_wrap=True)

    live = any(x is not None for x in (rpc, contract, deployment, ipfs))
    if run is not None and live:
        fail(False, EXIT_USAGE, "Usage", "give either --run DIR or --rpc/--contract/--deployment/--ipfs, not both")
    if run is None and (ipfs is None or (contract is None and deployment is None)):
        fail(False, EXIT_USAGE, "Usage", "give --run DIR, or --rpc URL --contract ADDR --ipfs URL "
                                         "(or --deployment FILE instead of --contract)")
    try:
        anchored = parse_anchor(anchor) if anchor is not None else None
        if run is not None:
            result = audit_run(run, task, model=model, fetch_timeout=fetch_timeout, say=say, anchor=anchored)
        else:
            result = audit_live(rpc, contract, ipfs, task, deployment=deployment, from_block=from_block, poa=poa,
                                model=model, fetch_timeout=fetch_timeout, say=say, anchor=anchored)
    except FedledgerError as exc:
        fail(as_json, exc.exit_code, exc.kind, str(exc))
    if export_dir is not None:
        json_path, html_path = export(result, export_dir)
        say(f"wrote {json_path} and {html_path}")
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_report(result)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_BROKEN)


def register(app: typer.Typer) -> None:
    app.command("audit", epilog=EXIT_CODES_HELP)(audit)
