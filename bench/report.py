#!/usr/bin/env python3
"""Collect bench/results/*.json into one readable page, bench/results/SUMMARY.md, and rewrite every
generated block of the README and docs from the same files.

One SUMMARY.md section per benchmark (round overhead against Flower, scale, gas, failover and
faults, learning, aggregation, storage), each a table of numbers measured in the same run, with
the ratios the benchmark itself computed and when and at which commit it was measured. A
benchmark whose results file is missing is listed as not run, with the command that produces it.
The README and docs show their figures in generated blocks (figures.py, docs_figures.py);
tests/test_build.py fails when any block differs from what bench/results gives.

    .venv/bin/python bench/report.py            # write SUMMARY.md and refresh every block
    .venv/bin/python bench/report.py --check    # exit 1, naming each stale block, and write nothing
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_figures  # noqa: E402
import figures  # noqa: E402
from figures import fmt, load, rows_of, source, table  # noqa: E402

RESULTS = figures.RESULTS
ROOT = RESULTS.parent.parent


# --------------------------------------------------------------------------- sections


def round_overhead(d: dict) -> str:
    s = d["summary"]
    names = {"fedledger": "fedledger: node processes, Anvil, an IPFS node per organisation, 2 verifiers",
             "flower-deployment": "Flower 1.42 deployment: superlink + a supernode per client",
             "flower-simulation": "Flower 1.42 simulation: superlink --simulation (Ray)"}
    f = s.get("fedledger")
    rows = []
    for key in ("fedledger", "flower-deployment", "flower-simulation"):
        if key not in s:
            continue
        x = s[key]
        rel = "1" if key == "fedledger" else (fmt(f["seconds_per_round"] / x["seconds_per_round"], 3) if f else "–")
        rows.append([names[key], fmt(x["seconds_per_round"], 3), fmt(x["seconds_per_round_incl_round1"], 3),
                     fmt(x["first_round_seconds"]), fmt(x["slowest_training_seconds_per_round"], 3),
                     fmt(x["overhead_seconds_per_round"], 3), f"{100 * x['training_share']:.1f}%", rel,
                     fmt(x["final_accuracy"], 4)])
    t = d["task"]
    out = [f"{t['clients']} clients, {t['rounds']} rounds, {t['name']} ({t['model']}), {t['partition']} seed "
           f"{t['seed']}, {t['optimizer']}, 1 local epoch, {t['rule']}. All three systems ran one after the other "
           f"in one invocation on the same {d['machine']['cpus']}-core machine and train with the same code "
           "(fedledger.node.training: workloads, partition, trainer) and the same per-round seeds.", "",
           table(["system", "s/round, steady (rounds 2-R)", "s/round, all rounds", "round 1 (s)",
                  "slowest training (s)", "overhead/round (s)", "training share", "fedledger time / this",
                  "final accuracy"], rows, "lrrrrrrrr")]
    out += figures.repeats_line(d)
    if f and f.get("rounds_with_failover"):
        fd = s.get("flower-deployment")
        fs = s.get("flower-simulation")
        rel = "; ".join(f"{fmt(f['seconds_per_round_single_attempt'] / x['seconds_per_round'], 3)} of {name}"
                        for name, x in (("Flower deployment", fd), ("Flower simulation", fs)) if x)
        out += ["", f"fedledger round(s) {', '.join(map(str, f['rounds_with_failover']))} needed a second attempt: "
                "a verifier's attestation was not taken and the round waited out its verification window before "
                f"the next candidate led (failover, see docs/bench.md). Steady rounds finalized by their first "
                f"leader: {fmt(f['seconds_per_round_single_attempt'], 3)} s per round ({rel}); median of all steady "
                f"rounds {fmt(f['seconds_per_round_median'], 3)} s."]
    if f:
        cp = f["critical_path_seconds_per_round"]
        out += ["", "Where fedledger's steady round goes (means of rounds 2-R, critical path from the members' "
                "own timings):", "",
                table(["steady rounds", "slowest training", "blob transfers (IPFS)", "transactions",
                       "aggregation + recompute", "critical-path work (floor)", "waiting (noticing blocks, scheduling, failover)",
                       "round", "round / floor"],
                      [["all", fmt(cp["train"], 3), fmt(cp["transfers"], 3), fmt(cp["transactions"], 3),
                        fmt(cp["aggregate"], 3), fmt(cp["work"], 3), fmt(f["waiting_seconds_per_round"], 3),
                        fmt(f["seconds_per_round"], 3), fmt(f["round_vs_floor"])]]
                      + ([["finalized by their first leader", "", "", "", "", "",
                           fmt(f["waiting_seconds_per_round_single_attempt"], 3),
                           fmt(f["seconds_per_round_single_attempt"], 3), fmt(f["round_vs_floor_single_attempt"])]]
                         if f.get("rounds_with_failover") else []), "lrrrrrrrr")]
    mem = []
    for key, label in (("fedledger", "fedledger"), ("flower-deployment", "Flower deployment"),
                       ("flower-simulation", "Flower simulation")):
        run = d["runs"].get(key)
        if run and run.get("memory", {}).get("peak_total_pss_mb"):
            m = run["memory"]
            extra = ""
            if key == "fedledger":
                r = m["roles"]
                extra = (f" ({r['node']['count']} node processes at {fmt(r['node'].get('peak_pss_mb_mean'), 0)} MB PSS "
                         f"each, {r['ipfs']['count']} js-ipfs nodes at {fmt(r['ipfs'].get('peak_pss_mb_mean'), 0)} MB)")
            mem.append(f"{label} {fmt(m['peak_total_pss_mb'] / 1024, 1)} GB{extra}")
    if mem:
        out += ["", "Peak memory of all processes of each system (PSS, psutil): " + "; ".join(mem) + "."]
    out += ["", f"Accuracy: fedledger {fmt(d.get('fedledger_final_accuracy'), 4)}, Flower "
            f"{d.get('flower_final_accuracy')}; spread {fmt(d['accuracy_spread'], 4)} "
            f"({'agree' if d['accuracies_agree'] else 'DO NOT agree'} within 0.01). "
            "Steady state excludes round 1, which for fedledger includes starting the node processes and for "
            "Flower simulation starting Ray."]
    for system, why in (d.get("failed") or {}).items():
        out += ["", f"**{system} did not complete:** {why}"]
    return "\n".join(out)


def big_model(d: dict) -> str:
    t = d["task"]
    f = d["summary"].get("fedledger", {})
    fs = d["summary"].get("flower-simulation", {})
    fl = d.get("floor") or {}
    cp = d.get("critical_path_seconds_per_round") or {}
    out = [f"{t['organisations']} organisations, {t['rounds']} rounds, {t['workload']} ({t['model']}: "
           f"{d['parameters']:,} parameters, a {fmt(d['model_bytes'] / 1e6, 1)} MB model file), {t['partition']} "
           f"seed {t['seed']}, {t['optimizer']}, 1 local epoch, {t['rule']}, {t['verifiers']} verifiers. fedledger "
           "and Flower's simulation runtime ran one after the other in one invocation, with the same training "
           "code and seeds.", "",
           table(["system", "s/round, steady (rounds 2-R)", "median", "slowest training (s)", "fedledger time / this",
                  "final accuracy"],
                 [["fedledger", fmt(f.get("seconds_per_round"), 2), fmt(f.get("seconds_per_round_median"), 2),
                   fmt(f.get("slowest_training_seconds_per_round"), 2), "1", fmt(f.get("final_accuracy"), 4)]]
                 + ([["Flower simulation", fmt(fs["seconds_per_round"], 2), fmt(fs["seconds_per_round_median"], 2),
                      fmt(fs["slowest_training_seconds_per_round"], 2), fmt(d.get("ratio_vs_flower_simulation"), 3),
                      fmt(fs["final_accuracy"], 4)]] if fs else []), "lrrrrr")]
    if fl:
        out += ["", f"The physical floor of a steady round is {fmt(fl['seconds_per_round'], 2)} s: the slowest member's "
                f"training ({fmt(fl['training'], 2)} s, ten trainings sharing the cores), the critical path's "
                f"transactions ({fmt(fl['transactions'], 3)} s) and {fmt(fl['bytes'] / 1e6, 0)} MB moved and hashed "
                f"once at this machine's loopback ({d['machine']['loopback_mb_per_s']:,} MB/s) and SHA-256 "
                f"({d['machine']['sha256_mb_per_s']:,} MB/s) bandwidth ({fmt(fl['bytes_seconds'], 2)} s). fedledger's "
                f"round is {fmt(d.get('ratio_vs_floor'), 2)} times that floor; its critical path: training "
                f"{fmt(cp.get('train'), 2)} s, transfers {fmt(cp.get('transfers'), 2)} s, transactions "
                f"{fmt(cp.get('transactions'), 3)} s, aggregation and recomputation {fmt(cp.get('aggregate'), 2)} s, "
                f"waiting {fmt(d.get('waiting_seconds_per_round'), 2)} s."]
    cpu = f.get("cpu_seconds_per_round") or {}
    if cpu:
        out += ["", "CPU seconds per steady round, by kind of process: " + ", ".join(
            f"{role} {fmt(v, 2)}" for role, v in cpu.items() if role != "total") + f" (total {fmt(cpu['total'], 2)})."]
    out += ["", f"Peak memory of one node process: {fmt(d.get('peak_node_rss_mb'), 0)} MB RSS; of one js-ipfs node: "
            f"{fmt(d.get('peak_ipfs_rss_mb'), 0)} MB."]
    for system, why in (d.get("failed") or {}).items():
        out += ["", f"**{system} did not complete:** {why}"]
    return "\n".join(out)


def _single_attempt(row: dict) -> tuple[float | None, int]:
    """(mean seconds of steady rounds finalized by their first leader, rounds with a failover)."""
    rounds = row.get("rounds") or []
    steady = rounds[1:]
    clean = [r["seconds"] for r in steady if r.get("attempts", 1) == 1]
    failovers = sum(1 for r in rounds if r.get("attempts", 1) > 1)
    return (sum(clean) / len(clean) if clean else None), failovers


def scale(d: dict) -> str:
    rows = []
    for r in d["rows"]:
        if r["status"] != "ok":
            rows.append([r["orgs"], r.get("ipfs_nodes", "–"), f"**{r['status']}**"] + ["–"] * 12)
            continue
        cp = r["critical_path_seconds"]
        single, failovers = _single_attempt(r)
        rows.append([r["orgs"], r.get("ipfs_nodes", r["orgs"]), fmt(r["seconds_per_round"]),
                     f"{failovers} of {len(r.get('rounds', []))}",
                     fmt(single), fmt(r["seconds_per_round_incl_round1"]),
                     fmt(r["coordination_overhead_seconds"]), fmt(cp["transfers"]), fmt(cp["transactions"]),
                     fmt(r["waiting_seconds"]), fmt(r["gas_per_round"]),
                     f"{fmt(r['node_peak_rss_mb']['max'], 0)} / {fmt(r.get('node_peak_pss_mb_mean'), 0)}",
                     f"{fmt(r['ipfs_peak_rss_mb']['max'], 0)} / {fmt(r.get('ipfs_peak_pss_mb_mean'), 0)}",
                     fmt(r["peak_total_pss_mb"], 0), fmt(r.get("flower_simulation_seconds_per_round"))])
    out = [f"fedledger on one {d['machine']['cpus']}-core, {d['machine']['memory_gib']} GiB machine: every "
           f"organisation runs its own node process and its own js-ipfs node, except where the IPFS nodes column "
           f"says fewer were shared (one each would not fit in memory); {d['task']['verifiers']} verifiers, "
           f"{d['task']['rounds']} rounds each, steady state = rounds 2-{d['task']['rounds']}.", "",
           table(["organisations", "IPFS nodes", "s/round (steady)", "rounds with failover", "s/round (steady, first leader)",
                  "s/round (all)", "overhead/round (s)", "IPFS transfers (s)",
                  "transactions (s)", "waiting (s)", "gas/round", "node peak MB (RSS max / PSS mean)",
                  "IPFS peak MB (RSS max / PSS mean)", "all processes, peak PSS MB", "Flower sim s/round"], rows)]
    g = d.get("growth") or {}
    labels = {"seconds_per_round": "Seconds per round", "coordination_overhead_seconds": "Coordination overhead",
              "peak_total_pss_mb": "Memory (PSS, all processes)"}
    lines = [f"- {labels[k]}: {fmt(v['slope_per_org'], 3)} more per extra organisation (least squares over "
             f"{v['from']}-{v['to']}), log-log exponent {fmt(v['loglog_exponent'])} (1 = linear, 2 = quadratic)."
             for k, v in g.items() if v]
    pts = [(r["orgs"], _single_attempt(r)[0]) for r in d["rows"] if r["status"] == "ok"]
    pts = [(x, y) for x, y in pts if y]
    if len(pts) > 1 and any(_single_attempt(r)[1] for r in d["rows"] if r["status"] == "ok"):
        mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        lines.append(f"- Seconds per round, rounds finalized by their first leader only: {fmt(slope, 3)} more per extra "
                     f"organisation (least squares over {pts[0][0]}-{pts[-1][0]}).")
    if lines:
        out += ["", "How it grows:", ""] + lines
    for r in d["rows"]:
        if r["status"] != "ok":
            out += ["", f"{r['orgs']} organisations, {r['status']}: {r['reason'].strip()}"]
    return "\n".join(out)


def gas(d: dict) -> str:
    rows = [[r["members"], r["verifiers"], f"{r['submit_avg']:,} / {r['submit_max']:,}", fmt(r["close"]),
             fmt(r["publish"]), fmt(r["attest_max"]), fmt(r["round_total"]), fmt(r["round_total_per_member"])]
            for r in d["rows"]]
    first = max(r["first_rounds_submit_max"] for r in d["rows"])
    checks = ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in d.get("checks", {}).items())
    return "\n".join([
        "Gas of each call in a steady-state round (round 3) on Anvil; a CIDv1 is 59 characters whatever the "
        "model's size, so no call depends on model size.", "",
        table(["members", "verifiers", "submit (avg / max)", "close", "publish", "attest (max)", "round total",
               "per member"], rows),
        "", f"Rounds 1-2 claim fresh storage (submit up to {first:,} gas). A leader timeout that elects the next "
        f"candidate costs {d['timeout_gas']:,} gas. Checks: {checks}."])


def faults(d: dict) -> str:
    out = []
    k = d.get("kill_leader")
    if k:
        out.append(table(["fault", "failover", "after the dead leader's deadline", "attempts", "updates kept"],
                         [["leader SIGKILLed before publishing", f"{fmt(k['failover_seconds'])} s after the kill",
                           f"{fmt(k['finalized_after_deadline_seconds'])} s", " → ".join(k["attempts"]),
                           f"{k['updates_in_round']} of {k['orgs']}"]], "lrrll"))
        out.append(f"\nAggregation window {k['aggregation_window']} s: the failover time is bounded by that window, "
                   "which a consortium sets per task.")
    b = d.get("byzantine")
    if b:
        out.append(f"\nByzantine leader (publishes a wrong aggregate), {b['verifiers']} verifiers: caught and "
                   f"replaced in {b['caught_then_finalized']} of {b['trials']} seeded rounds; final accuracy "
                   f"{fmt(b['final_accuracy'], 4)}.")
    sf = d.get("signflip")
    if sf:
        out.append(f"\nSign-flipping attack, {sf['attackers']} of {sf['orgs']} organisations, {sf['rounds']} rounds, "
                   f"{sf['partition']}:\n")
        out.append(table(["rule", "clean accuracy", "attacked accuracy", "attacked / clean", "attacked / clean FedAvg"],
                         [[r["rule"], fmt(r["clean_accuracy"], 4), fmt(r["attacked_accuracy"], 4),
                           fmt(r["attacked_vs_clean"], 3), fmt(r.get("attacked_vs_clean_fedavg"), 3)]
                          for r in sf["rows"]]))
    return "\n".join(out) if out else "faults.json holds no section yet."


def learning(d: Any) -> str:
    return table(["partition", "method", "rounds", "final accuracy", "centralized", "final / centralized",
                  "first round at 95%"],
                 [[r["partition"], r["method"], r["rounds"], fmt(r["final_accuracy"], 4),
                   fmt(r["centralized_accuracy"], 4), fmt(r["ratio_final_vs_centralized"], 3),
                   fmt(r["first_round_at_95pct"])] for r in rows_of(d)], "llrrrrr")


def aggregation(d: Any) -> str:
    d = rows_of(d)
    sizes = sorted({r["params"] for r in d})
    ns = sorted({r["n"] for r in d})
    big = sizes[-1]
    by = {(r["rule"], r["n"]): r for r in d if r["params"] == big}
    rules = list(dict.fromkeys(r["rule"] for r in d))
    rows = []
    for rule in rules:
        cells = [rule]
        for n in ns:
            r = by.get((rule, n))
            if r is None:
                cells.append("–")
            elif r.get("flower_seconds") is None:
                cells.append(f"{fmt(r['seconds'], 3)} s (Flower has none)")
            else:
                cells.append(f"{fmt(r['seconds'], 3)} s vs {fmt(r['flower_seconds'], 3)} s (×{fmt(r['ratio_vs_flower'], 2)})")
        rows.append(cells)
    fa = [r for r in d if r["rule"] == "fedavg"]
    return "\n".join([
        f"Each rule against Flower's equivalent (flwr.server.strategy.aggregate, same inputs, best of 3) on a "
        f"{big:,}-parameter model: fedledger seconds vs Flower seconds (× = fedledger / Flower, below 1 is faster). "
        f"FedAvg reaches {fmt(min(r['fraction_of_memory_limit'] for r in fa), 2)}-"
        f"{fmt(max(r['fraction_of_memory_limit'] for r in fa), 2)} of the memory-read limit (reading every input once). "
        f"Smaller models ({', '.join(f'{p:,}' for p in sizes[:-1])} parameters) are in aggregation.json.", "",
        table(["rule"] + [f"{n} updates" for n in ns], rows, "l" + "r" * len(ns))])


def storage(d: dict) -> str:
    keys = ["write_model", "sha256", "validate", "add", "fetch_local", "fetch_remote", "disk_write"]
    rows = [[fmt(s["size_mb"], 1)] + [fmt(s["median_mb_per_s"].get(k), 1) for k in keys]
            + [fmt(s["ratio_to_disk_write"].get("fetch_remote"), 3)] for s in d["summary"]]
    ipfs = d.get("ipfs", {})
    return "\n".join([
        f"Model storage on {ipfs.get('implementation', 'the dev IPFS node')}, median MB/s; fetch_remote is "
        f"{ipfs.get('remote', 'a second node')}.", "",
        table(["model MB", "write model", "sha256", "validate", "IPFS add", "fetch (local)", "fetch (remote)",
               "disk write", "remote fetch / disk write"], rows)])


SECTIONS: list[tuple[str, str, str, Callable[[Any], str]]] = [
    ("round_overhead", "Round overhead against Flower", ".venv/bin/python bench/round_overhead.py", round_overhead),
    ("big_model", "A 40 MB model against Flower", ".venv/bin/python bench/big_model.py", big_model),
    ("scale", "Scale: 2 to 50 organisations on one machine", ".venv/bin/python bench/scale.py", scale),
    ("gas", "Gas per round against the number of members", ".venv/bin/python bench/gas.py", gas),
    ("faults", "Failover and attacks", ".venv/bin/python bench/faults.py", faults),
    ("learning", "Learning quality against centralized training", ".venv/bin/python bench/learning.py", learning),
    ("aggregation", "Aggregation rules against Flower's", ".venv-bench/bin/python bench/aggregation.py", aggregation),
    ("storage", "Model storage (IPFS)", ".venv/bin/python bench/storage.py", storage),
]


def parts(name: str, d: Any) -> list[tuple[str, dict]]:
    """The separately measured parts of a results file, for its source line."""
    if name == "faults":
        return [(key, v) for key, v in d.items() if isinstance(v, dict)]
    if name == "learning":
        return [(r["partition"], r) for r in rows_of(d)]
    if name == "scale" and any("measured_at" in r for r in d["rows"]):
        return [(f"{r['orgs']} organisations", r if "measured_at" in r else d) for r in d["rows"]]
    return [("", d if isinstance(d, dict) else {})]


def build(results: Path) -> str:
    parts_ = ["# fedledger benchmarks", "",
              "Generated by `bench/report.py` from `bench/results/*.json` (`make bench` runs every benchmark, then "
              "this). Every ratio compares numbers measured in the same run on the same machine. A quick (`--quick`) "
              "smoke run never writes here."]
    not_run = []
    for name, title, cmd, render in SECTIONS:
        d = load(results, name)
        if d is None:
            not_run.append(f"- {title}: not run yet (`{cmd}` writes `bench/results/{name}.json`)")
            continue
        parts_ += ["", f"## {title}", "", source(name, parts(name, d)), ""]
        try:
            parts_.append(render(d))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            parts_.append(f"(could not render {name}.json: {type(exc).__name__}: {exc})")
    if not_run:
        parts_ += ["", "## Not run yet", ""] + not_run
    return "\n".join(parts_) + "\n"


# --------------------------------------------------------------------------- generated blocks


#: The summary's sections the README embeds in its `summary` block.
README_SECTIONS = ("Round overhead against Flower", "A 40 MB model", "Scale:")

#: Every file with generated blocks, and the blocks it must carry (a block whose markers were
#: deleted would otherwise stop being checked).
FILES: dict[str, tuple[str, ...]] = {
    "README.md": ("demo", "audit-summary", "storage", "aggregation", "faults", "robustness-summary", "learning",
                  "summary", "gas", "privacy"),
    "docs/storage.md": ("storage-detail",),
    "docs/aggregation.md": ("aggregation-table", "aggregation-targets", "robustness"),
    "docs/bench.md": ("round-overhead", "scale"),
    "docs/audit.md": ("audit-example", "audit-time"),
    "docs/governance.md": ("governance-gas",),
    "docs/privacy.md": ("privacy",),
}

MARKER = re.compile(r"<!-- bench:(?P<name>[a-z0-9-]+):begin[^>]*-->.*?<!-- bench:(?P=name):end -->", re.S)


def summary_block(summary: str) -> str:
    """The system-benchmark sections of the summary as the README embeds them, headings one level down."""
    sections: list[list[str]] = []
    for line in summary.splitlines():
        if line.startswith("## "):
            sections.append([])
        if sections:
            sections[-1].append("#" + line if line.startswith("#") else line)
    keep = [sec for sec in sections if sec[0][4:].startswith(README_SECTIONS)]
    body = [ln for sec in keep for ln in sec]
    while body and not body[-1].strip():
        body.pop()
    return "\n".join([*body, "", "All benchmark results, with gas, storage, aggregation, faults and learning: "
                      "[`bench/results/SUMMARY.md`](bench/results/SUMMARY.md); method and findings: "
                      "[`docs/bench.md`](docs/bench.md)."])


def renderers(results: Path) -> dict[str, Callable[[], str]]:
    """Every block's renderer, by name, bound to a results directory."""
    out: dict[str, Callable[[], str]] = {name: (lambda f=f: f(results))
                                         for name, f in {**figures.BLOCKS, **docs_figures.BLOCKS}.items()}
    out["summary"] = lambda: summary_block(build(results))
    return out


