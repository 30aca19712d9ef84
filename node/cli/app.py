"""The `fedledger` command line: one Typer app, one module per command group, wired here.

Nothing below the command line imports it. Each command imports the layers it needs when it runs,
so `fedledger --help` and quick commands stay fast (web3 and torch cost seconds to import).
"""

from __future__ import annotations

import typer

from . import audit, devnet, governance, init, ipfs, keys, members, node, sim, tasks
from .output import EXIT_CODES_HELP

app = typer.Typer(
    help="fedledger: decentralized federated learning coordinated by a smart contract.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: option names are never cut, whatever the terminal width
    epilog=EXIT_CODES_HELP,
    context_settings={"max_content_width": 120},
)

for group in (devnet, node, sim, audit, keys, init, members, governance, tasks, ipfs):
    group.register(app)


def main() -> None:
    app()
