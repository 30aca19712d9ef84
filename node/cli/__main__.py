"""`python -m fedledger.node.cli ...` is `fedledger ...` (how `fedledger sim` starts its nodes)."""

from .app import main

main()
