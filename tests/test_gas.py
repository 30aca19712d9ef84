"""Gas bounds, as contract tests on a real Anvil: what a round may cost the consortium.

`bench/gas.py` measures every size and writes the README's gas table; these tests hold the
contract to the bounds the design promises, on every `make test`. The bounds live here, once.
"""

import hashlib

import pytest

from fedledger.node.protocol import TaskConfig

pytestmark = pytest.mark.chain

#: A steady round of 10 members with 2 verifiers, every transaction of it (submissions, each opening
#: its member's secret, the last electing; publication; attestations up to the quorum).
MAX_ROUND_GAS_10_MEMBERS_2_VERIFIERS = 1_100_000  # the issue asked for 1.5M; about 0.97M measured
#: Rounds 1-2 claim each member's slots in each of the two round records once; round 1 also has a
#: reveal phase (nobody has a secret to open yet).
MAX_FIRST_ROUNDS_GAS_10_MEMBERS_2_VERIFIERS = 2_200_000
#: Any one submitUpdate, the one that fills the round (and so closes the window and elects) included.
MAX_SUBMIT_GAS = 200_000
#: Any one reveal (round 1 only), the last (which draws the seed and elects) included.
MAX_REVEAL_GAS = 100_000
#: Any one attest, the one that reaches the quorum (and so finalizes and opens the next round) included.
MAX_ATTEST_GAS = 150_000

#: A CIDv1 (base32, raw leaves, sha2-256) is 59 characters whatever the model's size.
CID = "bafkreig" + "a" * 52


def h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def run_rounds(ledger, members: int, verifiers: int, rounds: int = 3) -> list[dict]:
    """Run `rounds` full rounds with `members` members (dev keys 0..members-1) and return the gas
    of every call of each round."""
    clients = ledger.clients[:members]
    for i, c in enumerate(clients):
        ledger.admin.add_member(c.sender, f"org{i}")
    by_address = {c.sender: c for c in clients}
    cfg = TaskConfig("bafkspec", "bafkgenesis", h("genesis"), "fedavg", b"{}", members, members, 3600, 3600, 3600,
                     verifiers, verifiers // 2 + 1 if verifiers else 0, rounds + 1)
    task, _ = ledger.admin.create_task(cfg)
    parent, out = h("genesis"), []
    for rnd in range(1, rounds + 1):
        submits = [c.submit_update(task, rnd, parent, CID, h(f"u{rnd}-{i}"), 100) for i, c in enumerate(clients)]
        # Round 1 reveals the secrets its updates committed to (the last reveal elects); later
        # updates open the secrets committed before, and the one that fills the round elects.
        reveals = [c.reveal(task, rnd) for c in clients] if rnd == 1 else []
        elected = (reveals or submits)[-1].event("LeaderElected")
        aggregate = h(f"aggregate{rnd}")
        published = by_address[elected["leader"]].publish_aggregate(task, rnd, 0, CID, aggregate)
        attests = []
        for v in elected["verifiers"]:
            attests.append(by_address[v].attest(task, rnd, 0, True, aggregate))
            if any(e.name == "RoundFinalized" for e in attests[-1].events):
                break  # the quorum is reached
        assert len(attests) == (verifiers // 2 + 1 if verifiers else 0)
        assert ledger.admin.task_state(task).current_round == rnd + 1  # the round finalized
        out.append({"submit": [s.gas_used for s in submits], "reveal": [r.gas_used for r in reveals],
                    "publish": published.gas_used, "attest": [a.gas_used for a in attests],
                    "total": sum(s.gas_used for s in submits + reveals) + published.gas_used
                    + sum(a.gas_used for a in attests)})
        parent = aggregate
    return out


def test_a_ten_member_round_with_two_verifiers_stays_under_1_1M_gas_and_each_call_under_its_bound(ledger):
    rounds = run_rounds(ledger, members=10, verifiers=2)
    assert rounds[2]["total"] < MAX_ROUND_GAS_10_MEMBERS_2_VERIFIERS, rounds[2]
    for r in rounds:
        assert r["total"] < MAX_FIRST_ROUNDS_GAS_10_MEMBERS_2_VERIFIERS, r
        assert max(r["submit"]) < MAX_SUBMIT_GAS, r
        assert max(r["reveal"], default=0) < MAX_REVEAL_GAS, r
        assert max(r["attest"]) < MAX_ATTEST_GAS, r
    # The steady state (round 3 reuses round 1's storage) is cheaper than the first round.
    assert rounds[2]["total"] < rounds[0]["total"]


def test_gas_per_member_falls_as_members_grow_nothing_grows_with_their_square(ledger, anvil):
    from tests.plugins.chain import Ledger

    few = run_rounds(ledger, members=3, verifiers=2)[-1]
    many = run_rounds(Ledger(anvil.rpc_url), members=10, verifiers=2)[-1]
    assert many["total"] / 10 < few["total"] / 3
    # A submission costs the same whoever many others submitted (the election is O(1) per
    # candidate, not a sort): the average non-closing submit does not grow with the members.
    assert sum(many["submit"][:-1]) / 9 <= sum(few["submit"][:-1]) / 2 * 1.01
