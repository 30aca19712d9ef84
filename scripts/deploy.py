#!/usr/bin/env python3
"""Deploy FedLedger: a thin wrapper over `fedledger deploy` for deployment pipelines.

    scripts/deploy.py --rpc http://127.0.0.1:8545 --keystore admin.json --password env:ADMIN_PW --out deployment.json
    scripts/deploy.py --devnet runs/devnet --out runs/devnet/deployment.json

Run `scripts/deploy.py --help` for every option.
"""
import sys

from fedledger.node.cli.app import app

if __name__ == "__main__":
    sys.exit(app(["deploy", *sys.argv[1:]]))
