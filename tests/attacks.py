"""The attacks a member or a small coalition can try, as scenarios on a real chain and real IPFS.

Each scenario sets an attack up, runs it to the end and returns an `Outcome`: whether the attacker
got what it wanted, and the figures that show it. tests/test_attacks.py asserts on them;
bench/attacks.py runs them and writes bench/results/attacks.json.

Peer-level scenarios drive real `Peer` objects (chain client, IPFS client, model format, trainer)
in one process, ticking them in turn on a shared IPFS node with short real-time windows; the
election and collusion scenarios drive the contract directly with each member's own key.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fedledger.aggregation.registry import encode_params
from fedledger.node import defaults
from fedledger.node.errors import ContractRevert
from fedledger.node.peer.adversary import Adversary
from fedledger.node.peer.config import Ipfs, Organisation
from fedledger.node.peer.loop import Peer
from fedledger.node.protocol import (
    Phase,
    TaskConfig,
    derive_seed,
    election_order,
    seed_start,
    xor_secrets,
)
from fedledger.node.storage.ipfs import IpfsClient
from fedledger.node.storage.modelfile import ModelSpec, read_model, write_model_file
from fedledger.node.training.partition import partition
from fedledger.node.training.workloads import get_workload


@dataclass
class Outcome:
    attack: str
    attacker_succeeded: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


def h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# --------------------------------------------------------------------------- peers on a real chain


@dataclass
class Federation:
    ledger: Any
    task: int
    peers: list[Peer]
    members: list[str]  # addresses, peer order
    spec: ModelSpec
    genesis: dict


def federation(ledger, ipfs_api: str, tmp: Path, *, n: int = 5, rounds: int = 1, verifiers: int = 3,
               quorum: int | None = None, min_participants: int | None = None, adversaries: dict | None = None,
               windows: tuple[int, int, int, int] = (8, 20, 20, 8), rule: str = "fedavg") -> Federation:
    """`n` members (dev keys 1..n) on one task, as in-process peers sharing one IPFS node.
    `windows` are (submission, aggregation, verification, reveal) seconds of real time."""
    work = get_workload("digits-mlp")
    ipfs = IpfsClient(ipfs_api)
    # A genesis unique to the scenario: identical models would share CIDs on the shared IPFS node.
    genesis = work.genesis_weights(int(h(str(tmp))[:6], 16))
    spec = ModelSpec.from_tensors(genesis)
    gpath = tmp / "genesis.safetensors"
    gsha = write_model_file(gpath, genesis, {"kind": "genesis", "task": str(ledger.admin.task_count()), "round": "0",
                                             "rule": rule})
    gcid, spec_cid = ipfs.add_file(gpath), ipfs.add_bytes(spec.to_json())
    for i in range(1, n + 1):
        if not ledger.admin.is_member(ledger.accounts[i].address):
            ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")
    sub, agg, ver, rev = windows
    task, _ = ledger.admin.create_task(TaskConfig(
        spec_cid, gcid, gsha, rule, encode_params(rule, {}), min_participants or n, n, sub, agg, ver, verifiers,
        defaults.majority(verifiers) if quorum is None else quorum, rounds, reveal_window=rev))
    X, y, Xt, yt = work.load_data(None)
    parts = partition(y, n, "iid", 0)
    peers = []
    for i in range(n):
        behaviour = (adversaries or {}).get(i)
        trainer = work.trainer((X[parts[i]], y[parts[i]]), (Xt, yt))
        peers.append(Peer(Organisation(name=f"org{i + 1}", work_dir=tmp / f"org{i + 1}", poll_seconds=0.01),
                          ledger.client(i + 1), ipfs, task, trainer, work.default_config,
                          storage=Ipfs(api_url=ipfs_api), member_seed=i, behaviour=behaviour, fetch_timeout=3))
    return Federation(ledger, task, peers, [ledger.accounts[i + 1].address for i in range(n)], spec, genesis)


def run(fed: Federation, timeout: float = 240.0, on_tick: Callable[[Federation], None] | None = None) -> None:
    """Tick every peer in turn until the task completes (real time: deadlines pass as they do).

    A pass that mined a block is followed by another at once. A pass that mined none changed
    nothing the peers can see (they train, fetch and verify inside their ticks), so only the round's
    deadline passing can move the task on: the loop waits for exactly that."""
    give_up = time.time() + timeout
    head = fed.ledger.admin.block_number()
    while time.time() < give_up:
        done = [p.tick() for p in fed.peers]
        if on_tick is not None:
            on_tick(fed)
        if all(done):
            return
        mined = fed.ledger.admin.block_number()
        if mined == head:
            time.sleep(max(0.0, min(_until_deadline(fed), give_up - time.time())))
        head = mined
    raise TimeoutError(f"task {fed.task} did not complete within {timeout:.0f} s")


def _until_deadline(fed: Federation) -> float:
    """Seconds until the current round's deadline has passed in block time (blocks carry wall time)."""
    state = fed.ledger.admin.task_state(fed.task)
    if state.completed:
        return 0.0
    return fed.ledger.admin.round_info(fed.task, state.current_round).deadline + 1 - time.time()


