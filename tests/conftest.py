"""Shared fixtures: real Anvil and IPFS processes live in tests/plugins/."""
pytest_plugins = ["tests.plugins.chain", "tests.plugins.ipfs"]
