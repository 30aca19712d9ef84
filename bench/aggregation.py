"""Aggregation rules against Flower's and against the memory-read limit, measured in one run.

For each model size P and number of updates n, on the same float32 inputs:
  * memory_limit_seconds: best time (see best_of: at least 3 calls, more for fast ones) of a
    float64 sum over the preallocated (n, P) array of all updates (reading n x P float32 once);
    raw_read_seconds is the best time of a float32 max over it, the bare bandwidth, reported
    alongside;
  * seconds / flower_seconds: best time of each fedledger rule and of Flower's equivalent in
    flwr.server.strategy.aggregate (null where Flower has none), same inputs, same parameters;
  * peak_bytes: tracemalloc peak above the inputs during one more call of the fedledger rule
    (numpy reports its buffers to tracemalloc); the output model is included.

Run:  .venv-bench/bin/python bench/aggregation.py          (full: P = 1M, 11.7M; n = 4, 10, 20)
      .venv-bench/bin/python bench/aggregation.py --quick  (small smoke run)
Writes bench/results/aggregation.json (rows) and prints a markdown table.
Needs flwr==1.42.0 (the "bench" extra) and numpy; fedledger itself is imported from this checkout
when it is not installed in the running interpreter.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import platform
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from provenance import stamp  # noqa: E402


def _import_aggregation() -> types.ModuleType:
    try:
        import fedledger.aggregation as agg

        return agg
    except ImportError:
        pass
    # Not installed in this interpreter (e.g. the separate bench venv): load it from the checkout.
    parent = sys.modules.setdefault("fedledger", types.ModuleType("fedledger"))
    parent.__path__ = getattr(parent, "__path__", [])  # type: ignore[attr-defined]
    spec = importlib.util.spec_from_file_location(
        "fedledger.aggregation", REPO / "aggregation" / "__init__.py",
        submodule_search_locations=[str(REPO / "aggregation")],
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fedledger.aggregation"] = module
    spec.loader.exec_module(module)
    return module


agg = _import_aggregation()


# --------------------------------------------------------------------------------------------
# model layouts


def resnet18_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Trainable tensors of torchvision's ResNet-18 (11,689,512 parameters)."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7))]
    shapes += [("bn1.weight", (64,)), ("bn1.bias", (64,))]
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride_in = cin if block == 0 else cout
            shapes.append((f"{p}.conv1.weight", (cout, stride_in, 3, 3)))
            shapes += [(f"{p}.bn1.weight", (cout,)), (f"{p}.bn1.bias", (cout,))]
            shapes.append((f"{p}.conv2.weight", (cout, cout, 3, 3)))
            shapes += [(f"{p}.bn2.weight", (cout,)), (f"{p}.bn2.bias", (cout,))]
            if block == 0 and stride_in != cout:
                shapes.append((f"{p}.downsample.0.weight", (cout, stride_in, 1, 1)))
                shapes += [(f"{p}.downsample.1.weight", (cout,)), (f"{p}.downsample.1.bias", (cout,))]
        cin = cout
    shapes += [("fc.weight", (1000, 512)), ("fc.bias", (1000,))]
    return shapes


def mlp_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """A 784-1000-216-10 MLP (1,003,386 parameters)."""
    return [
        ("fc1.weight", (1000, 784)), ("fc1.bias", (1000,)),
        ("fc2.weight", (216, 1000)), ("fc2.bias", (216,)),
        ("fc3.weight", (10, 216)), ("fc3.bias", (10,)),
    ]


def small_shapes() -> list[tuple[str, tuple[int, ...]]]:
    return [("w1", (200, 400)), ("b1", (200,)), ("w2", (10, 200)), ("b2", (10,))]


LAYOUTS: dict[str, Callable[[], list[tuple[str, tuple[int, ...]]]]] = {
    "1M": mlp_shapes,
    "11.7M": resnet18_shapes,
    "80k": small_shapes,
}


def make_updates(shapes, n: int, seed: int = 0):
    """n updates as views into one (n, P) float32 array: a shared model plus 1% noise each."""
    sizes = [int(np.prod(s)) for _, s in shapes]
    total = sum(sizes)
    rng = np.random.default_rng(seed)
    data = np.empty((n, total), dtype=np.float32)
    base = rng.standard_normal(total, dtype=np.float32)
    for i in range(n):
        rng.standard_normal(total, dtype=np.float32, out=data[i])
        data[i] *= np.float32(0.01)
        data[i] += base
    del base
    updates = []
    for i in range(n):
        model, off = {}, 0
        for (name, shape), size in zip(shapes, sizes):
            model[name] = data[i, off : off + size].reshape(shape)
            off += size
        updates.append(model)
    return data, updates, total, max(sizes)


# --------------------------------------------------------------------------------------------
# timing


def best_of(fn: Callable[[], Any], repeat: int, min_total: float = 1.0, max_repeat: int = 30) -> tuple[float, Any]:
    """Best time of at least `repeat` calls, and of more (up to `max_repeat`) until `min_total`
    seconds were spent: a call of a few milliseconds is timed tens of times, so a scheduler
    hiccup on a shared machine cannot decide a ratio."""
    best, result, spent, done = float("inf"), None, 0.0, 0
    while done < repeat or (spent < min_total and done < max_repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        took = time.perf_counter() - t0
        best, spent, done = min(best, took), spent + took, done + 1
        if best > 20 and repeat > 1:  # a slow call: one more would only cost minutes
            break
    return best, result


def peak_of(fn: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
        del out
    finally:
        tracemalloc.stop()
    return peak


def as_list(model: dict[str, np.ndarray], names: list[str]) -> list[np.ndarray]:
    return [model[k] for k in names]


def max_rel_diff(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    num = sum(float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2)) for a, b in zip(ours, theirs))
    den = sum(float(np.sum(b.astype(np.float64) ** 2)) for b in theirs)
    return (num / den) ** 0.5 if den else 0.0


def robust(updates, weights, hashes, parent, previous):
    """The `robust` preset as a round runs it: the bounds (direction check against the median
    change and the parent's step, norm drop, clip), then FedAvg of what is left."""
    from fedledger.aggregation.registry import aggregate, bound, resolve_rule

    rule, params = resolve_rule("robust")
    b = bound(rule, params, updates, weights, hashes, parent=parent, previous=previous)
    return aggregate(rule, params, b.updates, b.weights, b.hashes)


def flower_functions():
    try:
        from flwr.server.strategy import aggregate as fl
        import flwr
    except ImportError:
        return None, None
    return fl, flwr.__version__


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    fl, fl_version = flower_functions()
    if fl is None:
        print("flwr is not installed: Flower columns will be null (pip install flwr==1.42.0)", flush=True)
    rows: list[dict[str, Any]] = []
    for label in args.params:
        shapes = LAYOUTS[label]()
        names = [name for name, _ in shapes]
        for n in args.n:
            f = max(0, (n - 3) // 4)  # the largest f Bulyan accepts; the same f for the Krum family
            beta = args.beta
            weights = [100 + 37 * i for i in range(n)]  # unequal sample counts
            hashes = [bytes([i]) * 32 for i in range(n)]
            print(f"\n== P={label} n={n} f={f} beta={beta}: generating inputs", flush=True)
            data, updates, total, largest = make_updates(shapes, n)
            results = [(as_list(u, names), w) for u, w in zip(updates, weights)]
            limit, _ = best_of(lambda: float(np.sum(data, dtype=np.float64)), 3)
            raw, _ = best_of(lambda: float(data.max()), 3)
            print(f"   memory-read limit {limit:.4f} s (float64 sum), raw read {raw:.4f} s (float32 max), "
                  f"{data.nbytes / 1e6:.0f} MB", flush=True)
            m = n - f
            parent = {k: (updates[0][k] + updates[1][k]) * np.float32(0.5) for k in names}  # near every update
            previous = {k: v - np.float32(0.001) for k, v in parent.items()}
            cases: list[tuple[str, Callable[[], Any], Callable[[], Any] | None]] = [
                ("fedavg", lambda: agg.fedavg(updates, weights, hashes=hashes),
                 (lambda: fl.aggregate(results)) if fl else None),
                ("median", lambda: agg.coordinate_median(updates, hashes=hashes),
                 (lambda: fl.aggregate_median(results)) if fl else None),
                ("trimmed_mean", lambda: agg.trimmed_mean(updates, beta, hashes=hashes),
                 (lambda: fl.aggregate_trimmed_avg(results, beta)) if fl else None),
                ("geomedian", lambda: agg.geometric_median(updates, weights, hashes=hashes), None),
                ("krum", lambda: agg.krum(updates, f, hashes=hashes),
                 (lambda: fl.aggregate_krum(results, f, 0)) if fl else None),
                ("multikrum", lambda: agg.multi_krum(updates, f, m, weights, weighted=True, hashes=hashes),
                 (lambda: fl.aggregate_krum(results, f, m)) if fl else None),
                ("bulyan", lambda: agg.bulyan(updates, f, hashes=hashes),
                 (lambda: fl.aggregate_bulyan(list(results), f, fl.aggregate_krum, to_keep=0)) if fl else None),
                # No Flower equivalent: compared with fedavg's row of the same inputs.
                ("cclip", lambda: agg.centered_clipping(updates, hashes=hashes), None),
                ("robust", lambda: robust(updates, weights, hashes, parent, previous), None),
            ]
            for rule, ours, theirs in cases:
                if args.rules and rule not in args.rules:
                    continue
                seconds, out = best_of(ours, args.repeat)
                ours_list = as_list(out, names)
                del out
                flower_seconds = diff = None
                if theirs is not None:
                    flower_seconds, ref = best_of(theirs, args.repeat)
                    diff = max_rel_diff(ours_list, ref)
                    del ref
                del ours_list
                peak = peak_of(ours)
                bound = (n + 2) * largest * 4 if rule in ("median", "trimmed_mean") else None
                row = {
                    "rule": rule,
                    "n": n,
                    "params": total,
                    "seconds": round(seconds, 5),
                    "flower_seconds": None if flower_seconds is None else round(flower_seconds, 5),
                    "ratio_vs_flower": None if flower_seconds is None else round(seconds / flower_seconds, 4),
                    "memory_limit_seconds": round(limit, 5),
                    "peak_bytes": peak,
                    "raw_read_seconds": round(raw, 5),
                    "fraction_of_memory_limit": round(limit / seconds, 4),
                    "peak_bound_bytes": bound,
                    "largest_layer": largest,
                    "rel_diff_vs_flower": None if diff is None else float(f"{diff:.3g}"),
                    "f": f if rule in ("krum", "multikrum", "bulyan") else None,
                    "beta": beta if rule == "trimmed_mean" else None,
                }
                fedavg_row = next((r for r in rows if r["rule"] == "fedavg" and r["n"] == n and r["params"] == total), None)
                row["ratio_vs_fedavg"] = round(seconds / fedavg_row["seconds"], 3) if fedavg_row else None
                rows.append(row)
                fs = "-" if flower_seconds is None else f"{flower_seconds:.3f}s"
                rs = "-" if flower_seconds is None else f"{row['ratio_vs_flower']:.3f}"
                print(f"   {rule:13s} {seconds:8.3f}s  flower {fs:>9s}  ratio {rs:>6s}  "
                      f"limit/ours {row['fraction_of_memory_limit']:.2f}  peak {peak / 1e6:7.1f} MB"
                      + (f" (bound {bound / 1e6:.1f} MB)" if bound else "")
                      + ("" if diff is None else f"  |ours-flower|/|flower| {diff:.1e}"), flush=True)
            del data, updates, results
            gc.collect()
    meta = {"numpy": np.__version__, "flwr": fl_version, "python": platform.python_version(),
            "machine": platform.machine(), "cpu": _cpu()}
    print("\n" + json.dumps(meta))
    run.meta = meta  # type: ignore[attr-defined]  # what main() records beside the rows
    return rows


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| rule | n | params | seconds | Flower s | ratio vs Flower | memory-read limit s | "
            "limit / seconds | peak MB | (n+2) x largest layer MB |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        fl = "—" if r["flower_seconds"] is None else f"{r['flower_seconds']:.4g}"
        ratio = "—" if r["ratio_vs_flower"] is None else f"{r['ratio_vs_flower']:.3f}"
        bound = "" if r["peak_bound_bytes"] is None else f"{r['peak_bound_bytes'] / 1e6:.1f}"
        lines.append(
            f"| {r['rule']} | {r['n']} | {r['params']:,} | {r['seconds']:.4g} | {fl} | {ratio} | "
            f"{r['memory_limit_seconds']:.4g} | {r['fraction_of_memory_limit']:.2f} | "
            f"{r['peak_bytes'] / 1e6:.1f} | {bound} |"
        )
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, row by row: what was missed (an empty list when all were met)."""
    missed = []
    for r in rows:
        where = f"{r['rule']} n={r['n']} P={r['params']:,}"
        if r["rule"] == "fedavg" and r["fraction_of_memory_limit"] < 0.5:
            missed.append(f"{where}: {r['fraction_of_memory_limit']:.2f} of the memory-read limit (target >= 0.5)")
        ratio = r["ratio_vs_flower"]
        if ratio is not None:
            goal = 0.5 if r["rule"] in ("median", "trimmed_mean") else 1.0
            if ratio > goal:
                missed.append(f"{where}: {ratio:.3f} x Flower's time (target <= {goal})")
        if r["peak_bound_bytes"] is not None and r["peak_bytes"] > r["peak_bound_bytes"]:
            missed.append(f"{where}: peak {r['peak_bytes'] / 1e6:.1f} MB over (n+2) x largest layer")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (80k params, n = 4, 10)")
    parser.add_argument("--params", nargs="+", choices=sorted(LAYOUTS), default=None)
    parser.add_argument("--n", nargs="+", type=int, default=None)
    parser.add_argument("--rules", nargs="+", default=None)
    parser.add_argument("--beta", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON rows (default bench/results/aggregation.json; --quick prints only)")
    parser.add_argument("--table-from", type=Path, default=None,
                        help="print the table and targets of an earlier run's JSON instead of measuring")
    args = parser.parse_args()
    if args.table_from is not None:
        doc = json.loads(args.table_from.read_text())
        rows = doc["rows"] if isinstance(doc, dict) else doc
        print(markdown(rows))
        print("\n".join(["", "targets missed:"] + targets(rows)) if targets(rows) else "\nall targets met")
        return
    if args.quick:
        args.params = args.params or ["80k"]
        args.n = args.n or [4, 10]
    else:
        args.params = args.params or ["1M", "11.7M"]
        args.n = args.n or [4, 10, 20]
    measured = stamp()
    rows = run(args)
    print("\n" + markdown(rows))
    missed = targets(rows)
    print("\n".join(["", "targets missed:"] + missed) if missed else "\nall targets met")
    out = args.out if args.out is not None else (None if args.quick else REPO / "bench" / "results" / "aggregation.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {**measured, "machine": getattr(run, "meta", {}), "rows": rows}
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