def wrap(body: str, width: int = 100) -> str:
    """Prose lines folded at `width` like the hand-written markdown around them; tables as they are."""
    out, fenced = [], False
    for line in body.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.strip() or line.startswith(("|", "<!--", "```", "#")):
            out.append(line)
        else:
            indent = "  " if line.startswith("- ") else ""
            lines: list[str] = []
            # Never fold inside a `code span`: its spaces are held back while wrapping.
            line = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", "\0"), line)
            for piece in textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                                       break_on_hyphens=False):
                # A folded line must not start what markdown reads as a list item or a heading.
                if lines and re.match(r"\s*([-+*]|\d+[.)]|#+)\s", piece):
                    lines[-1] += " " + piece.strip()
                else:
                    lines.append(piece)
            out += [ln.replace("\0", " ") for ln in lines]
    return "\n".join(out)


def block(name: str, body: str) -> str:
    return "\n".join([f"<!-- bench:{name}:begin (generated by bench/report.py from bench/results; edit "
                      "bench/figures.py or the JSON, never this block) -->", "", wrap(body.strip("\n")), "",
                      f"<!-- bench:{name}:end -->"])


def refresh(text: str, results: Path, cache: dict[str, str] | None = None) -> str:
    """`text` with every generated block rendered again from `results`."""
    known = renderers(results)
    cache = {} if cache is None else cache

    def render(m: re.Match) -> str:
        name = m["name"]
        if name not in known:
            raise ValueError(f"unknown generated block {name!r}; known: {', '.join(sorted(known))}")
        if name not in cache:
            cache[name] = block(name, known[name]())
        return cache[name]

    return MARKER.sub(render, text)


