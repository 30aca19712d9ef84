#!/usr/bin/env python3
"""Gas per FedLedger call and per round, for 2-50 members with 0 and 2 verifiers, on a real Anvil.

Runs three full rounds per configuration (submissions, each opening the secret its member committed
to before and committing to the next; in round 1, where nobody has one to open, the reveals;
publication with the included set; attestations up to the quorum) and reports the third: the
steady state, where a round reuses the storage of the round before last. The first-round figures
keep the cost of rounds 1-2, which claim fresh storage. Prints a markdown table, writes
bench/results/gas.json and bench/results/gas.md, with the time and commit measured. bench/report.py
turns gas.json into the README's gas section. Checks printed here: submit and attest each under
100k gas and independent of model size (rounds 1-2 under 150k), reveals under 100k; a 10-member
round with 2 verifiers under 1.5M gas; no per-round cost growing with members squared
(tests/test_gas.py holds the contract to its bounds on every `make test`). Also measured: the
members' vote with 10 members (ending bootstrap, a proposal, a vote, an executed admission).

    .venv/bin/python bench/gas.py [--members 2,5,10,25,50] [--verifiers 0,2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from eth_account import Account

from fedledger.node.chain.client import ChainClient
from fedledger.node.protocol import TaskConfig
from fedledger.node.chain.devnet import DEV_KEYS, AnvilNode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import stamp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# A CIDv1 (base32, raw leaves, sha2-256) is 59 characters whatever the model size: the chain
# sees only this string and a 32-byte hash.
CID = "bafkreig" + "a" * 52


def measure(rpc_url: str, n: int, k: int) -> dict:
    funder = Account.from_key(DEV_KEYS[0])
    admin = ChainClient(rpc_url, None, funder)
    admin.deploy()
    members = [Account.create() for _ in range(n)]
    w3 = admin.w3
    nonce = w3.eth.get_transaction_count(funder.address)
    hashes = []
    for i, m in enumerate(members):
        tx = {"to": m.address, "value": 10**18, "gas": 21000, "gasPrice": w3.eth.gas_price,
              "nonce": nonce + i, "chainId": admin.chain_id}
        hashes.append(w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction))
    for tx_hash in hashes:
        w3.eth.wait_for_transaction_receipt(tx_hash)
    admin._nonce = None
    add_gas = [admin.add_member(m.address, f"org{i}").gas_used for i, m in enumerate(members)]
    clients = [ChainClient(rpc_url, admin.address, m, artifact=admin.artifact) for m in members]
    by_addr = {c.sender: c for c in clients}
    cfg = TaskConfig("bafkspec", "bafkgenesis", h("genesis"), "fedavg", b"{}", n, n, 3600, 3600, 3600,
                     k, (k // 2 + 1) if k else 0, 4)
    task, created = admin.create_task(cfg)

    parent = h("genesis")
    rows = {}
    for rnd in (1, 2, 3):
        results = [c.submit_update(task, rnd, parent, CID, h(f"u{rnd}{i}"), 100) for i, c in enumerate(clients)]
        submit = [r.gas_used for r in results[:-1]]
        # What closing the window (and, after round 1, electing) adds to the update that fills the round.
        close = results[-1].gas_used - round(sum(submit) / len(submit))
        # Round 1: nobody had a secret to open; the participants reveal, the last reveal elects.
        reveals = [c.reveal(task, rnd) for c in clients] if rnd == 1 else []
        elected = (reveals or results)[-1].event("LeaderElected")
        reveal = [r.gas_used for r in reveals[:-1]]
        elect = reveals[-1].gas_used - round(sum(reveal) / len(reveal)) if reveals else None
        agg = h(f"agg{rnd}")
        published = by_addr[elected["leader"]].publish_aggregate(task, rnd, 0, CID, agg)
        attest = []
        for v in elected["verifiers"]:
            tx = by_addr[v].attest(task, rnd, 0, True, agg)
            attest.append(tx.gas_used)
            if any(e.name == "RoundFinalized" for e in tx.events):  # the quorum is reached: the rest need not attest
                break
        parent = agg
        total = sum(r.gas_used for r in results + reveals) + published.gas_used + sum(attest)
        rows[rnd] = {
            "submit_avg": round(sum(submit) / len(submit)),
            "submit_max": max(submit),
            "close": close,
            "closing_submit": results[-1].gas_used,
            "reveal_avg": round(sum(reveal) / len(reveal)) if reveal else None,
            "reveal_max": max(reveal) if reveal else None,
            "elect": elect,
            "publish": published.gas_used,
            "attest_avg": round(sum(attest) / len(attest)) if attest else None,
            "attest_min": min(attest) if attest else None,
            "attest_max": max(attest) if attest else None,
            "round_total": total,
            "round_total_per_member": round(total / n),
        }
    return {"members": n, "verifiers": k, "add_member": max(add_gas), "create_task": created.gas_used,
            **{k: v for k, v in rows[3].items() if k not in ("reveal_avg", "reveal_max", "elect")},
            "first_rounds_submit_max": max(rows[1]["submit_max"], rows[2]["submit_max"]),
            "first_round_reveal_avg": rows[1]["reveal_avg"], "first_round_reveal_max": rows[1]["reveal_max"],
            "first_round_elect": rows[1]["elect"], "first_round_total": rows[1]["round_total"],
            "second_round_total": rows[2]["round_total"]}


def timeout_gas(rpc_url: str) -> int:
    """Gas of a leader timeout that elects the next candidate (10 members, 2 verifiers)."""
    funder = Account.from_key(DEV_KEYS[0])
    admin = ChainClient(rpc_url, None, funder)
    admin.deploy()
    clients = [ChainClient(rpc_url, admin.address, Account.from_key(k), artifact=admin.artifact) for k in DEV_KEYS]
    for i, c in enumerate(clients):
        admin.add_member(c.sender, f"org{i}")
    task, _ = admin.create_task(TaskConfig("bafkspec", "bafkgen", h("g"), "fedavg", b"{}", 10, 10, 60, 60, 60, 2, 2, 3))
    for i, c in enumerate(clients):
        c.submit_update(task, 1, h("g"), CID, h(f"u{i}"), 100)  # the tenth closes the window
    for c in clients:
        c.reveal(task, 1)  # round 1 has a reveal phase; the tenth reveal elects
    w3 = admin.w3
    w3.provider.make_request("evm_increaseTime", [61])
    w3.provider.make_request("evm_mine", [])
    return admin.timeout(task, 1).gas_used


def governance_gas(rpc_url: str, n: int = 10) -> dict:
    """Gas of the members' vote with `n` members and a 2/3 threshold: ending bootstrap (deploying
    MemberVote, offering and accepting the admin role), a proposal, a vote, and an executed admission."""
    from fedledger.node.chain.governance import Governance, Rules

    admin = ChainClient(rpc_url, None, Account.from_key(DEV_KEYS[0]))
    admin.deploy()
    clients = [ChainClient(rpc_url, admin.address, Account.from_key(k), artifact=admin.artifact) for k in DEV_KEYS[:n]]
    for i, c in enumerate(clients):
        admin.add_member(c.sender, f"org{i}")
    gov, started = Governance.start(admin, Rules(6666, 0, 3600))
    voters = [Governance(c, gov.address) for c in clients]
    pid, proposed = voters[0].propose("add-member", ["0x" + "5e" * 20, "newcomer"])
    votes = [voters[i].vote(pid, True).gas_used for i in range(1, gov.proposal(pid).required)]
    executed = gov.execute(pid)
    return {"members": n, "threshold_bps": 6666, "govern": sum(t.gas_used for t in started),
            "propose": proposed.gas_used, "vote_max": max(votes), "votes_to_pass": len(votes) + 1,
            "execute_add_member": executed.gas_used,
            "admission_total": proposed.gas_used + sum(votes) + executed.gas_used}


def markdown(rows: list[dict], timeout: int) -> str:
    head = ("| members | verifiers | submit (avg / max) | close + elect | publish | attest (max) | round total | "
            "per member | round 1 reveal (max) | round 1 total |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['members']} | {r['verifiers']} | {r['submit_avg']:,} / {r['submit_max']:,} | {r['close']:,} | "
        f"{r['publish']:,} | {'–' if r['attest_max'] is None else format(r['attest_max'], ',')} | "
        f"{r['round_total']:,} | {r['round_total_per_member']:,} | {r['first_round_reveal_max']:,} | "
        f"{r['first_round_total']:,} |\n"
        for r in rows
    )
    first = max(r["first_rounds_submit_max"] for r in rows)
    return (head + body + f"\nSteady-state round (round 3). Rounds 1-2 claim fresh storage: submit up to {first:,} gas."
            f"\n`close + elect` is what closing the window and electing adds to the submission that fills the round;"
            f" round 1 alone has a reveal phase. Attestations stop at the quorum (a majority)."
            f"\nLeader timeout that elects the next candidate: {timeout:,} gas.\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", default="2,5,10,25,50")
    ap.add_argument("--verifiers", default="0,2,3")
    args = ap.parse_args()
    rows = []
    measured = stamp()
    with tempfile.TemporaryDirectory() as tmp:
        anvil = AnvilNode(run_dir=Path(tmp)).start()
        try:
            for k in (int(x) for x in args.verifiers.split(",")):
                for n in (int(x) for x in args.members.split(",")):
                    if n <= k:  # a round needs its leader and every verifier
                        continue
                    print(f"measuring {n} members, {k} verifiers ...", file=sys.stderr, flush=True)
                    rows.append(measure(anvil.rpc_url, n, k))
            t_gas = timeout_gas(anvil.rpc_url)
            governance = governance_gas(anvil.rpc_url)
        finally:
            anvil.stop()
    table = markdown(rows, t_gas)
    print(table)
    print("governance:", json.dumps(governance))
    checks = {
        "submit_under_100k": all(r["submit_max"] < 100_000 for r in rows),
        # Rounds 1-2 claim each member's commitment slot in each of the two round records once.
        "first_rounds_submit_under_150k": all(r["first_rounds_submit_max"] < 150_000 for r in rows),
        "reveal_under_100k": all(r["first_round_reveal_max"] < 100_000 for r in rows),
        "attest_under_100k": all(r["attest_max"] is None or r["attest_max"] < 100_000 for r in rows),
        "ten_members_two_verifiers_under_1_5M": all(
            r["round_total"] < 1_500_000 for r in rows if r["members"] == 10 and r["verifiers"] == 2),
    }
    # Linear, not quadratic: per-member round cost must not grow with the number of members.
    for k in {r["verifiers"] for r in rows}:
        per = [r["round_total_per_member"] for r in rows if r["verifiers"] == k]
        checks[f"per_member_cost_nonincreasing_k{k}"] = per[-1] <= per[0]
    print("checks:", json.dumps(checks))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gas.json").write_text(json.dumps({**measured, "rows": rows, "timeout_gas": t_gas,
                                                  "governance": governance, "checks": checks},
                                                         indent=2) + "\n")
    (RESULTS / "gas.md").write_text(table)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