def records(fed: Federation) -> list[dict]:
    out = []
    for p in fed.peers:
        if p.metrics_path.exists():
            out += [json.loads(line) for line in p.metrics_path.read_text().splitlines()]
    return out


def events(fed: Federation, name: str) -> list:
    return fed.ledger.admin.events(names=[name], task=fed.task)


# --------------------------------------------------------------------------- the scenarios


def sample_claim_over_cap(ledger, ipfs_api: str, tmp: Path, claim: int) -> Outcome:
    """A member claims `claim` samples (2^53 or 2^64-1): before, that decided FedAvg or froze the task."""
    fed = federation(ledger, ipfs_api, tmp, n=5, min_participants=4, adversaries={4: Adversary(claim_samples=claim)})
    run(fed)
    attacker = fed.members[4]
    refused = [r for r in records(fed) if r["event"] == "refused" and r["member"] == attacker]
    state = ledger.admin.task_state(fed.task)
    took_part = any(e["member"] == attacker for e in events(fed, "UpdateSubmitted"))
    return Outcome(f"claim {claim} samples", took_part or not state.completed,
                   f"the chain refused the claim ({refused[0]['error'] if refused else 'not refused'}); the round "
                   f"finalized with the other 4 and the task completed",
                   {"claim": claim, "refused": bool(refused), "task_completed": state.completed,
                    "attacker_in_round": took_part})


def largest_claim_share(ledger, ipfs_api: str, tmp: Path) -> Outcome:
    """A member claims the most the task allows: its weight is capped at 3x the round's median claim."""
    fed = federation(ledger, ipfs_api, tmp, n=5, adversaries={4: Adversary(claim_samples=defaults.MAX_SAMPLES)})
    run(fed)
    claims = {e["member"]: e["numSamples"] for e in events(fed, "UpdateSubmitted")}
    med = float(np.median(list(claims.values())))
    capped = {m: min(c, 3 * med) for m, c in claims.items()}
    share = capped[fed.members[4]] / sum(capped.values())
    honest = [c for m, c in claims.items() if m != fed.members[4]]
    bound = 3 * med / (3 * med + len(honest) * min(honest))  # without the cap: all but 100%
    return Outcome("claim the largest allowed sample count", share > bound + 1e-9 or share > 0.5,
                   f"its weight was capped at 3x the median claim: {share:.0%} of the aggregate (bound {bound:.0%})",
                   {"claim": defaults.MAX_SAMPLES, "share": share, "bound": bound,
                    "share_without_cap": defaults.MAX_SAMPLES / (defaults.MAX_SAMPLES + sum(honest))})


def huge_values(ledger, ipfs_api: str, tmp: Path) -> Outcome:
    """A member sends finite values of 3e38: before, FedAvg had no bound on an update's size."""
    fed = federation(ledger, ipfs_api, tmp, n=5, adversaries={4: Adversary(attack="huge")})
    run(fed)
    fin = events(fed, "RoundFinalized")[0]
    path = tmp / "global.safetensors"
    IpfsClient(ipfs_api).cat_to_file(fin["cid"], path, expected_sha256=fin["sha256"])
    tensors, _ = read_model(path, fin["sha256"], fed.spec)
    change = math.sqrt(sum(float(np.sum((tensors[k].astype(np.float64) - fed.genesis[k]) ** 2)) for k in tensors))
    clipped = [r for r in records(fed) if r["event"] == "published" and r.get("clipped")]
    finite = all(np.isfinite(v).all() for v in tensors.values())
    return Outcome("update of 3e38 values", not finite or change > 100.0,
                   f"the update was scaled back onto 10x the round's median change: the global model moved "
                   f"{change:.3g} from its parent", {"global_change_norm": round(change, 4), "finite": finite,
                                                     "clipped_in_publication": bool(clipped)})


