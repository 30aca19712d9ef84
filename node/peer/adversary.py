"""Adversarial behaviour for fault and attack experiments: poisoned updates, hostile update files,
cheating and stalling leaders. A node behaves like this only when its config has an `[adversary]`
section (`fedledger sim --attackers ... --byzantine-leader-at ...` writes one): `peer/build.py`
then injects an `Adversary` as the peer's `Behaviour`; the peer's own code has no attack in it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import pickle
import struct
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import InputError
from ..storage.modelfile import read_model, sha256_bytes, write_model, write_model_file
from .behaviour import Behaviour

log = logging.getLogger("fedledger.node")

WEIGHT_ATTACKS = ("signflip", "scale", "noise", "labelflip", "huge", "alie", "ipm")
COLLUDING_ATTACKS = ("alie", "ipm")  # the attackers pool their honest updates (collude_dir)
COLLUDE_WAIT = 30.0  # seconds a colluder waits for the others' honest updates of the round

# Each kind of hostile update a member can submit; every honest leader and verifier must exclude
# it by the same rule (the reason code in brackets is what they record).
MALFORMED_KINDS = {
    "random_bytes": "bad_header",
    "truncated": "truncated",
    "lying_header": "bad_header",
    "wrong_names": "wrong_names",
    "wrong_shape": "wrong_shape",
    "wrong_dtype": "wrong_dtype",
    "nan": "non_finite",
    "inf": "non_finite",
    "oversized": "too_large",
    "pickle": "bad_header",
    "wrong_parent": "wrong_meta",
    "wrong_member": "wrong_meta",
    "hash_mismatch": "hash_mismatch",
}


@dataclass
class Adversary(Behaviour):
    """What a misbehaving member does. With no field set it behaves honestly."""

    attack: str | None = None  # signflip | scale:X | noise:SIGMA | labelflip | alie | ipm:EPS
    malformed: str | None = None  # a key of MALFORMED_KINDS, or "cycle" (a different kind each round)
    byzantine_leader_rounds: list[int] = field(default_factory=list)  # publish a wrong aggregate (attempt 0)
    hold_before_publish_rounds: list[int] = field(default_factory=list)  # elected at attempt 0: stall (to be killed)
    hold_before_attest_rounds: list[int] = field(default_factory=list)  # verifier of attempt 0: stall (to be killed)
    byzantine_shift: float = 0.05  # what a byzantine leader adds to every weight
    claim_samples: int | None = None  # claim this many samples, whatever it trained on
    withhold: bool = False  # submit the hash of an update whose bytes nobody can fetch
    always_agree: bool = False  # as a verifier, agree with whatever the leader published
    drop_update_rounds: list[int] = field(default_factory=list)  # as leader (attempt 0), leave out one valid update silently
    collude_dir: str | None = None  # alie, ipm: where the colluders pool their honest updates
    colluders: int = 0  # alie, ipm: how many pool them
    participants: int = 0  # alie: the organisations of the round (its z depends on them)
    seed: int = 0  # the member's seed: noise attacks draw from it

    @classmethod
    def from_dict(cls, d: Mapping) -> "Adversary":
        adv = cls(**dict(d))
        if adv.attack and adv.attack.split(":")[0] not in WEIGHT_ATTACKS:
            raise InputError(f"unknown attack {adv.attack!r}; use signflip, scale:X, noise:SIGMA, labelflip, huge, "
                             "alie or ipm:EPS")
        if adv.attack and adv.attack.split(":")[0] in COLLUDING_ATTACKS:
            if not adv.collude_dir or adv.colluders < 1 or (adv.attack == "alie" and adv.participants <= adv.colluders):
                raise InputError(f"{adv.attack} needs collude_dir, colluders >= 1 and (alie) participants > colluders")
        if adv.malformed and adv.malformed != "cycle" and adv.malformed not in MALFORMED_KINDS:
            raise InputError(f"unknown malformed kind {adv.malformed!r}; use one of {', '.join(MALFORMED_KINDS)} or cycle")
        return adv

    @property
    def name(self) -> str:  # type: ignore[override]
        return "adversary" if self.active else "honest"

    @property
    def active(self) -> bool:
        return bool(self.attack or self.malformed or self.byzantine_leader_rounds or self.hold_before_publish_rounds
                    or self.hold_before_attest_rounds
                    or self.claim_samples or self.withhold or self.always_agree or self.drop_update_rounds)

    def malformed_kind(self, rnd: int) -> str | None:
        if self.malformed == "cycle":
            kinds = list(MALFORMED_KINDS)
            return kinds[(rnd - 1) % len(kinds)]
        return self.malformed

    def poison(self, parent: Mapping[str, np.ndarray], local: Mapping[str, np.ndarray], seed: int,
               rnd: int = 0) -> dict[str, np.ndarray]:
        """The update a weight attacker sends instead of its honest `local` model."""
        if not self.attack or self.attack == "labelflip":
            return dict(local)
        kind, _, arg = self.attack.partition(":")
        if kind in COLLUDING_ATTACKS:
            pooled = self.pool(local, rnd)
            if kind == "alie":
                return alie_update(parent, pooled, alie_z(self.participants, self.colluders))
            return ipm_update(parent, pooled, float(arg or 0.1))
        rng = np.random.default_rng(seed)
        out = {}
        for name, w in local.items():
            p = np.asarray(parent[name], dtype=np.float64)
            delta = np.asarray(w, dtype=np.float64) - p
            if kind == "signflip":  # push the model the opposite way, amplified (Fang et al. 2020 style)
                v = p - 4.0 * delta
            elif kind == "huge":  # finite, but as large as float32 goes: blows up any unbounded average
                v = np.full(w.shape, 3e38)
            elif kind == "scale":
                v = p + float(arg or 10.0) * delta
            else:  # noise
                v = np.asarray(w, dtype=np.float64) + rng.normal(0.0, float(arg or 1.0), size=w.shape)
            out[name] = v.astype(w.dtype)
        return out


    # -- the Behaviour hooks

    def training_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        return flip_labels(y, num_classes) if self.attack == "labelflip" else y

    def write_update(self, path, parent, weights, meta, rnd: int, max_bytes: int) -> str:
        if self.attack:
            weights = self.poison(parent, weights, seed=self.seed * 7919 + rnd, rnd=rnd)
        kind = self.malformed_kind(rnd)
        if not kind:
            return write_model_file(path, weights, meta)
        log.warning("round %d: ADVERSARY submits a malformed update (%s)", rnd, kind)
        if kind == "hash_mismatch":
            write_model_file(path, weights, meta)
            return sha256_bytes(b"not these bytes")
        data = malformed_update(kind, weights, meta, max_bytes)
        path.write_bytes(data)
        return sha256_bytes(data)

    def pool(self, honest: Mapping[str, np.ndarray], rnd: int) -> list[dict[str, np.ndarray]]:
        """Share this colluder's honest model of round `rnd` and collect the others' (safetensors
        files in collude_dir; never pickled): waits until every colluder has written, at most
        COLLUDE_WAIT seconds, then uses whatever is there."""
        from pathlib import Path

        from safetensors.numpy import load_file, save_file

        d = Path(self.collude_dir) / f"round{rnd}"
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".member{self.seed}.tmp"
        save_file({k: np.ascontiguousarray(v) for k, v in honest.items()}, str(tmp))
        tmp.rename(d / f"member{self.seed}.safetensors")
        deadline, pause = time.monotonic() + COLLUDE_WAIT, 0.01
        while len(list(d.glob("member*.safetensors"))) < self.colluders and time.monotonic() < deadline:
            time.sleep(pause)  # other processes' files: nothing to wait on but the directory
            pause = min(pause * 2, 0.2)
        return [load_file(str(f)) for f in sorted(d.glob("member*.safetensors"))]

    def claimed_samples(self, num_samples: int) -> int:
        return self.claim_samples if self.claim_samples else num_samples

    def withholds(self, rnd: int) -> bool:
        return self.withhold

    def verdict(self, agree: bool) -> bool:
        return True if self.always_agree else agree

    def included(self, result, rnd: int, attempt: int) -> list[str]:
        members = [u.member for u in result.included]
        if rnd in self.drop_update_rounds and attempt == 0 and len(members) > 1:
            log.warning("round %d: ADVERSARY leader leaves out the update of %s without a word", rnd, members[-1])
            return members[:-1]
        return members

    def publishes(self, rnd: int, attempt: int, deadline: float) -> bool:
        if rnd in self.hold_before_publish_rounds and attempt == 0:
            log.warning("round %d: elected leader, stalling before publishing (fault injection)", rnd)
            time.sleep(max(0.0, deadline - time.time()) + 5)
            return False
        return True

    def attests(self, rnd: int, attempt: int, deadline: float) -> bool:
        if rnd in self.hold_before_attest_rounds and attempt == 0:
            log.warning("round %d: verifier, stalling before attesting (fault injection)", rnd)
            time.sleep(max(0.0, deadline - time.time()) + 5)
            return False
        return True

    def tamper(self, result, rnd: int, attempt: int, spec) -> None:
        if rnd in self.byzantine_leader_rounds and attempt == 0:
            tensors, meta = read_model(result.path, result.sha256, spec)
            shift = self.byzantine_shift
            cheat = {k: (np.asarray(v) + np.asarray(shift, dtype=v.dtype)).astype(v.dtype) for k, v in tensors.items()}
            result.sha256 = write_model_file(result.path, cheat, meta)
            log.warning("round %d: ADVERSARY leader publishes a wrong aggregate", rnd)


def flip_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Label flipping (Biggio et al.; Tolpegin et al. 2020): class c becomes C - 1 - c."""
    return (num_classes - 1 - np.asarray(y)).astype(np.asarray(y).dtype)


