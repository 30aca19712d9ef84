#!/usr/bin/env python3
"""Write a consortium's Besu QBFT genesis and every organisation's configs (docs/deploy.md).

    scripts/qbft_genesis.py --example > consortium.toml       # then fill in each organisation
    scripts/qbft_genesis.py consortium.toml --out network     # genesis.json, ports.md, swarm.key, ORG/...
    scripts/qbft_genesis.py consortium.toml --out network --dev-keys   # a trial: generate missing node keys

Run `scripts/qbft_genesis.py --help` for every option. The work is done by fedledger.node.ops.network.
"""
import sys

from fedledger.node.ops.network import main

if __name__ == "__main__":
    sys.exit(main())
