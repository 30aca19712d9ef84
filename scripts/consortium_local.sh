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
dir="${1:-runs/consortium-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$dir"
if [ -n "$(ls -A "$dir")" ]; then
    echo "error: $dir is not empty; the guide starts from an empty directory" >&2
    exit 1
fi
guide="$(awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$root/docs/consortium.md")"
cd "$dir"
stop_all() {
    status=$?
    if [ "$status" -ne 0 ]; then
        for repo in org*/ipfs; do [ -d "$repo" ] && fedledger ipfs down --repo "$repo" >/dev/null 2>&1 || true; done
        [ -f devnet/devnet.json ] && fedledger devnet down --dir devnet >/dev/null 2>&1 || true
        echo "error: the guide failed (exit $status); logs in $dir/org*/" >&2
    fi
    exit "$status"
}
trap stop_all EXIT
# Node processes started with & belong to the inner shell: stop them if it fails midway.
bash -euo pipefail -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT
$guide"
