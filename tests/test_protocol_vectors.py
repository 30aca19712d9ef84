"""docs/protocol-vectors.json: every derivation of docs/protocol.md with inputs and the outputs this
implementation gives. A third party checks its own node or auditor against the file; this test
checks the file against the implementation, so the two cannot drift apart.

Regenerate after a deliberate protocol change: FEDLEDGER_WRITE_VECTORS=1 pytest tests/test_protocol_vectors.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from fedledger.aggregation.registry import encode_params
from fedledger.node.chain.contracts import Artifact
from fedledger.node.peer.recompute import UpdateRecord, build_aggregate
from fedledger.node.protocol import (
    bitmap,
    commitment,
    coprime_step,
    derive_seed,
    election_order,
    inclusion_hash,
    initial_digest,
    next_digest,
    rule_to_bytes32,
    seed_start,
    verifiers_for,
    xor_secrets,
)
from fedledger.node.protocol.meta import global_meta, update_meta
from fedledger.node.storage.modelfile import FORMAT, ModelSpec, write_model

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "docs" / "protocol-vectors.json"

MEMBERS = [  # the devnet's first five accounts
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
]
PARENT = {"w": [[0.5, -0.25, 1.0], [0.0, 2.0, -1.5]], "b": [0.125, 0.0, -0.75]}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tensors(values: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in values.items()}


def shifted(i: int) -> dict:
    """Update i: the parent moved by small exact binary fractions (update 4 is an outlier)."""
    scale = 64.0 if i == 5 else 1.0
    return {"w": (np.asarray(PARENT["w"]) + scale * (i + 1) * np.array([[0.125, -0.0625, 0.25], [0.5, 0.0, -0.125]]))
            .tolist(), "b": (np.asarray(PARENT["b"]) + scale * (i - 2) * 0.03125).tolist()}


def raw_cid(data: bytes) -> str:
    """CIDv1, raw codec, sha2-256, base32 lower: how a blob of at most one 256 KiB chunk is named."""
    digest = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(digest).decode().lower().rstrip("=")


def election_vectors() -> list[dict]:
    out = []
    for task, rnd, epoch, n in ((0, 1, 0, 6), (3, 7, 1, 4), (1, 2, 0, 2)):
        parent = sha(f"parent {task} {rnd}")
        secrets = [sha(f"secret {task} {rnd} {i}") for i in range(n)]
        acc = xor_secrets([seed_start(task, rnd, parent), *secrets])
        seed = derive_seed(acc, task, rnd, epoch)
        order = election_order(seed, MEMBERS[:n])
        out.append({
            "task": task, "round": rnd, "epoch": epoch, "parent": parent, "secrets": secrets,
            "participants": MEMBERS[:n],
            "seed_start": seed_start(task, rnd, parent).hex(), "accumulator": acc.hex(), "seed": seed,
            "offset": int(seed, 16) % n,
            "step": coprime_step(int.from_bytes(_keccak(bytes.fromhex(seed)), "big"), n),
            "order": order,
            "verifiers": {str(a): verifiers_for(order, a, 2) for a in range(n)},
        })
    return out


def _keccak(data: bytes) -> bytes:
    from eth_utils import keccak

    return keccak(data)


def digest_vector() -> dict:
    task, rnd, parent = 2, 5, sha("parent 2 5")
    updates = [{"member": m, "sha256": sha(f"update {i}"), "num_samples": 100 + 7 * i} for i, m in enumerate(MEMBERS[:3])]
    chain, d = [], initial_digest(task, rnd, parent)
    for u in updates:
        d = next_digest(d, u["member"], u["sha256"], u["num_samples"])
        chain.append(d.hex())
    return {"task": task, "round": rnd, "parent": parent, "initial": initial_digest(task, rnd, parent).hex(),
            "updates": updates, "after_each": chain}


def peer_meta(task: int, rnd: int, parent_sha: str, member: str, num_samples: int) -> dict[str, str]:
    """The metadata a peer writes into its update (node/peer/loop.py)."""
    return {"kind": "update", **update_meta(task, rnd, parent_sha, member), "rule": "fedavg",
            "num_samples": str(num_samples)}


def model_vectors() -> dict:
    spec = ModelSpec.from_tensors(tensors(PARENT))
    parent_bytes = write_model(tensors(PARENT), {"kind": "genesis", "task": "2", "round": "0", "rule": "fedavg"})
    meta = peer_meta(2, 1, hashlib.sha256(parent_bytes).hexdigest(), MEMBERS[0], 100)
    update = write_model(tensors(shifted(0)), meta)
    spec_json = spec.to_json()
    return {
        "spec": {"tensors": PARENT, "json": spec_json.decode(), "sha256": hashlib.sha256(spec_json).hexdigest(),
                 "cid": raw_cid(spec_json)},
        "genesis": {"tensors": PARENT, "meta": {"kind": "genesis", "task": "2", "round": "0", "rule": "fedavg"},
                    "hex": parent_bytes.hex(), "sha256": hashlib.sha256(parent_bytes).hexdigest(),
                    "cid": raw_cid(parent_bytes)},
        "update": {"tensors": shifted(0), "meta": meta, "hex": update.hex(),
                   "sha256": hashlib.sha256(update).hexdigest()},
        "format": FORMAT,
    }


def aggregation_vectors(tmp: Path) -> list[dict]:
    genesis = write_model(tensors(PARENT), {"kind": "genesis", "task": "2", "round": "0", "rule": "fedavg"})
    parent_sha = hashlib.sha256(genesis).hexdigest()
    (tmp / "parent").write_bytes(genesis)
    spec = ModelSpec.from_tensors(tensors(PARENT))
    files, records, updates = {}, [], []
    for i, member in enumerate(MEMBERS):
        meta = peer_meta(2, 1, parent_sha, member, 100 * (i + 1))
        if i == 3:
            meta["round"] = "9"  # says another round: excluded as wrong_meta by everyone
        data = write_model(tensors(shifted(i)), meta)
        digest = hashlib.sha256(data).hexdigest()
        files[digest] = data
        (tmp / digest).write_bytes(data)
        rec = UpdateRecord(member=member, cid=raw_cid(data), sha256=digest, num_samples=100 * (i + 1))
        records.append(rec)
        updates.append({"member": member, "num_samples": rec.num_samples, "sha256": digest, "hex": data.hex(),
                        "meta": meta, "tensors": shifted(i)})
    out = []
    for rule, params in (("fedavg", {}), ("median", {}), ("trimmed_mean", {"beta": 0.25}), ("multikrum", {"f": 1}),
                         ("fedavg", {"max_norm": 1.0})):
        encoded = encode_params(rule, params)
        result = build_aggregate(task=2, rnd=1, parent_sha=parent_sha, rule_id=rule, rule_params=encoded, spec=spec,
                                 updates=records, fetch=lambda u: tmp / u.sha256, out=tmp / f"{rule}.out",
                                 parent=tmp / "parent")
        data = (tmp / f"{rule}.out").read_bytes()
        out.append({"rule": rule, "rule_id_bytes32": rule_to_bytes32(rule).hex(), "rule_params": encoded.decode(),
                    "global_meta": global_meta(2, 1, parent_sha, rule),
                    "excluded": {u.member: why for u, why in result.excluded},
                    "global_sha256": hashlib.sha256(data).hexdigest(), "global_hex": data.hex()})
    return [{"task": 2, "round": 1, "parent_hex": genesis.hex(), "parent_sha256": parent_sha, "updates": updates,
             "results": out}]


def build_vectors(tmp: Path) -> dict:
    secret = sha("a secret")
    tiny_abi = [{"type": "function", "name": "memberCount", "inputs": [], "stateMutability": "view",
                 "outputs": [{"name": "", "type": "uint256", "internalType": "uint256"}]}]
    included, unavailable = bitmap([0, 2, 9], 11), bitmap([4], 11)
    return {
        "about": "Test vectors for docs/protocol.md; hex without 0x, addresses checksummed. Regenerated by "
                 "FEDLEDGER_WRITE_VECTORS=1 pytest tests/test_protocol_vectors.py; checked on every make test.",
        "commitment": {"secret": secret, "member": MEMBERS[1], "commitment": commitment(secret, MEMBERS[1])},
        "coprime_step": [{"r": r, "n": n, "step": coprime_step(r, n)}
                         for r, n in ((0, 1), (5, 2), (0, 6), (4, 6), (123456789, 10), (2**255 + 7, 1024))],
        "election": election_vectors(),
        "inputs_digest": digest_vector(),
        "inclusion": {"participants": 11, "included": [0, 2, 9], "unavailable": [4], "included_hex": included.hex(),
                      "unavailable_hex": unavailable.hex(), "hash": inclusion_hash(included, unavailable)},
        "rule_id": {"rule": "trimmed_mean", "bytes32": rule_to_bytes32("trimmed_mean").hex()},
        "abi_sha256": {"abi": tiny_abi, "sha256": Artifact("X", tiny_abi, "", "", "", "", "").abi_sha256},
        "models": model_vectors(),
        "aggregation": aggregation_vectors(tmp),
    }


def test_protocol_vectors_match_the_implementation(tmp_path):
    fresh = json.loads(json.dumps(build_vectors(tmp_path)))
    if os.environ.get("FEDLEDGER_WRITE_VECTORS"):
        VECTORS.write_text(json.dumps(fresh, indent=1) + "\n")
    stored = json.loads(VECTORS.read_text())
    for key in fresh:
        assert stored.get(key) == fresh[key], f"docs/protocol-vectors.json [{key}] differs from the implementation"
    assert set(stored) == set(fresh)


def test_the_vectors_say_what_the_protocol_text_says():
    """Spot checks a reader can do by hand from docs/protocol.md."""
    v = json.loads(VECTORS.read_text())
    assert v["rule_id"]["bytes32"] == b"trimmed_mean".hex() + "00" * 20
    assert v["inclusion"]["included_hex"] == "0502" and v["inclusion"]["unavailable_hex"] == "1000"
    for e in v["election"]:
        n = len(e["participants"])
        assert e["order"] == [e["participants"][(e["offset"] + i * e["step"]) % n] for i in range(n)]
        assert e["verifiers"]["0"] == e["order"][1:3][: n - 1]
    genesis = bytes.fromhex(v["models"]["genesis"]["hex"])
    header_len = int.from_bytes(genesis[:8], "little")
    header = json.loads(genesis[8:8 + header_len])
    assert header["__metadata__"] == {"format": "fedledger/1", **v["models"]["genesis"]["meta"]}
    assert header_len % 8 == 0 and list(header) == sorted(header)
    agg = v["aggregation"][0]
    assert all(r["excluded"] == {MEMBERS[3]: "wrong_meta"} for r in agg["results"][:4])


@pytest.mark.parametrize("key", ["commitment", "inputs_digest"])
def test_vectors_are_recomputable_from_their_inputs_alone(key):
    """The keccak derivations from the stored inputs, with eth_abi only (what a third party would use)."""
    from eth_abi import encode

    v = json.loads(VECTORS.read_text())
    if key == "commitment":
        c = v["commitment"]
        assert _keccak(encode(["bytes32", "address"], [bytes.fromhex(c["secret"]), c["member"]])).hex() == c["commitment"]
    else:
        d = v["inputs_digest"]
        acc = _keccak(encode(["uint256", "uint256", "bytes32"], [d["task"], d["round"], bytes.fromhex(d["parent"])]))
        for u, expected in zip(d["updates"], d["after_each"]):
            acc = _keccak(encode(["bytes32", "address", "bytes32", "uint64"],
                                 [acc, u["member"], bytes.fromhex(u["sha256"]), u["num_samples"]]))
            assert acc.hex() == expected
