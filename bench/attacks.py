#!/usr/bin/env python3
"""Every attack of the fair-rounds issue, run against the code as it is, next to what the same
attacker achieved before (measured on the issue's starting commit, be1a81b, by the attack scripts
that motivated it): writes bench/results/attacks.json, a list with one object per attack holding
`attack`, `before`, `after`, `attacker_succeeded_after` and the figures.

The scenarios are those of tests/test_attacks.py (tests/attacks.py), on a fresh Anvil and a
fresh IPFS node started here; each scenario gets its own deployment.

    .venv/bin/python bench/attacks.py [--elections 500] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provenance import stamp  # noqa: E402

from fedledger.node.chain.devnet import AnvilNode  # noqa: E402
from fedledger.node.storage.daemon import IpfsDaemon  # noqa: E402
from tests import attacks  # noqa: E402
from tests.plugins.chain import Ledger  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

#: What each attack achieved on the starting commit, as the issue reports it.
BEFORE = {
    "claim_2_53": "numSamples had no upper bound: a claim of 2^53 samples made the FedAvg global model bit-identical "
                  "to the attacker's update, and a numSamples between 2^53 and 2^64 raised AggregationError in every "
                  "leader and verifier, so the round never finalized",
    "claim_2_64": "one submission of 2^64-1 samples overflowed the uint64 totalSamples: every later submitUpdate "
                  "reverted with Panic 0x11 and closeSubmissions with NotEnoughParticipants, even after the member "
                  "was removed: the task was frozen for good",
    "largest_claim": "no cap on a claim's weight: a weight of 1,300 against three honest 400s pulled even the "
                     "geometric median to within 3e-3 of the attacker's update",
    "huge_values": "finite values of 3e38 passed the strict reader and FedAvg had no bound on an update's size",
    "withheld": "a member withholding its blob could push an honest leader past its aggregation window",
    "selectively_served": "serving the blob to the verifiers but not the leader got an honest leader rejected",
    "silent_drop": "a leader plus a quorum could drop an honest update; the audit recorded it as unavailable and "
                   "passed",
    "colluding_pair": "under the task create defaults (min 2 participants, 2 verifiers, quorum 2) two colluders stopped "
                      "honest submissions and, with 2 participants, the contract dropped to 1 verifier and quorum 1: a "
                      "bogus model was finalized",
    "grinding": "the seed was keccak(blockhash(close-1), task, round, epoch, inputsDigest) and the last submitter "
                "picked its numSamples knowing the blockhash: with 27 off-chain hashes one member of four led 6 "
                "rounds of 6",
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--elections", type=int, default=500)
    ap.add_argument("--only", default=",".join(BEFORE))
    args = ap.parse_args()
    only = set(args.only.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="fedledger-attacks-") as tmp:
        base = Path(tmp)
        anvil = AnvilNode(run_dir=base / "chain").start()
        daemon = IpfsDaemon(base / "ipfs", name="bench").init().start()
        try:
            runs = {
                "claim_2_53": lambda d: attacks.sample_claim_over_cap(Ledger(anvil.rpc_url), daemon.api_url, d, 2**53),
                "claim_2_64": lambda d: attacks.sample_claim_over_cap(Ledger(anvil.rpc_url), daemon.api_url, d,
                                                                      2**64 - 1),
                "largest_claim": lambda d: attacks.largest_claim_share(Ledger(anvil.rpc_url), daemon.api_url, d),
                "huge_values": lambda d: attacks.huge_values(Ledger(anvil.rpc_url), daemon.api_url, d),
                "withheld": lambda d: attacks.withheld_blob(Ledger(anvil.rpc_url), daemon.api_url, d),
                "selectively_served": lambda d: attacks.withheld_blob(Ledger(anvil.rpc_url), daemon.api_url, d,
                                                                      serve_verifiers=True),
                "silent_drop": lambda d: attacks.silent_drop(Ledger(anvil.rpc_url), daemon.api_url, d),
                "colluding_pair": lambda d: attacks.colluding_pair(Ledger(anvil.rpc_url)),
                "grinding": lambda d: attacks.grinding(Ledger(anvil.rpc_url), elections=args.elections),
            }
            for name, run in runs.items():
                if name not in only:
                    continue
                print(f"== {name}", file=sys.stderr, flush=True)
                work = base / name
                work.mkdir()
                out = run(work)
                rows.append({"name": name, "attack": out.attack, "before": BEFORE[name], "after": out.detail,
                             "attacker_succeeded_after": out.attacker_succeeded, "figures": out.figures, **stamp()})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            daemon.stop()
            anvil.stop()
    path = RESULTS / "attacks.json"
    if set(BEFORE) - only and path.exists():  # a partial rerun keeps the other attacks' rows
        rows = [r for r in json.loads(path.read_text()) if r["name"] not in only] + rows
        rows.sort(key=lambda r: list(BEFORE).index(r["name"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    for r in rows:
        print(f"{r['attack']}: {'ATTACKER SUCCEEDED' if r['attacker_succeeded_after'] else 'honest outcome'} - "
              f"{r['after']}")
    return 1 if any(r["attacker_succeeded_after"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
