#!/usr/bin/env python3
"""Admit every organisation of a consortium file: `fedledger member add` for each
`[[organisation]]` that has a `member_address`, skipping those already admitted.

    scripts/admit_members.py consortium.toml --deployment deployment.json \\
        --keystore admin.json --password file:/etc/fedledger/admin.pw --poa

The consortium file is the one `scripts/qbft_genesis.py` reads (docs/deploy.md). The admin's
password is read once (prompt, env:VAR or file:PATH). Exit codes as for every operator command:
0 ok, 1 wrong input, 3 chain unreachable, 4 the chain refused (the custom error is named).
"""
import argparse
import json
import sys
from pathlib import Path

from fedledger.node.cli.output import reporting
from fedledger.node.errors import EXIT_INPUT, InputError
from fedledger.node.ops.access import chain_access
from fedledger.node.ops.network import NetworkSpec, NetworkSpecError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/deploy.md, step 5.")
    parser.add_argument("consortium", type=Path, help="The consortium TOML file.")
    parser.add_argument("--deployment", type=Path, default=Path("deployment.json"), help="The deployment file.")
    parser.add_argument("--rpc", help="JSON-RPC URL (default: the one in the deployment file).")
    parser.add_argument("--keystore", type=Path, help="The admin's keystore.")
    parser.add_argument("--password", default="prompt", help="prompt, env:VARIABLE or file:PATH.")
    parser.add_argument("--devnet", type=Path, help="Sign with the local devnet's dev key 0 instead.")
    parser.add_argument("--poa", action="store_true", help="The chain is proof-of-authority (Besu QBFT).")
    parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")
    args = parser.parse_args(argv)
    try:
        orgs = [o for o in NetworkSpec.load(args.consortium).organisations if o.member_address]
    except NetworkSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    outcome = {}
    try:
        with reporting(args.json):
            if not orgs:
                raise InputError(f"no organisation in {args.consortium} has a member_address")
            acc = chain_access(deployment=args.deployment, rpc=args.rpc, poa=args.poa, config=None,
                               keystore=args.keystore, password=None if args.devnet else args.password,
                               devnet=args.devnet, sign=True)
            for org in orgs:
                if acc.client.is_member(org.member_address):
                    outcome[org.name] = "already a member"
                else:
                    tx = acc.client.add_member(org.member_address, org.name)
                    outcome[org.name] = f"admitted in block {tx.block_number}"
                print(f"{org.name:20} {org.member_address}  {outcome[org.name]}", file=sys.stderr)
    except Exception as exc:  # typer.Exit from `reporting`: the error is printed, the code is in it
        if hasattr(exc, "exit_code"):
            return exc.exit_code
        raise
    if args.json:
        print(json.dumps({"ok": True, "members": outcome}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
