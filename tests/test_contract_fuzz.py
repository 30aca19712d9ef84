"""Fuzz: random calls from random keys and random arguments, on a real Anvil node.

Every call that the protocol must refuse reverts with a named custom error from the ABI (never a
bare revert or a panic), and the contract's state is the same afterwards.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from eth_account import Account

from fedledger.node.chain.client import ChainClient
from fedledger.node.errors import ContractRevert
from fedledger.node.protocol import TaskConfig

pytestmark = pytest.mark.chain

GENESIS = hashlib.sha256(b"genesis").hexdigest()


def snapshot(c: ChainClient, task: int, members: list[str]) -> tuple:
    state = c.task_state(task)
    info = c.round_info(task, state.current_round)
    return (c.admin(), c.member_count(), c.task_count(), state, info, tuple(c.is_member(m) for m in members),
            tuple(c.participants(task, state.current_round)), c.block_number() >= 0)


def random_hash(rng: random.Random) -> str:
    return rng.choice([GENESIS, "00" * 32, "%064x" % rng.getrandbits(256)])


def random_call(rng: random.Random, client: ChainClient, task: int):
    """A random call. Made by a non-member, or by a member that already submitted (so any submit is a
    duplicate or aimed at the wrong round/task), during the submission phase, every one must fail."""
    rnd = rng.choice([0, 1, 2, 3, 2**32, rng.getrandbits(64)])
    t = rng.choice([task, task, task + 1, rng.getrandbits(32)])
    calls = [
        lambda: client.submit_update(t, rnd, random_hash(rng), rng.choice(["", "bafk", "x" * 200]),
                                     random_hash(rng), rng.choice([0, 1, 10**6])),
        lambda: client.publish_aggregate(t, rnd, rng.choice([0, 1, 7]), "bafkagg", random_hash(rng)),
        lambda: client.attest(t, rnd, rng.choice([0, 1, 7]), rng.choice([True, False]), random_hash(rng)),
        lambda: client.timeout(t, rnd),
        lambda: client.close_submissions(t, rnd),
        lambda: client.reveal(t, rnd, random_hash(rng)),
        lambda: client.close_reveals(t, rnd),
        lambda: client.add_member(Account.create().address, "intruder"),
        lambda: client.remove_member(Account.create().address),
        lambda: client.transfer_admin(client.sender),
        lambda: client.create_task(TaskConfig("bafkspec", "bafkgen", random_hash(rng), "fedavg")),
    ]
    return rng.choice(calls)


def test_a_thousand_random_illegal_calls_each_revert_with_a_named_error_and_change_nothing(ledger):
    rng = random.Random(20261127)
    admin = ledger.admin
    members = [ledger.accounts[i].address for i in (1, 2, 3)]
    for i, m in enumerate(members):
        admin.add_member(m, f"org{i + 1}")
    task, _ = admin.create_task(TaskConfig("bafkspec", "bafkgen", GENESIS, "fedavg", b"{}", 2, 3, 3600, 3600, 3600,
                                           1, 1, 3))
    # Legitimate updates so the round holds state worth protecting; members 1 and 2 are then fuzzed.
    ledger.client(1).submit_update(task, 1, GENESIS, "bafkupd1", hashlib.sha256(b"u1").hexdigest(), 10)
    ledger.client(2).submit_update(task, 1, GENESIS, "bafkupd2", hashlib.sha256(b"u2").hexdigest(), 20)
    names = {item["name"] for item in admin.artifact.abi if item["type"] == "error"}
    strangers = [ChainClient(ledger.rpc_url, ledger.address, Account.create(), artifact=admin.artifact)
                 for _ in range(5)]
    members_clients = [ledger.client(1), ledger.client(2)]
    before = snapshot(admin, task, members)

    seen: dict[str, int] = {}
    for i in range(1000):
        stranger = i % 2 == 0
        client = rng.choice(strangers) if stranger else rng.choice(members_clients)
        call = random_call(rng, client, task)
        try:
            call()
        except ContractRevert as exc:
            assert exc.error in names, f"call {i} reverted without a named custom error: {exc}"
            seen[exc.error] = seen.get(exc.error, 0) + 1
            continue
        raise AssertionError(f"call {i} by {'a stranger' if stranger else 'a member'} succeeded")
    assert snapshot(admin, task, members) == before
    # The fuzzer reached the protocol's refusals, not just the membership check.
    for expected in ("NotMember", "NotAdmin", "WrongRound", "UnknownTask", "StaleParent", "WrongPhase", "TooEarly"):
        assert seen.get(expected, 0) > 0, (expected, seen)
    assert sum(seen.values()) == 1000


def test_reverted_transactions_sent_without_estimation_leave_state_unchanged(ledger):
    """The same refusals hold on chain, not only in estimation: raw transactions revert (status 0)."""
    admin = ledger.admin
    admin.add_member(ledger.accounts[1].address, "org1")
    task, _ = admin.create_task(TaskConfig("bafkspec", "bafkgen", GENESIS, "fedavg", b"{}", 1, 3, 3600, 3600, 3600,
                                           0, 0, 3))
    stranger = Account.create()
    w3 = ledger.w3
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(ledger.accounts[0].sign_transaction({
        "to": stranger.address, "value": 10**18, "gas": 21000, "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(ledger.accounts[0].address), "chainId": 31337}).raw_transaction))
    before = snapshot(admin, task, [ledger.accounts[1].address])
    fns = [
        admin.contract.functions.submitUpdate(task, 1, bytes.fromhex(GENESIS), "bafk", b"\x01" * 32, 5, b"\x02" * 32,
                                             b"\x00" * 32),
        admin.contract.functions.addMember(stranger.address, "me"),
        admin.contract.functions.publishAggregate(task, 1, 0, "bafk", b"\x01" * 32, b"\x01", b"\x00"),
        admin.contract.functions.closeSubmissions(task, 1),
        admin.contract.functions.reveal(task, 1, b"\x03" * 32, b"\x04" * 32),
    ]
    for nonce, fn in enumerate(fns):
        tx = fn.build_transaction({"from": stranger.address, "nonce": nonce, "gas": 300_000,
                                   "gasPrice": w3.eth.gas_price, "chainId": 31337})
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(
            stranger.sign_transaction(tx).raw_transaction))
        assert receipt["status"] == 0
    assert snapshot(admin, task, [ledger.accounts[1].address]) == before
