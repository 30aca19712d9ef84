#!/usr/bin/env python3
"""What the chain and IPFS cost per round: fedledger against Flower, same task, same seed, one run.

Task (issue system-bench): scikit-learn digits, MLP 64-64-10, 10 clients, Dirichlet(0.5) over
classes (seed 0), 20% held out as the global test set, 1 local epoch of SGD (lr 0.05, momentum
0.9, batch 32), FedAvg, 10 rounds. Three systems, run one after the other on this machine:

    fedledger            `fedledger sim`: a node process per organisation, Anvil, one js-ipfs node
                         per organisation, 2 verifiers per round (quorum 2)
    flower-deployment    one flower-superlink + one flower-supernode per client (Flower 1.42)
    flower-simulation    flower-superlink --simulation + flwr run (Flower's Ray simulation runtime)

Both sides train with the same code (fedledger.node.training.workloads/partition/trainer; bench/flower_app
imports it) and the same per-round seeds, so the global models must agree in accuracy.

Per-round times. fedledger: from the previous round's finalization (round 1: from the moment the
node processes were spawned, so it includes their start-up) to this round's finalization, as seen
on chain. Flower: from the end of the previous round (round 1: from the moment the ServerApp
configures it) to the end of this one, federated evaluation included. "steady" means rounds 2..R
(the headline numbers); "all" includes round 1. Coordination overhead = round wall time minus the
slowest member's training time (TorchTrainer.fit, timed inside each member).

Writes bench/results/round_overhead.json and round_overhead.md; run dirs go under --out.

    .venv/bin/python bench/round_overhead.py [--orgs 10] [--rounds 10] [--only fedledger,flower-simulation,flower-deployment]
    .venv/bin/python bench/round_overhead.py --quick      # 3 organisations, 2 rounds: a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import traceback
from collections import defaultdict
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH / "flower_app"))

from launch import run_flower  # noqa: E402

sys.path.insert(0, str(BENCH))
from figures import repeats_line  # noqa: E402
from provenance import commit  # noqa: E402

MB = 1024 * 1024
SYSTEMS = ("fedledger", "flower-simulation", "flower-deployment")
LOAD_AT_START = [round(x, 2) for x in psutil.getloadavg()]


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- memory


def classify(proc: psutil.Process, cmd: list[str]) -> tuple[str, str]:
    """(role, key) of a process we started, directly or not."""
    joined = " ".join(cmd)
    if "fedledger.node.cli" in joined and "--config" in cmd:
        return "node", Path(cmd[cmd.index("--config") + 1]).parent.name
    # js-ipfs renames its process to "ipfs" once started.
    if any(a.endswith("ipfs/src/cli.js") for a in cmd) or (cmd and cmd[0] == "ipfs"):
        try:
            return "ipfs", Path(proc.environ().get("IPFS_PATH", str(proc.pid))).name
        except psutil.Error:
            return "ipfs", str(proc.pid)
    if cmd and Path(cmd[0]).name == "anvil":
        return "chain", "anvil"
    for marker, role in (("flower-superlink", "flower-superlink"), ("flower-supernode", "flower-supernode"),
                         ("flower-superexec", "flower-superexec"), ("flwr-clientapp", "flower-clientapp"),
                         ("flwr-serverapp", "flower-serverapp"), ("flwr-simulation", "flower-simulation"),
                         ("bin/flwr run", "flwr-cli")):
        if marker in joined:
            return role, str(proc.pid)
    if "ray" in joined or proc.name() in ("raylet", "gcs_server"):
        return "ray", proc.name()
    return "other", proc.name()


class MemorySampler(threading.Thread):
    """Peak RSS (psutil) of every process this one started, sampled every ``interval`` seconds.

    RSS counts shared pages (the torch and Node.js libraries) in every process that maps them, so
    a sum of RSS overstates what the processes take together. PSS (proportional set size: shared
    pages divided among the processes sharing them) adds up; it is sampled every ``pss_every``-th
    sample (reading smaps costs more) and is what an extrapolation to more organisations uses.
    """

    def __init__(self, interval: float = 0.5, pss_every: int = 10):
        super().__init__(daemon=True)
        self.interval = interval
        self.pss_every = pss_every
        self._stop_evt = threading.Event()
        self.peak: dict[tuple[str, str, int], int] = {}
        self.peak_pss: dict[tuple[str, str], int] = {}
        self.role_pss_sum_peak: dict[str, int] = defaultdict(int)
        self.peak_pss_total = 0
        self.role_sum_peak: dict[str, int] = defaultdict(int)
        self.peak_total = 0
        self.base_used = psutil.virtual_memory().used
        self.peak_used = self.base_used
        self.samples = 0
        # CPU seconds (user + system) by role: the last reading of every process seen, so processes
        # that have exited still count; `timeline` holds (wall time, {role: cumulative seconds}).
        self._cpu: dict[int, tuple[str, float]] = {}
        self.timeline: list[tuple[float, dict[str, float]]] = []

    def run(self) -> None:
        me = psutil.Process()
        while not self._stop_evt.is_set():
            sums: dict[str, int] = defaultdict(int)
            pss_sums: dict[str, int] = defaultdict(int)
            with_pss = self.samples % self.pss_every == 0
            try:
                children = me.children(recursive=True)
            except psutil.Error:
                children = []
            for p in children:
                try:
                    with p.oneshot():
                        cmd = p.cmdline()
                        rss = p.memory_info().rss
                        role, key = classify(p, cmd)
                    pss = p.memory_full_info().pss if with_pss else 0
                    times = p.cpu_times()
                    self._cpu[p.pid] = (role, times.user + times.system)
                except psutil.Error:
                    continue
                k = (role, key, p.pid)
                if rss > self.peak.get(k, 0):
                    self.peak[k] = rss
                sums[role] += rss
                if with_pss:
                    self.peak_pss[(role, key)] = max(self.peak_pss.get((role, key), 0), pss)
                    pss_sums[role] += pss
            for role, s in sums.items():
                self.role_sum_peak[role] = max(self.role_sum_peak[role], s)
            self.peak_total = max(self.peak_total, sum(sums.values()))
            if with_pss:
                for role, s in pss_sums.items():
                    self.role_pss_sum_peak[role] = max(self.role_pss_sum_peak[role], s)
                self.peak_pss_total = max(self.peak_pss_total, sum(pss_sums.values()))
            self.peak_used = max(self.peak_used, psutil.virtual_memory().used)
            cpu: dict[str, float] = defaultdict(float)
            for role, seconds in self._cpu.values():
                cpu[role] += seconds
            self.timeline.append((time.time(), dict(cpu)))
            self.samples += 1
            self._stop_evt.wait(self.interval)

    def stop(self) -> dict:
        self._stop_evt.set()
        self.join(timeout=10)
        return self.summary()

    def cpu_between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each role spent between two wall times (the nearest samples)."""
        if not self.timeline:
            return {}
        first = min(self.timeline, key=lambda x: abs(x[0] - start))[1]
        last = min(self.timeline, key=lambda x: abs(x[0] - end))[1]
        return {role: round(last.get(role, 0.0) - first.get(role, 0.0), 2) for role in sorted(last)}

    def summary(self) -> dict:
        by_role: dict[str, dict[str, int]] = defaultdict(dict)
        for (role, key, _pid), rss in self.peak.items():
            by_role[role][key] = max(by_role[role].get(key, 0), rss)
        out: dict = {"interval_seconds": self.interval, "samples": self.samples,
                     "peak_total_rss_mb": round(self.peak_total / MB, 1),
                     "peak_total_pss_mb": round(self.peak_pss_total / MB, 1),
                     "peak_system_used_mb": round(self.peak_used / MB, 1),
                     "system_used_before_mb": round(self.base_used / MB, 1), "roles": {}}
        for role, per_key in sorted(by_role.items()):
            vals = list(per_key.values())
            out["roles"][role] = {
                "count": len(vals),
                "peak_rss_mb_max": round(max(vals) / MB, 1),
                "peak_rss_mb_mean": round(statistics.fmean(vals) / MB, 1),
                "peak_rss_mb_sum": round(self.role_sum_peak[role] / MB, 1),
            }
            pss = [v for (r, _k), v in self.peak_pss.items() if r == role]
            if pss:
                out["roles"][role]["peak_pss_mb_mean"] = round(statistics.fmean(pss) / MB, 1)
                out["roles"][role]["peak_pss_mb_sum"] = round(self.role_pss_sum_peak[role] / MB, 1)
            if role in ("node", "ipfs"):
                out["roles"][role]["per_org_mb"] = {k: round(v / MB, 1) for k, v in sorted(per_key.items())}
        return out


