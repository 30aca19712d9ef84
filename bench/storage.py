"""Model storage throughput next to the machine's physical limits, measured in the same run.

For each model size (default 10 MB and 200 MB) this writes a model in the fedledger format and
measures, on two real js-ipfs dev nodes connected over 127.0.0.1 (organisations A and B):

    add            IpfsClient.add_file on node A (streamed from disk)
    fetch local    IpfsClient.cat_to_file from node A (hash-checked, fsynced, renamed)
    fetch remote   IpfsClient.cat_to_file on node B, whose blocks come from A over bitswap
    validate       read_model: sha256 + strict header + spec + finiteness checks

and, as the physical references of the same run, sha256 over the same bytes (hashlib) and a
plain disk write + fsync of the same bytes. Ratios to the disk write say how much of the
machine's limit each step reaches.

    .venv/bin/python bench/storage.py [--sizes-mb 10 200] [--repeat 1] [--out bench/results/storage.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import tempfile
import sys
import time
from pathlib import Path

import numpy as np

from fedledger.node.storage.daemon import IpfsDaemon, connect_all, start_all
from fedledger.node.storage.modelfile import ModelSpec, read_model, write_model_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import stamp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MB = 1_000_000


def make_tensors(size_bytes: int, seed: int) -> dict[str, np.ndarray]:
    """float32 layers shaped like a small CNN/MLP, summing to about `size_bytes`."""
    rng = np.random.default_rng(seed)
    n = size_bytes // 4
    parts = {"features.0.weight": n // 8, "features.1.weight": n // 4, "classifier.0.weight": n // 2}
    parts["classifier.1.weight"] = n - sum(parts.values()) - 1024
    out = {name: rng.random(count, dtype=np.float32).reshape(-1, 256) if count % 256 == 0
           else rng.random(count, dtype=np.float32) for name, count in parts.items()}
    out["classifier.1.bias"] = rng.random(1024, dtype=np.float32)
    return out


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def disk_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        for i in range(0, len(data), 1 << 20):
            f.write(data[i : i + (1 << 20)])
        f.flush()
        os.fsync(f.fileno())


def measure(size_mb: int, work: Path, ca, cb, seed: int) -> dict:
    tensors = make_tensors(size_mb * MB, seed)
    spec = ModelSpec.from_tensors(tensors)
    model = work / f"model-{size_mb}-{seed}.safetensors"
    meta = {"task": "bench", "round": "1", "kind": "update", "parent": "00" * 32, "member": "org-a"}
    t_write, digest = timed(lambda: write_model_file(model, tensors, meta))
    del tensors
    size = model.stat().st_size
    data = model.read_bytes()

    t_sha, _ = timed(lambda: hashlib.sha256(data).hexdigest())
    copy = work / "disk-write.bin"
    t_disk, _ = timed(lambda: disk_write(copy, data))
    copy.unlink()
    t_validate, _ = timed(lambda: read_model(model, digest, spec))
    del data

    t_add, cid = timed(lambda: ca.add_file(model))
    local = work / "fetched-local.safetensors"
    t_local, got = timed(lambda: ca.cat_to_file(cid, local, expected_sha256=digest, max_bytes=spec.max_bytes))
    assert got == digest
    remote = work / "fetched-remote.safetensors"
    t_remote, got = timed(lambda: cb.cat_to_file(cid, remote, expected_sha256=digest, max_bytes=spec.max_bytes,
                                                 timeout=600))
    assert got == digest
    for p in (local, remote, model):
        p.unlink()
    ca.pin_rm(cid)
    ca.repo_gc()
    cb.repo_gc()  # B fetched without pinning: drop its copy so the next run fetches again

    def rate(seconds: float) -> float:
        return size / MB / seconds

    return {
        "size_mb": round(size / MB, 2), "bytes": size, "cid": cid, "sha256": digest,
        "seconds": {"write_model": t_write, "sha256": t_sha, "disk_write": t_disk, "validate": t_validate,
                    "add": t_add, "fetch_local": t_local, "fetch_remote": t_remote},
        "mb_per_s": {"write_model": rate(t_write), "sha256": rate(t_sha), "disk_write": rate(t_disk),
                     "validate": rate(t_validate), "add": rate(t_add), "fetch_local": rate(t_local),
                     "fetch_remote": rate(t_remote)},
    }


def summarize(runs: list[dict]) -> dict:
    keys = runs[0]["mb_per_s"].keys()
    med = {k: statistics.median(r["mb_per_s"][k] for r in runs) for k in keys}
    disk = med["disk_write"]
    return {
        "size_mb": runs[0]["size_mb"],
        "runs": len(runs),
        "median_mb_per_s": med,
        "ratio_to_disk_write": {k: med[k] / disk for k in ("add", "fetch_local", "fetch_remote", "validate", "sha256")},
    }


def print_table(summaries: list[dict]) -> None:
    cols = ["add", "fetch_local", "fetch_remote", "validate", "sha256", "disk_write"]
    print()
    print(f"{'size MB':>8} | " + " | ".join(f"{c:>12}" for c in cols) + "   (MB/s, median)")
    print("-" * (11 + 15 * len(cols)))
    for s in summaries:
        print(f"{s['size_mb']:>8.1f} | " + " | ".join(f"{s['median_mb_per_s'][c]:>12.1f}" for c in cols))
    print()
    print(f"{'size MB':>8} | " + " | ".join(f"{c + '/disk':>17}" for c in ("add", "fetch_local", "fetch_remote")))
    for s in summaries:
        r = s["ratio_to_disk_write"]
        print(f"{s['size_mb']:>8.1f} | " + " | ".join(f"{r[c]:>17.3f}" for c in ("add", "fetch_local", "fetch_remote")))
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 200])
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (median is reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "storage.json")
    ap.add_argument("--work-dir", type=Path, default=None, help="where the IPFS repos and models go (default: a temp dir)")
    args = ap.parse_args(argv)
    measured = stamp()

    with tempfile.TemporaryDirectory(prefix="fedledger-bench-storage-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        a = IpfsDaemon(work / "ipfs-org-a", "org-a")
        b = IpfsDaemon(work / "ipfs-org-b", "org-b")
        try:
            start_all([a, b])
            connect_all([a, b])
            with a.client(timeout=120) as ca, b.client(timeout=120) as cb:
                version = ca.version().get("Version")
                summaries, raw = [], []
                for size_mb in args.sizes_mb:
                    runs = []
                    for i in range(args.repeat):
                        r = measure(size_mb, work, ca, cb, seed=1000 * size_mb + i)
                        runs.append(r)
                        print(f"{size_mb} MB run {i + 1}: " + ", ".join(
                            f"{k} {v:.1f}" for k, v in r["mb_per_s"].items()) + " MB/s", flush=True)
                    raw.extend(runs)
                    summaries.append(summarize(runs))
        finally:
            a.stop()
            b.stop()

    print_table(summaries)
    result = {
        "bench": "storage",
        **measured,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "numpy": np.__version__},
        "ipfs": {"implementation": "js-ipfs (npm ipfs 0.66.1)", "core_version": version,
                 "add_params": "cid-version=1 raw-leaves=true hash=sha2-256 cid-base=base32",
                 "remote": "two daemons on one machine, swarm-connected over 127.0.0.1"},
        "summary": summaries,
        "runs": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