def malformed_update(kind: str, tensors: Mapping[str, np.ndarray], meta: Mapping[str, str], max_bytes: int) -> bytes:
    """Hostile bytes of the given kind, built from an honest update (tensors + metadata)."""
    good = write_model(tensors, meta)
    if kind == "random_bytes":
        return os.urandom(len(good))
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "lying_header":
        (hlen,) = struct.unpack("<Q", good[:8])
        header = json.loads(good[8:8 + hlen])
        name = sorted(k for k in header if k != "__metadata__")[0]
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start, end + 4096]  # claims bytes that are not there
        body = json.dumps(header, separators=(",", ":")).encode()
        body += b" " * (-len(body) % 8)
        return struct.pack("<Q", len(body)) + body + good[8 + hlen:]
    if kind == "wrong_names":
        renamed = {("evil_" + k): v for k, v in tensors.items()}
        return write_model(renamed, meta)
    if kind == "wrong_shape":
        name = sorted(tensors)[0]
        changed = dict(tensors)
        changed[name] = np.zeros(tuple(d + 1 for d in tensors[name].shape), dtype=tensors[name].dtype)
        return write_model(changed, meta)
    if kind == "wrong_dtype":
        return write_model({k: np.asarray(v, dtype=np.float16) for k, v in tensors.items()}, meta)
    if kind in ("nan", "inf"):
        name = sorted(tensors)[0]
        changed = {k: np.array(v, copy=True) for k, v in tensors.items()}
        changed[name].reshape(-1)[0] = np.nan if kind == "nan" else np.inf
        return write_model(changed, meta)
    if kind == "oversized":
        return good + b"\0" * (max_bytes + 1 - len(good))
    if kind == "pickle":
        return pickle.dumps({k: np.asarray(v) for k, v in tensors.items()})  # never unpickled by anyone
    if kind == "wrong_parent":
        return write_model(tensors, {**meta, "parent": "00" * 32})
    if kind == "wrong_member":
        return write_model(tensors, {**meta, "member": "0x" + "11" * 20})
    raise ValueError(f"no payload for malformed kind {kind!r}")