# --------------------------------------------------------------------------- fedledger


def _metrics(run_dir: Path) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = defaultdict(list)
    for path in sorted((run_dir / "orgs").glob("*/metrics.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                rows[d["round"]].append(d)
    return rows


def critical_path(events: list[dict]) -> dict[str, float]:
    """The work on a round's critical path, from the members' own timings (metrics.jsonl):
    the slowest member's fetch + train + upload + submit transaction, then the leader's fetch +
    aggregate + upload + publish transaction, then the slower verifier's fetch + recompute +
    attest transaction. Whatever the round took beyond this sum is waiting (noticing each new
    block, reading the round, process scheduling on a busy machine)."""
    subs = [e["seconds"] for e in events if e["event"] == "submitted"]
    pubs = [e["seconds"] for e in events if e["event"] == "published"]
    atts = [e["seconds"] for e in events if e["event"] == "attested"]
    member = max(subs, key=lambda s: s.get("fetch", 0) + s["train"] + s["upload"] + s["chain"]) if subs else {}
    leader = pubs[-1] if pubs else {}
    verifier = max(atts, key=lambda s: s.get("verify", 0) + s.get("chain", 0)) if atts else {}
    train = member.get("train", 0.0)
    transfers = member.get("fetch", 0.0) + member.get("upload", 0.0) + leader.get("fetch", 0.0) + \
        leader.get("upload", 0.0) + verifier.get("fetch", 0.0)
    transactions = member.get("chain", 0.0) + leader.get("chain", 0.0) + verifier.get("chain", 0.0)
    compute = leader.get("aggregate", 0.0) + verifier.get("aggregate", 0.0)
    return {"train": train, "transfers": transfers, "transactions": transactions, "aggregate": compute,
            "work": train + transfers + transactions + compute}


def run_fedledger(orgs: int, rounds: int, out: Path, *, seed: int = 0, verifiers: int = 2,
                  partition: str = "dirichlet:0.5", submission_window: int = 300, aggregation_window: int = 60,
                  verification_window: int = 60, timeout: float = 3600.0, sample_interval: float = 0.5,
                  ipfs_nodes: int | None = None, workload: str = "digits-mlp") -> dict:
    """`fedledger sim` with memory sampling; per-round rows from report.json and metrics.jsonl."""
    from fedledger.node.sim import SimOptions, run_sim

    sampler = MemorySampler(sample_interval)
    sampler.start()
    t0 = time.time()
    try:
        report = run_sim(SimOptions(orgs=orgs, rounds=rounds, workload=workload, partition=partition, rule="fedavg",
                                    verifiers=verifiers,
                                    seed=seed, out=str(out), submission_window=submission_window,
                                    aggregation_window=aggregation_window, verification_window=verification_window,
                                    timeout=timeout, ipfs_nodes=ipfs_nodes),
                         say=lambda line: say(f"fedledger {orgs} orgs: {line}"))
    finally:
        memory = sampler.stop()
    metrics = _metrics(Path(out))
    # Where the CPU of the steady rounds went: from round 1's last attestation to the last round's.
    ends = {r: max((e["time"] for e in evs if e["event"] == "attested"), default=None) for r, evs in metrics.items()}
    steady = [r["round"] for r in report["rounds"]][1:]
    cpu = {}
    if steady and ends.get(steady[0] - 1) and ends.get(steady[-1]):
        spent = sampler.cpu_between(ends[steady[0] - 1], ends[steady[-1]])
        cpu = {role: round(v / len(steady), 3) for role, v in spent.items()}
        cpu["total"] = round(sum(spent.values()) / len(steady), 3)
    rows = []
    for r in report["rounds"]:
        s = r["seconds"]
        cp = critical_path(metrics.get(r["round"], []))
        rows.append({
            "round": r["round"], "seconds": s["total"], "train_max": s["train"],
            "overhead": round(s["total"] - s["train"], 3),
            "critical_path": {k: round(v, 3) for k, v in cp.items()},
            "waiting": round(s["total"] - cp["work"], 3),
            "phases": {k: s[k] for k in ("upload", "chain", "aggregate", "verify")},
            "attempts": len(r["attempts"]), "participants": len(r["participants"]),
            "gas_used": r["gas_used"], "accuracy": r["accuracy"],
        })
    return {"system": "fedledger", "orgs": orgs, "rounds": rows, "final_accuracy": report["final_accuracy"],
            "centralized_accuracy": report["centralized_accuracy"], "wall_seconds": round(time.time() - t0, 2),
            "run_dir": str(out), "memory": memory, "cpu_seconds_per_steady_round": cpu,
            "settings": {"workload": workload, "verifiers": verifiers, "quorum": verifiers, "partition": partition,
                         "seed": seed,
                         "ipfs_nodes": orgs, "node_processes": orgs, "new_blocks": "pushed (eth_subscribe)",
                         "blob_fetches": "from the storer's IPFS gateway, swarm fallback"}}


def run_flower_measured(mode: str, clients: int, rounds: int, out: Path, *, seed: int = 0,
                        partition: str = "dirichlet:0.5", timeout: float = 3600.0, sample_interval: float = 0.5,
                        task: str = "digits-mlp", lr: float | None = None) -> dict:
    sampler = MemorySampler(sample_interval)
    sampler.start()
    try:
        doc = run_flower(mode, clients, rounds, out, seed=seed, partition=partition, timeout=timeout, task=task,
                         lr=lr, say=say)
    finally:
        memory = sampler.stop()
    rows = [{"round": r["round"], "seconds": r["seconds"], "train_max": r["train_max"],
             "overhead": round(r["seconds"] - r["train_max"], 3), "accuracy": r["accuracy"],
             "phases": {"train_phase": r["train_phase_seconds"], "aggregate": r["aggregate_seconds"],
                        "evaluate_phase": r["evaluate_phase_seconds"]}}
            for r in doc["rounds"]]
    return {"system": f"flower-{mode}", "orgs": clients, "rounds": rows, "final_accuracy": doc["final_accuracy"],
            "wall_seconds": doc["wall_seconds"], "run_dir": doc["run_dir"], "memory": memory,
            "settings": {"flwr": "1.42.0", "strategy": "FedAvg (flwr.serverapp.strategy)", "fraction_evaluate": 1.0,
                         "task": task, "partition": partition, "seed": seed,
                         **({"backend": "ray", "client_resources_num_cpus": 2} if mode == "simulation" else
                            {"supernodes": clients, "isolation": "subprocess (a ClientApp process per message)"})}}


# --------------------------------------------------------------------------- summary


def mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def summarize(run: dict) -> dict:
    rows = run["rounds"]
    steady = rows[1:] if len(rows) > 1 else rows
    out = {
        "seconds_per_round": mean([r["seconds"] for r in steady]),
        "seconds_per_round_median": round(statistics.median([r["seconds"] for r in steady]), 3),
        "seconds_per_round_incl_round1": mean([r["seconds"] for r in rows]),
        "first_round_seconds": rows[0]["seconds"],
        "slowest_training_seconds_per_round": mean([r["train_max"] for r in steady]),
        "overhead_seconds_per_round": mean([r["overhead"] for r in steady]),
        "overhead_seconds_per_round_incl_round1": mean([r["overhead"] for r in rows]),
        "training_share": round(sum(r["train_max"] for r in steady) / sum(r["seconds"] for r in steady), 4),
        "final_accuracy": run["final_accuracy"],
    }
    if run["system"] == "fedledger":
        # A round whose first leader or verification failed waits out a window before the next
        # candidate leads: that is failover, not coordination, so it is also reported apart.
        clean = [r for r in steady if r["attempts"] == 1]
        out["rounds_with_failover"] = [r["round"] for r in rows if r["attempts"] > 1]
        out["seconds_per_round_single_attempt"] = mean([r["seconds"] for r in clean])
        out["overhead_seconds_per_round_single_attempt"] = mean([r["overhead"] for r in clean])
        cp = {k: mean([r["critical_path"][k] for r in steady]) for k in steady[0]["critical_path"]}
        out["critical_path_seconds_per_round"] = cp
        out["waiting_seconds_per_round"] = mean([r["waiting"] for r in steady])
        out["waiting_seconds_per_round_single_attempt"] = mean([r["waiting"] for r in clean])
        out["round_vs_floor"] = round(out["seconds_per_round"] / cp["work"], 2) if cp["work"] else None
        cpc = mean([r["critical_path"]["work"] for r in clean])
        out["round_vs_floor_single_attempt"] = (round(out["seconds_per_round_single_attempt"] / cpc, 2)
                                                if cpc else None)
        out["gas_per_round"] = round(statistics.fmean([r["gas_used"] for r in steady]))
        out["cpu_seconds_per_round"] = run.get("cpu_seconds_per_steady_round", {})
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def build(runs: dict[str, dict], args) -> dict:
    s = {k: summarize(v) for k, v in runs.items()}
    f, fd, fs = s.get("fedledger"), s.get("flower-deployment"), s.get("flower-simulation")
    doc: dict = {
        "task": {"name": "digits-mlp", "model": "MLP 64-64-10", "data": "scikit-learn load_digits, 80/20 stratified",
                 "partition": "dirichlet:0.5", "seed": args.seed, "clients": args.orgs, "rounds": args.rounds,
                 "local_epochs": 1, "optimizer": "SGD lr 0.05 momentum 0.9 batch 32", "rule": "FedAvg"},
        "machine": {"cpus": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": sys.version.split()[0],
                    "load_average_at_start": LOAD_AT_START,
                    "load_average_at_end": [round(x, 2) for x in psutil.getloadavg()]},
        "definitions": {
            "seconds_per_round": "mean wall time of rounds 2..R (steady state; round 1 excluded)",
            "seconds_per_round_incl_round1": "mean wall time of rounds 1..R (fedledger's round 1 includes node "
                                             "process start-up; Flower simulation's includes Ray start-up)",
            "coordination_overhead": "round wall time minus the slowest member's training time (TorchTrainer.fit)",
            "ratio_vs_X": "fedledger seconds per round / X seconds per round (below 1: fedledger is faster)",
            "repeats": "with --repeat N: every run's steady seconds per round; the summary and tables are each "
                       "system's median run (by steady seconds per round)",
            "single_attempt": "steady rounds finalized by their first leader (a failed attempt waits out a phase "
                              "window before the next candidate leads: failover, reported apart)",
            "critical_path": "fedledger work on the round's critical path (slowest member fetch+train+upload+submit tx, "
                             "leader fetch+aggregate+upload+publish tx, slower verifier fetch+recompute+attest tx)",
            "waiting": "round wall time minus the critical-path work: noticing each new block, reading the round, "
                       "scheduling",
            "cpu_seconds_per_round": "CPU seconds (user + system) of each kind of process per steady round, from "
                                     "round 1's last attestation to the last round's (psutil, sampled every 0.5 s)",
        },
        "quick": bool(args.quick),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "summary": s,
        "runs": runs,
    }
    if f:
        doc["fedledger_seconds_per_round"] = f["seconds_per_round"]
        doc["fedledger_seconds_per_round_incl_round1"] = f["seconds_per_round_incl_round1"]
        doc["fedledger_first_round_seconds"] = f["first_round_seconds"]
        doc["coordination_overhead_seconds_per_round"] = f["overhead_seconds_per_round"]
        doc["coordination_overhead_seconds_per_round_incl_round1"] = f["overhead_seconds_per_round_incl_round1"]
        doc["fedledger_final_accuracy"] = f["final_accuracy"]
        doc["fedledger_round_vs_floor"] = f["round_vs_floor"]
        doc["fedledger_seconds_per_round_median"] = f["seconds_per_round_median"]
        doc["fedledger_rounds_with_failover"] = f["rounds_with_failover"]
        doc["fedledger_seconds_per_round_single_attempt"] = f["seconds_per_round_single_attempt"]
        doc["coordination_overhead_seconds_per_round_single_attempt"] = f["overhead_seconds_per_round_single_attempt"]
    for key, x in (("flower_deployment", fd), ("flower_simulation", fs)):
        if x:
            doc[f"{key}_seconds_per_round"] = x["seconds_per_round"]
            doc[f"{key}_seconds_per_round_incl_round1"] = x["seconds_per_round_incl_round1"]
            doc[f"{key}_first_round_seconds"] = x["first_round_seconds"]
            doc[f"{key}_final_accuracy"] = x["final_accuracy"]
            doc[f"{key}_seconds_per_round_median"] = x["seconds_per_round_median"]
            if f:
                doc[f"ratio_vs_{key}"] = ratio(f["seconds_per_round"], x["seconds_per_round"])
                doc[f"ratio_vs_{key}_median"] = ratio(f["seconds_per_round_median"], x["seconds_per_round_median"])
                doc[f"ratio_vs_{key}_single_attempt"] = ratio(f["seconds_per_round_single_attempt"],
                                                              x["seconds_per_round"])
                doc[f"ratio_vs_{key}_incl_round1"] = ratio(f["seconds_per_round_incl_round1"],
                                                            x["seconds_per_round_incl_round1"])
    flower_accs = {k: v["final_accuracy"] for k, v in s.items() if k.startswith("flower")}
    if flower_accs:
        vals = list(flower_accs.values())
        doc["flower_final_accuracy"] = vals[0] if len(set(vals)) == 1 else flower_accs
    accs = [v["final_accuracy"] for v in s.values()]
    # "Within noise": one test example of 360 is 0.0028; identical code and seeds should agree to a few.
    doc["accuracy_spread"] = round(max(accs) - min(accs), 4)
    doc["accuracies_agree"] = doc["accuracy_spread"] <= 0.01
    return doc


def markdown(doc: dict) -> str:
    s = doc["summary"]
    names = {"fedledger": "fedledger (chain + IPFS, 2 verifiers)", "flower-deployment": "Flower deployment",
             "flower-simulation": "Flower simulation"}
    lines = ["| system | s/round (steady, rounds 2-R) | s/round (incl. round 1) | round 1 | slowest training | "
             "overhead/round | fedledger / this | final accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    f = s.get("fedledger")
    for key in SYSTEMS:
        if key not in s:
            continue
        x = s[key]
        rel = "1" if key == "fedledger" else (f"{ratio(f['seconds_per_round'], x['seconds_per_round']):.3g}" if f else "–")
        lines.append(f"| {names[key]} | {x['seconds_per_round']:.3f} | {x['seconds_per_round_incl_round1']:.3f} | "
                     f"{x['first_round_seconds']:.2f} | {x['slowest_training_seconds_per_round']:.3f} | "
                     f"{x['overhead_seconds_per_round']:.3f} | {rel} | {x['final_accuracy']:.4f} |")
    lines += repeats_line(doc)
    if f and f["rounds_with_failover"]:
        lines += ["", f"fedledger rounds {f['rounds_with_failover']} needed a second attempt (failover); steady rounds "
                  f"finalized by their first leader took {f['seconds_per_round_single_attempt']:.3f} s on average, "
                  f"median of all steady rounds {f['seconds_per_round_median']:.3f} s."]
    if f:
        cp = f["critical_path_seconds_per_round"]
        lines += ["", f"fedledger's steady round ({f['seconds_per_round']:.2f} s) against its floor: the critical-path "
                  f"work is {cp['work']:.2f} s (slowest training {cp['train']:.3f} s, blob transfers "
                  f"{cp['transfers']:.2f} s, transactions {cp['transactions']:.2f} s, aggregation "
                  f"{cp['aggregate']:.3f} s); the remaining {f['waiting_seconds_per_round']:.2f} s is waiting "
                  f"(noticing each phase change: a pushed new block, then reading the round; scheduling "
                  f"on shared cores). Round / floor = "
                  f"{f['round_vs_floor']}. Gas per round: {f['gas_per_round']:,}."]
    lines += ["", f"Final accuracies agree within {doc['accuracy_spread']:.4f} "
              f"({'within' if doc['accuracies_agree'] else 'OUTSIDE'} the 0.01 tolerance)."]
    return "\n".join(lines) + "\n"


def write_results(name: str, doc: dict, md: str, dest: Path) -> None:
    """Write NAME.json and NAME.md into `dest`: bench/results, or for a smoke (--quick) run the
    run directory, so that a smoke run never replaces measured results."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (dest / f"{name}.md").write_text(md)
    say(f"wrote {dest / (name + '.json')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orgs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 organisations, 2 rounds; results go to the "
                                                         "run directory, not bench/results")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run fedledger and Flower simulation N times each, alternating, and report the run with "
                         "the median steady round of each (Flower deployment runs once); the JSON keeps every run's "
                         "seconds per round under `repeats`")
    ap.add_argument("--out", default="runs/bench-round-overhead")
    ap.add_argument("--rebuild", type=Path, metavar="JSON",
                    help="recompute summary and ratios from the runs recorded in an earlier round_overhead.json "
                         "(no new measurement) and write bench/results/round_overhead.json/.md")
    args = ap.parse_args()
    if args.rebuild:
        old = json.loads(args.rebuild.read_text())
        args.orgs, args.rounds, args.seed = old["task"]["clients"], old["task"]["rounds"], old["task"]["seed"]
        args.quick = old.get("quick", False)
        doc = build(old["runs"], args)
        doc["failed"] = old.get("failed", {})
        doc["measured_at"] = old["measured_at"]
        doc["commit"] = old.get("commit", "unknown")
        md = markdown(doc)
        print(md)
        (RESULTS / "round_overhead.json").write_text(json.dumps(doc, indent=2) + "\n")
        (RESULTS / "round_overhead.md").write_text(md)
        return 0
    if args.quick:
        args.orgs, args.rounds = 3, 2
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SYSTEMS)
    if unknown:
        ap.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    base = Path(args.out).resolve() / time.strftime("%Y%m%d-%H%M%S")
    every: dict[str, list[dict]] = defaultdict(list)
    failed: dict[str, str] = {}
    for rep in range(args.repeat):
        for system in SYSTEMS:
            if system not in only or (rep and system == "flower-deployment") or system in failed:
                continue
            out = base / (system if args.repeat == 1 else f"{system}-{rep + 1}")
            say(f"== {system}{f' (run {rep + 1} of {args.repeat})' if args.repeat > 1 else ''}: {args.orgs} clients, "
                f"{args.rounds} rounds -> {out}")
            try:
                if system == "fedledger":
                    every[system].append(run_fedledger(args.orgs, args.rounds, out, seed=args.seed))
                else:
                    every[system].append(run_flower_measured(system.split("-")[1], args.orgs, args.rounds, out,
                                                             seed=args.seed))
            except Exception as exc:  # record it, and still measure the other systems
                traceback.print_exc(file=sys.stderr)
                failed[system] = f"{type(exc).__name__}: {exc}"[:600]
                say(f"{system} failed: {exc}")
                continue
            x = summarize(every[system][-1])
            say(f"{system}: {x['seconds_per_round']} s/round steady, {x['seconds_per_round_incl_round1']} s/round "
                f"incl. round 1, final accuracy {x['final_accuracy']}")
    # Each system's run with the median steady round stands for it (the tables' every number).
    runs = {system: sorted(rs, key=lambda r: summarize(r)["seconds_per_round"])[(len(rs) - 1) // 2]
            for system, rs in every.items() if rs and system not in failed}
    if not runs:
        say("no system completed; nothing written")
        return 2
    doc = build(runs, args)
    doc["failed"] = failed
    doc["repeats"] = {system: [summarize(r)["seconds_per_round"] for r in rs] for system, rs in every.items()}
    if len(doc["repeats"].get("fedledger", [])) > 1 and len(doc["repeats"].get("flower-simulation", [])) > 1:
        f_runs, s_runs = doc["repeats"]["fedledger"], doc["repeats"]["flower-simulation"]
        doc["ratio_vs_flower_simulation_each_run"] = [ratio(a, b) for a, b in zip(f_runs, s_runs)]
    md = markdown(doc)
    print(md)
    write_results("round_overhead", doc, md, base if args.quick else RESULTS)
    return 0 if doc["accuracies_agree"] and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
