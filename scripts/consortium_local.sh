#!/usr/bin/env bash
# Run the "Run a consortium" guide (docs/consortium.md) in a fresh directory: two organisations
# federate on this machine with the operator commands only (devnet, keys, deploy, ipfs, member,
# task, init, node run), then everything is stopped. The guide's shell blocks are the script.
#
#   scripts/consortium_local.sh [DIR]      # default: runs/consortium-YYYYmmdd-HHMMSS
#
# Needs `make setup` and `fedledger` on PATH (source .venv/bin/activate). Exit status: the
# guide's. On failure whatever the guide started is stopped; logs stay in DIR/org*/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec "$root/scripts/run_guide.sh" "$root/docs/consortium.md" "${1:-runs/consortium-$(date +%Y%m%d-%H%M%S)}"
