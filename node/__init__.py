"""The fedledger peer: chain client, IPFS store, model format, trainer API, roles and CLI."""