def withheld_blob(ledger, ipfs_api: str, tmp: Path, serve_verifiers: bool = False) -> Outcome:
    """A member submits the hash of bytes it never serves (or serves to the verifiers only, once the
    round is elected): before, it could push an honest leader past its window or get it rejected."""
    fed = federation(ledger, ipfs_api, tmp, n=5, adversaries={4: Adversary(withhold=True)})
    attacker = fed.members[4]
    upd = fed.peers[4].work_dir / "updates" / "round1.safetensors"

    def serve(f: Federation) -> None:
        info = f.ledger.admin.round_info(f.task, 1) if f.ledger.admin.task_state(f.task).current_round == 1 else None
        if serve_verifiers and info is not None and info.phase in (Phase.AGGREGATION, Phase.VERIFICATION) and upd.exists():
            for v in f.ledger.admin.verifiers_of(f.task, 1, info.attempt):
                p = f.peers[f.members.index(v)]
                sha = hashlib.sha256(upd.read_bytes()).hexdigest()
                dst = p.work_dir / "updates" / f"r1-{sha}.safetensors"
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(upd, dst)

    run(fed, on_tick=serve)
    failed = events(fed, "AttemptFailed")
    honest_blamed = [e for e in failed if e["leader"] != attacker and e["reason"] in (0, 1)]
    withheld = ledger.admin.withheld_updates(attacker)
    # Elected leader itself, the attacker has its own bytes: then the other leaders declare them.
    led = events(fed, "RoundFinalized")[0]["leader"] == attacker
    return Outcome("withheld blob" + (", served to the verifiers only" if serve_verifiers else ""),
                   bool(honest_blamed) or not ledger.admin.task_state(fed.task).completed,
                   f"leaders declared the update unavailable after half their window; recorded against the member "
                   f"{withheld} time(s); honest leaders blamed: {len(honest_blamed)}",
                   {"withheld_recorded": withheld, "honest_leaders_blamed": len(honest_blamed),
                    "attempts_failed": len(failed), "attacker_led_the_finalized_attempt": led})


def silent_drop(ledger, ipfs_api: str, tmp: Path) -> Outcome:
    """The leader leaves a valid update out of its aggregate without saying so."""
    fed = federation(ledger, ipfs_api, tmp, n=5, adversaries={i: Adversary(drop_update_rounds=[1]) for i in range(5)})
    run(fed)
    failed = events(fed, "AttemptFailed")
    fin = events(fed, "RoundFinalized")[0]
    inc = [e for e in events(fed, "UpdatesIncluded") if e["attempt"] == fin["attempt"] and e["epoch"] == fin["epoch"]]
    included = bin(int(inc[0]["included"], 16)).count("1")
    return Outcome("leader drops an available update", fin["attempt"] == 0 or included < 5,
                   f"the verifiers found the included set short and rejected attempt 0 ({len(failed)} failed); the "
                   f"next leader's aggregate of all {included} updates was finalized",
                   {"rejected_attempts": len(failed), "finalized_attempt": fin["attempt"], "included": included})


def colluding_pair(ledger) -> Outcome:
    """Two colluders under the default settings: one leads and publishes a bogus model, the other
    verifies and agrees. Before, the pair could stop honest submissions and pass a bogus model."""
    n = 5
    for i in range(1, n + 1):
        ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")
    task, _ = ledger.admin.create_task(TaskConfig("bafkspec", "bafkgen", h("genesis"), "fedavg",
                                                  encode_params("fedavg", {}), defaults.VERIFIERS + 1, n, 60, 60, 60,
                                                  defaults.VERIFIERS, defaults.majority(defaults.VERIFIERS), 1))
    colluders = {ledger.accounts[4].address, ledger.accounts[5].address}
    # The pair alone cannot close a round: it needs the leader and every verifier.
    for i in (4, 5):
        ledger.client(i).submit_update(task, 1, h("genesis"), f"bafk{i}", h(f"u{i}"), 100)
    ledger.advance(61)
    try:
        ledger.admin.close_submissions(task, 1)
        closed_alone = True
    except ContractRevert:
        closed_alone = False
    for i in (1, 2, 3):  # the fifth update fills the round and closes it
        ledger.client(i).submit_update(task, 1, h("genesis"), f"bafk{i}", h(f"u{i}"), 100)
    for i in range(1, n + 1):
        ledger.client(i).reveal(task, 1)
    index = {a.address: i for i, a in enumerate(ledger.accounts)}
    outcomes = []
    for attempt in range(n):
        info = ledger.admin.round_info(task, 1)
        if info.phase != Phase.AGGREGATION:
            break
        leader = info.leader
        if leader not in colluders:  # an honest leader that happens to be slow: let it time out
            ledger.advance(61)
            ledger.admin.timeout(task, 1)
            continue
        ledger.client(index[leader]).publish_aggregate(task, 1, info.attempt, "bafkbogus", h("bogus"))
        tx = None
        for v in ledger.admin.verifiers_of(task, 1, info.attempt):
            bogus_ok = v in colluders
            tx = ledger.client(index[v]).attest(task, 1, info.attempt, bogus_ok, h("bogus") if bogus_ok else h("right"))
            if any(e.name in ("RoundFinalized", "AttemptFailed") for e in tx.events):
                break
        outcomes += [e.name for e in tx.events if e.name in ("RoundFinalized", "AttemptFailed")]
        break
    state = ledger.admin.task_state(task)
    passed = state.global_sha256 == h("bogus")
    return Outcome("colluding pair, default settings", passed or closed_alone,
                   f"the pair could not close a round alone; its leader's bogus model got one agreement of the "
                   f"{defaults.VERIFIERS} verifiers' quorum {defaults.majority(defaults.VERIFIERS)}: {outcomes}",
                   {"closed_alone": closed_alone, "bogus_finalized": passed, "outcome": outcomes})


