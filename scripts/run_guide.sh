#!/usr/bin/env bash
# Run a guide's shell blocks (every ```sh block of a markdown file, in order) in a fresh
# directory, as a reader would: docs/consortium.md, examples/*/README.md. `$example` holds the
# guide's own directory (its files: a workload module, data scripts). On failure whatever the
# guide started (IPFS nodes, the devnet, node processes) is stopped; logs stay in DIR.
#
#   scripts/run_guide.sh GUIDE.md [DIR]      # default DIR: runs/guide-YYYYmmdd-HHMMSS
#
# Needs `make setup` and `fedledger` on PATH (source .venv/bin/activate). Exit status: the guide's.
set -euo pipefail
guide_file="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
dir="${2:-runs/guide-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$dir"
if [ -n "$(ls -A "$dir")" ]; then
    echo "error: $dir is not empty; the guide starts from an empty directory" >&2
    exit 1
fi
export example="$(dirname "$guide_file")"
guide="$(awk '/^```sh$/ {on = 1; next} /^```$/ {on = 0} on' "$guide_file")"
cd "$dir"
stop_all() {
    status=$?
    if [ "$status" -ne 0 ]; then
        for repo in */ipfs; do [ -d "$repo" ] && fedledger ipfs down --repo "$repo" >/dev/null 2>&1 || true; done
        [ -f devnet/devnet.json ] && fedledger devnet down --dir devnet >/dev/null 2>&1 || true
        echo "error: the guide failed (exit $status); logs in $dir/*/" >&2
    fi
    exit "$status"
}
trap stop_all EXIT
# Node processes started with & belong to the inner shell: stop them if it fails midway.
bash -euo pipefail -c "trap 'kill \$(jobs -p) 2>/dev/null || true' EXIT
$guide"