def stale(root: Path = ROOT, results: Path = RESULTS, texts: dict[str, str] | None = None) -> list[str]:
    """What differs from bench/results: one line per stale or missing block (empty when all agree).
    `texts` stands in for the files' contents (by relative path) when given."""
    problems, cache = [], {}
    for rel, required in FILES.items():
        text = (texts or {}).get(rel)
        text = (root / rel).read_text() if text is None else text
        present = [m["name"] for m in MARKER.finditer(text)]
        problems += [f"{rel}: no generated `{name}` block" for name in required if name not in present]
        fresh = refresh(text, results, cache)
        current = {m["name"]: m.group(0) for m in MARKER.finditer(text)}
        for m in MARKER.finditer(fresh):
            if current.get(m["name"]) != m.group(0):
                problems.append(f"{rel}: the `{m['name']}` block differs from bench/results")
    summary = results / "SUMMARY.md"
    if not summary.exists() or summary.read_text() != build(results):
        problems.append("bench/results/SUMMARY.md differs from bench/results")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--out", type=Path, default=None, help="where SUMMARY.md goes (default: RESULTS/SUMMARY.md)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every stale block")
    ap.add_argument("--no-docs", action="store_true", help="write SUMMARY.md only")
    args = ap.parse_args()
    if args.check:
        problems = stale(ROOT, args.results)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run `.venv/bin/python bench/report.py` to regenerate them", file=sys.stderr)
        return 1 if problems else 0
    text = build(args.results)
    out = args.out or args.results / "SUMMARY.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    if not args.no_docs:
        cache: dict[str, str] = {}
        for rel in FILES:
            path = ROOT / rel
            old = path.read_text()
            new = refresh(old, args.results, cache)
            if new != old:
                path.write_text(new)
                print(f"refreshed the generated blocks of {rel}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
