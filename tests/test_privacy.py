"""Differential privacy (node/training/privacy.py, the trainer's DP-SGD, the registry's DP bound):
the accountant against the library's published value, the promise a task states, the mechanisms,
and what leader and verifiers hold a noised update to. Real torch, real data; no chain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedledger.aggregation.bounds import change_norm, noised_norm_bound
from fedledger.aggregation.registry import bound, decode_params, encode_params
from fedledger.node.errors import InputError
from fedledger.node.training.privacy import Privacy, epsilon, noise_for, privatize_update
from fedledger.node.training.workloads import get_workload


def test_the_accountant_gives_the_libraries_published_epsilon():
    # Opacus's own test of its RDP accountant: sigma 1.5, q 0.04, 90 epochs, delta 1e-5.
    assert epsilon(1.5, 0.04, int(90 / 0.04), 1e-5) == pytest.approx(7.32911117143, abs=1e-7)
    # Calibration is the accountant inverted: the noise it picks keeps the run just within the target.
    z = noise_for(8.0, 0.04, int(90 / 0.04), 1e-5)
    assert 7.9 <= epsilon(z, 0.04, int(90 / 0.04), 1e-5) <= 8.0 and 1.3 < z < 1.5


def test_every_member_spends_the_same_epsilon_and_the_task_knows_how_many_rounds_it_affords():
    example = Privacy(clip=6.0, noise=1.0, delta=1e-5, epsilon=8.0, sample_rate_=0.2)
    assert example.steps_per_round() == 5 and example.sample_rate() == 0.2
    assert example.spent(3) == epsilon(1.0, 0.2, 15, 1e-5)
    n = example.rounds_within(8.0)
    assert example.spent(n) <= 8.0 < example.spent(n + 1)
    example.check(rounds=n)
    with pytest.raises(InputError, match=f"affords {n} rounds"):
        example.check(rounds=n + 1)
    client = Privacy(clip=0.5, noise=3.0, client=True)
    assert client.steps_per_round() == 1 and client.spent(20) == epsilon(3.0, 1.0, 20, 1e-5)
    with pytest.raises(InputError, match="protects nothing"):
        Privacy(clip=1.0, noise=0.0).check()
    assert Privacy().spent(10) == 0.0 and not Privacy().active


def test_the_promise_is_part_of_the_tasks_parameters_on_chain():
    raw = encode_params("fedavg", {"dp_clip": 6.0, "dp_noise": 1.2, "dp_epsilon": 8.0, "dp_sample_rate": 0.25})
    p = Privacy.from_params(decode_params("fedavg", raw))
    assert (p.clip, p.noise, p.epsilon, p.sample_rate(), p.delta, p.client) == (6.0, 1.2, 8.0, 0.25, 1e-5, False)
    with pytest.raises(ValueError, match="dp_sample_rate"):
        encode_params("fedavg", {"dp_sample_rate": 0.0})


PARENT = {"w": np.random.default_rng(0).normal(size=(60, 80)).astype(np.float32),
          "b": np.zeros(80, dtype=np.float32)}


def moved(scale: float, seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {k: (v + r.normal(scale=scale, size=v.shape)).astype(np.float32) for k, v in PARENT.items()}


def test_a_client_level_update_is_clipped_then_noised_with_fresh_randomness():
    far = moved(1.0, 1)
    assert change_norm(far, PARENT) > 50
    clipped, stats = privatize_update(PARENT, far, clip=0.5, noise=0.0)
    assert change_norm(clipped, PARENT) == pytest.approx(0.5, rel=1e-5) and stats["clipped"] == 1.0
    a, _ = privatize_update(PARENT, far, clip=0.5, noise=2.0)
    b, _ = privatize_update(PARENT, far, clip=0.5, noise=2.0)
    assert not np.array_equal(a["w"], b["w"])  # the operating system's randomness: nobody can replay it
    d = PARENT["w"].size + PARENT["b"].size
    # The noise is what was promised: ||noise|| concentrates at sigma sqrt(d).
    assert change_norm(a, PARENT) == pytest.approx(2.0 * 0.5 * math.sqrt(d), rel=0.05)


def test_leader_and_verifiers_exclude_an_update_too_long_for_the_promised_clip_and_noise():
    params = {"dp_clip": 0.5, "dp_noise": 2.0, "dp_client": True}
    honest = [privatize_update(PARENT, moved(0.3, i), clip=0.5, noise=2.0)[0] for i in range(20)]
    cheat = moved(1.5, 99)  # a change far beyond the clip, sent as it is
    dims = PARENT["w"].size + PARENT["b"].size
    limit = noised_norm_bound(0.5, 2.0, dims)
    assert all(change_norm(u, PARENT) <= limit for u in honest) and change_norm(cheat, PARENT) > limit
    ups = honest[:5] + [cheat]
    hashes = [f"{i:064x}" for i in range(6)]
    b = bound("fedavg", params, ups, [10] * 6, hashes, parent=PARENT)
    again = bound("fedavg", params, ups[::-1], [10] * 6, hashes[::-1], parent=PARENT)
    assert b.excluded == [5] and again.excluded == [0]  # the same update, whatever the order
    assert bound("fedavg", {}, ups, [10] * 6, hashes, parent=PARENT).excluded == []  # no promise, no DP bound


def test_dp_sgd_trains_with_noise_nobody_can_replay_and_reports_its_steps():
    work = get_workload("digits-mlp")
    X, y, Xt, yt = work.load_data(None)
    trainer = work.trainer((X[:300], y[:300]), (Xt, yt))
    genesis = work.genesis_weights(0)
    cfg = work.default_config.replace(dp_clip=1.0, dp_noise=1.0, dp_sample_rate=0.1)
    a, b = trainer.fit(genesis, cfg), trainer.fit(genesis, cfg)
    assert a.metrics["dp_steps"] == 10 and 0 < a.metrics["steps"] <= 10
    assert any(not np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)
    plain = trainer.fit(genesis, work.default_config)
    assert all(np.array_equal(plain.weights[k], trainer.fit(genesis, work.default_config).weights[k])
               for k in plain.weights)  # without DP, training stays reproducible
    # The model is plain again afterwards (no per-example hooks left behind): it trains twice in a row.
    assert trainer.evaluate(a.weights).accuracy >= 0.0


def test_a_node_refuses_to_train_once_one_more_update_would_pass_the_budget():
    """What the node checks before training (peer/loop.py), on what the chain says it released."""
    from types import SimpleNamespace

    from fedledger.node.peer.history import released_updates
    from fedledger.node.training.privacy import BudgetSpent

    p = Privacy(clip=1.0, noise=1.0, epsilon=8.0, sample_rate_=0.2)
    afford = p.rounds_within(8.0)
    me = "0x" + "aB" * 20
    events = [{"member": me.lower()}] * (afford - 1) + [{"member": "0x" + "22" * 20}] * 7  # others' don't count
    released = released_updates(SimpleNamespace(events=lambda **_: events), 0, 0, me)
    assert released == afford - 1
    ok = p.next_release(released)
    assert ok["released"] == afford and ok["epsilon"] == pytest.approx(p.spent(afford)) and ok["epsilon"] <= 8.0
    with pytest.raises(BudgetSpent, match=f"after {afford} updates, one more would reach"):
        p.next_release(afford)
    assert Privacy(clip=1.0, noise=1.0).next_release(10_000)["budget"] == 0.0  # no budget: only reported


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_a_client_level_dp_federation_uploads_only_noised_updates_reports_epsilon_and_audits(tmp_path):
    """Three organisations, client-level DP, and buckets of two shuffled by each round's seed: the
    leader, the verifier and the audit all form the same buckets and agree bit for bit. The third
    sends its noised update scaled ten times: too long for the promise, everybody leaves it out."""
    import hashlib
    import json

    from safetensors import safe_open

    from fedledger.node.audit import audit_run
    from fedledger.node.sim import SimOptions, run_sim

    out = tmp_path / "dp"
    params = {"dp_clip": 0.5, "dp_noise": 1.0, "dp_client": True, "dp_epsilon": 40.0, "bucket": 2}
    report = run_sim(SimOptions(orgs=3, rounds=2, seed=1, partition="iid", verifiers=1, rule_params=json.dumps(params),
                                attackers=1, attack="scale:10", out=str(out)), say=lambda _: None)
    promise = Privacy.from_params(params)
    assert [r["attempts"][-1]["outcome"] for r in report["rounds"]] == ["finalized", "finalized"]
    assert [[e["reason"] for e in r["excluded"]] for r in report["rounds"]] == [["norm_exceeded"]] * 2
    assert [r["epsilon"] for r in report["rounds"]] == pytest.approx([promise.spent(1), promise.spent(2)])

    def tensors(path):
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()

    for org in ("org1", "org2"):  # the honest ones (org3's noised update went out scaled)
        node = out / "orgs" / org
        submitted = {json.loads(x)["round"]: json.loads(x) for x in (node / "metrics.jsonl").read_text().splitlines()
                     if json.loads(x)["event"] == "submitted"}
        assert sorted(submitted) == [1, 2]
        assert [submitted[r]["privacy"]["epsilon"] for r in (1, 2)] == pytest.approx([promise.spent(1), promise.spent(2)])
        own = sorted((node / "updates").glob("round*.safetensors"))
        assert [p.name for p in own] == ["round1.safetensors", "round2.safetensors"]  # nothing else of its own
        for rnd, path in ((1, own[0]), (2, own[1])):
            # The file on disk is the one on IPFS and on chain, and it is the noised one: its change
            # is the promised noise (sigma sqrt(d)), far beyond the clip.
            assert hashlib.sha256(path.read_bytes()).hexdigest() == submitted[rnd]["sha256"]
            update, meta = tensors(path)
            parent, _ = tensors(node / "models" / f"{meta['parent']}.safetensors")
            d = sum(v.size for v in parent.values())
            norm = math.sqrt(sum(float(np.sum((update[k].astype(np.float64) - parent[k]) ** 2)) for k in parent))
            assert norm == pytest.approx(1.0 * 0.5 * math.sqrt(d), rel=0.1) and norm > 10 * 0.5
    attested = [json.loads(x) for org in ("org1", "org2", "org3")
                for x in (out / "orgs" / org / "metrics.jsonl").read_text().splitlines() if '"attested"' in x]
    assert len(attested) >= 2 and all(a["agree"] and a["reason"] == "bit-identical" for a in attested)
    result = audit_run(out)
    assert result.ok and all(r.recomputed_sha256 == r.global_sha256 for t in result.tasks for r in t.rounds)