# --------------------------------------------------------------------------- colluding attacks
# Both attacks of the literature against robust rules assume colluders who pool what they would
# honestly have sent. They are pure functions of the parent and the colluders' honest models, so
# the robustness bench and a node use the same arithmetic.


def alie_z(n: int, f: int) -> float:
    """Baruch, Baruch, Goldberg 2019 ("A Little Is Enough"): the number of standard deviations that
    stays inside the honest spread for n participants of which f collude:
    s = floor(n / 2 + 1) - f supporters needed, z = Phi^-1((n - s) / n)."""
    from statistics import NormalDist

    if not 0 < f < n:
        raise InputError(f"ALIE needs 0 < colluders < participants, got {f} of {n}")
    s = n // 2 + 1 - f
    return NormalDist().inv_cdf((n - s) / n)


def _deltas(parent: Mapping[str, np.ndarray], honest: list[Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    p = np.asarray(parent[name], dtype=np.float64)
    return np.stack([np.asarray(h[name], dtype=np.float64) - p for h in honest])


def alie_update(parent: Mapping[str, np.ndarray], honest: list[Mapping[str, np.ndarray]], z: float) -> dict[str, np.ndarray]:
    """What every ALIE colluder submits: parent + mean - z * std of the colluders' honest changes,
    coordinate by coordinate (population std, as in the paper)."""
    out = {}
    for name, w in parent.items():
        d = _deltas(parent, honest, name)
        out[name] = (np.asarray(w, dtype=np.float64) + d.mean(axis=0) - z * d.std(axis=0)).astype(np.asarray(w).dtype)
    return out


def ipm_update(parent: Mapping[str, np.ndarray], honest: list[Mapping[str, np.ndarray]], eps: float) -> dict[str, np.ndarray]:
    """Xie, Koyejo, Gupta 2019 (inner-product manipulation): parent - eps * the mean of the
    colluders' honest changes, so the aggregate's inner product with the true direction turns
    negative; eps = 0.1 in the paper's attack on median and Krum."""
    out = {}
    for name, w in parent.items():
        d = _deltas(parent, honest, name)
        out[name] = (np.asarray(w, dtype=np.float64) - eps * d.mean(axis=0)).astype(np.asarray(w).dtype)
    return out