def grinding(ledger, elections: int = 500, tries: int = 64, members: int = 4, seed: int = 7) -> Outcome:
    """The last submitter tries `tries` inputs per election, keeping the one that would make it leader
    (before, the seed was keccak(blockhash, inputsDigest): 27 tries led 6 rounds of 6). Now it sees
    every other secret of the round before it submits and knows its own, so it predicts the seed
    exactly, but no input of its changes it: its update, its sample count and its next commitment
    are not in the seed, and a secret other than the one it committed to is refused (BadReveal).
    Its share of leader seats over `elections` elections, against its fair share."""
    rng = random.Random(seed)
    for i in range(1, members + 1):
        ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")
    task, _ = ledger.admin.create_task(TaskConfig("bafkspec", "bafkgen", h("genesis"), "fedavg",
                                                  encode_params("fedavg", {}), members, members, 3600, 3600, 3600, 0, 0,
                                                  elections))
    for i in range(members + 1):  # receipts come at once on an automining devnet: ask for them often
        ledger.client(i).poll_latency = 0.002
    attacker = ledger.accounts[members]
    attacker_client = ledger.client(members)
    parent = h("genesis")
    led = refused = 0
    predicted_right = 0
    for rnd in range(1, elections + 1):
        for i in range(1, members):
            ledger.client(i).submit_update(task, rnd, parent, "bafk", h(f"{rnd}-{i}"), 100 + i)
        if rnd == 1:  # nobody has a secret to open: commit now, reveal once the window has closed
            attacker_client.submit_update(task, rnd, parent, "bafk", h(f"{rnd}-attack"), 100)
            tx = None
            for i in range(1, members + 1):
                tx = ledger.client(i).reveal(task, rnd)
        else:
            # Everything it can see: the secrets the others opened, its own, the participants.
            others = [e["secret"] for e in ledger.admin.events(names=["UpdateSubmitted"], task=task, round_=rnd)]
            participants = ledger.admin.participants(task, rnd) + [attacker.address]
            own = attacker_client.secrets.opening(task, rnd)
            start = seed_start(task, rnd, parent)
            seeds = set()
            for t in range(tries):  # its update and claim vary; the seed does not
                sha, samples = h(f"{rnd}-attack-{t}"), 100 + t
                seeds.add(derive_seed(xor_secrets([start, *others, own]), task, rnd, 0))
            predicted = election_order(seeds.pop(), participants)[0]
            if predicted != attacker.address:  # its last lever: open another secret
                try:
                    attacker_client.submit_update(task, rnd, parent, "bafk", sha, samples,
                                                  secret=bytes(rng.getrandbits(8) for _ in range(32)))
                except ContractRevert as exc:
                    refused += exc.error == "BadReveal"
            tx = attacker_client.submit_update(task, rnd, parent, "bafk", sha, samples)
            predicted_right += tx.event("LeaderElected")["leader"] == predicted
        leader = tx.event("LeaderElected")["leader"]
        led += leader == attacker.address
        tx = ledger.client([a.address for a in ledger.accounts].index(leader)).publish_aggregate(
            task, rnd, 0, f"bafkg{rnd}", h(f"g{rnd}"))
        parent = h(f"g{rnd}")
    from scipy.stats import binom

    lo, hi = binom.interval(0.99, elections, 1 / members)
    return Outcome(f"grinding last submitter ({tries} inputs per election)", not lo <= led <= hi,
                   f"it led {led} of {elections} elections; its fair share is {elections / members:.0f}, the 99% "
                   f"binomial interval [{lo:.0f}, {hi:.0f}]; it predicted {predicted_right} of {elections - 1} "
                   f"seeds but could not change one ({refused} other secrets refused)",
                   {"elections": elections, "tries": tries, "led": led, "fair": elections / members,
                    "interval_99": [lo, hi], "predicted": predicted_right, "refused_other_secret": refused})
