"""The audit's result for people: the per-round table and the verdict (`print_report`), one model's
ancestry (`ancestry`, `print_ancestry`), and the export of lineage.json and a self-contained
lineage.html (`export`, drawn by html.py)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .html import render
from .model import AuditResult, RoundAudit


def ancestry(result: AuditResult, subject: dict) -> dict:
    """Which organisations, with how many samples, in which rounds, contributed to a model."""
    t = result.task(subject["task"])
    last = subject["round"] if subject["kind"] == "global" else subject["round"] - 1
    if subject["kind"] == "genesis":
        last = 0
    chain_rounds = [r for r in t.rounds if r.finalized and r.round <= last]
    rounds = []
    per_org: dict[str, dict] = {}
    for r in chain_rounds:
        contributors = [{"member": u.member, "name": u.name, "num_samples": u.num_samples, "sha256": u.sha256,
                         "cid": u.cid} for u in sorted(r.contributors, key=lambda u: u.name)]
        for c in contributors:
            o = per_org.setdefault(c["member"], {"member": c["member"], "name": c["name"], "rounds": [], "samples": 0})
            o["rounds"].append(r.round)
            o["samples"] += c["num_samples"]
        rounds.append({"round": r.round, "global_sha256": r.global_sha256, "global_cid": r.global_cid,
                       "parent_sha256": r.parent_sha256, "leader": r.leader, "leader_name": r.leader_name,
                       "status": r.status, "contributors": contributors,
                       "excluded": [{"name": u.name, "reason": u.reason, "status": u.status}
                                    for u in r.updates if u.status in ("excluded", "unavailable")]})
    out = dict(subject)
    out.update(genesis_sha256=t.genesis_sha256, genesis_cid=t.genesis_cid, genesis_status=t.genesis_status,
               rounds=rounds, organisations=sorted(per_org.values(), key=lambda o: o["name"]),
               verified=result.ok)
    if subject["kind"] == "update":
        r = t.round(subject["round"])
        u = next(u for u in r.updates if u.sha256 == subject["sha256"])
        out.update(num_samples=u.num_samples, status=u.status, reason=u.reason,
                   included_in=r.global_sha256 if u.status == "included" else None)
    return out


def export(result: AuditResult, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `lineage.json` and a self-contained `lineage.html` (no network) into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    json_path = out / "lineage.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    html_path = out / "lineage.html"
    html_path.write_text(render(data))
    return json_path, html_path


def _short(sha: str | None, n: int = 12) -> str:
    return sha[:n] if sha else "-"


def _contributors(r: RoundAudit, names: Callable[[str], str]) -> str:
    inc = r.contributors
    samples = sum(u.num_samples for u in inc)
    listed = " ".join(sorted(u.name for u in inc)) if len(inc) <= 5 else f"{len(inc)} members"
    text = f"{listed} ({samples:,} samples)" if inc else "-"
    others = [u for u in r.updates if u.status in ("excluded", "unavailable")]
    if others:
        text += " + " + ", ".join(f"{u.name} {u.status if u.status == 'unavailable' else u.reason}" for u in others)
    if not r.finalized:
        text = f"{len(r.updates)} submitted"
    return text


def _attempts(r: RoundAudit) -> str:
    failed = [f"{a.leader_name} {a.outcome.replace('_', ' ')}" for a in r.attempts if a.outcome not in ("finalized", "pending")]
    n = len(r.attempts)
    return f"{n}" + (f" ({', '.join(failed)})" if failed else "")


def print_report(result: AuditResult, console=None) -> None:
    """The per-round table, the verdict and the audit time."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 170, highlight=False)
    multi = len(result.tasks) > 1
    table = Table(title_justify="left", title="lineage audit")
    for col in (["task"] if multi else []) + ["round", "leader", "attempts", "contributors", "global model", "verified"]:
        table.add_column(col, overflow="fold")
    for t in result.tasks:
        status = "[green]✓ sha256 matches the chain[/green]" if t.genesis_status == "verified" else (
            "[red]✗ " + escape("; ".join(f.message for f in t.failures if f.kind != "completion")[:160]) + "[/red]"
            if any(f.kind != "completion" for f in t.failures) else "not checked")
        table.add_row(*([str(t.task)] if multi else []), "genesis", "-", "-", f"rule {t.rule_id}",
                      _short(t.genesis_sha256), status)
        for r in t.rounds:
            if r.status == "verified":
                verdict = f"[green]✓ {escape(r.match)}[/green]"
            elif r.status == "open":
                verdict = "[yellow]open (in progress)[/yellow]"
            elif r.status == "failed":
                f = r.failures[0]
                more = f" (+{len(r.failures) - 1} more)" if len(r.failures) > 1 else ""
                verdict = f"[red]✗ {escape(f'{f.kind}: {f.subject}: {f.message}')}{more}[/red]"
            else:
                verdict = "not checked"
            table.add_row(*([str(t.task)] if multi else []), str(r.round), escape(r.leader_name or "-"),
                          escape(_attempts(r)), escape(_contributors(r, result.name)), _short(r.global_sha256), verdict)
    console.print(table)
    for r in result.rounds:
        for note in r.notes:
            console.print(f"[dim]note: task {r.task} round {r.round}: {escape(note)}[/dim]", soft_wrap=True)
    if result.model:
        print_ancestry(result.model, console)
    first = result.first_failure
    if first is None:
        for t in result.tasks:
            done = t.finalized_rounds
            tip = f"{done[-1].global_sha256[:16]}" if done else t.genesis_sha256[:16]
            console.print(f"[green]lineage verified[/green]: task {t.task}, {len(done)} round"
                          f"{'s' if len(done) != 1 else ''}, from {tip} back to genesis {t.genesis_sha256[:16]}"
                          + (f" (task cancelled in round {t.cancelled_in})" if t.cancelled_in
                             else " (task completed)" if t.completed else ""), soft_wrap=True)
    else:
        console.print(f"[red]lineage broken[/red]: {len(result.failures)} failed check"
                      f"{'s' if len(result.failures) != 1 else ''}; first broken link: {escape(str(first))}", soft_wrap=True)
    a = result.source.get("anchor")
    if a:
        anchored = result.source.get("anchored_to")
        console.print(f"trusted: chain {a['chain_id']} (genesis block {a['genesis_block_hash']}), contract "
                      f"{a['contract']} (code keccak {a['code_keccak'][:18]}...), read up to block "
                      f"{a['head_block']}:{a['head_block_hash']}"
                      + (f"; contains the anchor {anchored[0]}:{anchored[1][:18]}..." if anchored else ""),
                      soft_wrap=True)
    for w in result.source.get("warnings", []):
        console.print(f"[yellow]warning[/yellow]: {escape(w)}", soft_wrap=True)
    tm = result.timing
    parts = [f"{k.replace('_', ' ')} {tm[k]:.2f} s" for k in ("start_chain", "start_ipfs", "events", "fetch", "verify",
                                                               "stop") if k in tm]
    console.print(f"audit time {tm.get('total', 0):.2f} s ({', '.join(parts)}; "
                  f"{result.blobs.get('count', 0)} blobs, {result.blobs.get('bytes', 0) / 1e6:.2f} MB)", soft_wrap=True)


def print_ancestry(model: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    kind = {"global": f"global model of round {model['round']}", "genesis": "genesis model",
            "update": f"update of {model.get('name')} in round {model['round']}"}[model["kind"]]
    console.print(f"\nmodel {model['sha256']} ({escape(kind)} of task {model['task']}, cid {model['cid']})", soft_wrap=True)
    if model["kind"] == "update":
        state = (f"included in the global model {model['included_in'][:16]}" if model.get("included_in")
                 else f"{model.get('status')} {model.get('reason') or ''}".strip())
        console.print(f"  trained on {model['num_samples']} samples from its parent; {escape(state)}", soft_wrap=True)
    console.print(f"  descends from genesis {model['genesis_sha256'][:16]} through {len(model['rounds'])} round"
                  f"{'s' if len(model['rounds']) != 1 else ''}" + ("" if model["verified"] else " (NOT verified: see below)"),
                  soft_wrap=True)
    if model["rounds"]:
        table = Table(title_justify="left")
        for col in ("round", "global model", "leader", "contributors (samples)", "status"):
            table.add_column(col, overflow="fold")
        for r in model["rounds"]:
            table.add_row(str(r["round"]), r["global_sha256"][:12], escape(r["leader_name"] or "-"),
                          escape(", ".join(f"{c['name']} {c['num_samples']}" for c in r["contributors"])), r["status"])
        console.print(table)
        table = Table(title="contributions to this model", title_justify="left")
        for col in ("organisation", "address", "rounds", "samples"):
            table.add_column(col)
        for o in model["organisations"]:
            table.add_row(escape(o["name"]), o["member"], ",".join(map(str, o["rounds"])), f"{o['samples']:,}")
        console.print(table)
