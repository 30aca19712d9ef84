"""`fedledger node run` (this organisation's peer) and `fedledger status` (a running federation)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from .. import defaults
from ..errors import ChainError, StorageError
from .output import EXIT_CODES_HELP, emit, json_opt, reflow, reporting

node_app = typer.Typer(help="Run this organisation's peer node.", no_args_is_help=True, epilog=EXIT_CODES_HELP)


@node_app.command("run", epilog=EXIT_CODES_HELP)
@reflow
def node_run(
    config: Path = typer.Option(..., "--config", help="The organisation's TOML config (see `fedledger init`)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also log lost races and other routine detail."),
    log_file: Optional[Path] = typer.Option(None, "--log", help="Write the whole log to this file (appended) and "
                                            "show only progress (round, phase, this member's role), warnings and "
                                            "errors on the terminal."),
) -> None:
    """Take part in the configured task until it completes: submit updates, lead when elected,
    verify when picked, and call close/timeout when deadlines pass. Safe to restart at any time:
    the node derives where the round stands from the chain."""
    import logging

    from ..peer.build import build_peer
    from ..peer.config import NodeConfig

    fmt = logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%H:%M:%S")
    terminal = logging.StreamHandler()
    terminal.setFormatter(fmt)
    handlers: list[logging.Handler] = [terminal]
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            to_file = logging.FileHandler(log_file)
        except OSError as exc:
            from .output import fail

            fail(False, 1, "InputError", f"cannot write the log file {log_file}: {exc.strerror}")
        to_file.setFormatter(fmt)
        handlers.append(to_file)
        terminal.addFilter(lambda r: r.levelno >= logging.WARNING or getattr(r, "progress", False))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers)
    for noisy in ("httpx", "httpcore", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    def hint(exc: BaseException) -> str | None:
        if isinstance(exc, ChainError) and exc.exit_code != 4:
            return f"is the chain node running and the RPC URL in {config} right?"
        if isinstance(exc, StorageError) and exc.exit_code != 1:
            return ("cannot fetch the task's model spec from IPFS: is this organisation's IPFS node running and "
                    "connected to the others (`fedledger ipfs status`)?")
        return None

    with reporting(hint=hint):
        peer = build_peer(NodeConfig.load(config))
    try:
        peer.run()
    except KeyboardInterrupt:
        raise typer.Exit(130)


@reflow
def status(
    deployment: Path = typer.Option(Path(defaults.DEPLOYMENT_FILE), help="The deployment file the consortium handed out."),
    rpc: Optional[str] = typer.Option(None, help="JSON-RPC URL (default: the one in the deployment file)."),
    task: Optional[int] = typer.Option(None, help="Show only this task (default: every task)."),
    poa: bool = typer.Option(False, help="The chain is proof-of-authority."),
    watch: Optional[float] = typer.Option(None, "--watch", min=0.1, help="Follow the federation: look every SECONDS "
                                          "and print a line whenever a task's round, phase, attempt or updates change, "
                                          "until every task shown has completed (Ctrl-C stops)."),
    as_json: bool = json_opt(),
) -> None:
    """Show a running federation: members, tasks, the current round, its phase, leader and deadlines.
    With --watch, follow it (with --json: one JSON object per change)."""
    from ..chain.deployment import Deployment

    with reporting(as_json):
        dep = Deployment.load(deployment)
        client = dep.client(rpc_url=rpc, poa=poa)
        data, lines = _snapshot(client, dep, task)
        if watch is None:
            emit(as_json, data, lines)
            return

        def show(obj: dict, text: list[str]) -> None:  # JSON lines when following
            print(json.dumps(obj, default=str) if as_json else "\n".join(text), flush=True)

        show(data, lines)
        seen = {e["task"]: _where(e) for e in data["tasks"]}
        try:
            while not all(e["completed"] for e in data["tasks"]):
                time.sleep(watch)
                data, lines = _snapshot(client, dep, task)
                for e, line in zip(data["tasks"], lines[1:]):
                    if _where(e) != seen.get(e["task"]):
                        seen[e["task"]] = _where(e)
                        stamp = time.strftime("%H:%M:%S")
                        show({"time": stamp, **e}, [f"{stamp} {line}"])
        except KeyboardInterrupt:
            raise typer.Exit(130)


def _where(entry: dict) -> tuple:
    return tuple(entry.get(k) for k in ("completed", "round", "phase", "attempt", "updates", "leader"))


def _snapshot(client, dep, task: Optional[int]) -> tuple[dict, list[str]]:
    """(the federation as JSON, its lines: the consortium, then one per task)."""
    from ..ops.access import members_of
    from ..ops.tasks import privacy_summary
    from ..protocol.types import Phase

    members = {a: m["name"] for a, m in members_of(client, dep.block).items() if m["active"]}
    tasks = []
    if task is not None:
        client.require_task(task)
    ids = [task] if task is not None else range(client.task_count())
    for t in ids:
        cfg, st = client.task_config(t), client.task_state(t)
        entry = {"task": t, "rule": cfg.rule_id, "max_rounds": cfg.max_rounds, "completed": st.completed,
                 "round": st.current_round, "global_sha256": st.global_sha256, "global_cid": st.global_cid}
        if not st.completed:
            info = client.round_info(t, st.current_round)
            entry.update(phase=info.phase.name.lower(), updates=info.count, attempt=info.attempt,
                         leader=members.get(info.leader, info.leader) if info.leader else None,
                         deadline=info.deadline, seconds_left=round(info.deadline - time.time(), 1),
                         min_participants=cfg.min_participants)
            if info.phase in (Phase.AGGREGATION, Phase.VERIFICATION):
                entry["verifiers"] = [members.get(v, v) for v in client.verifiers_of(t, st.current_round, info.attempt)]
        privacy = privacy_summary(client, t, cfg, dep.block, {a: {"name": n} for a, n in members.items()})
        if privacy:
            entry["privacy"] = privacy
        tasks.append(entry)
    data = {"contract": dep.address, "chain_id": dep.chain_id, "members": members, "tasks": tasks}
    lines = [f"FedLedger {dep.address} on chain {dep.chain_id}: {len(members)} members ({', '.join(members.values())})"]
    for e in tasks:
        if e["completed"]:
            lines.append(f"task {e['task']} [{e['rule']}]: completed after {e['round']} rounds, final model "
                         f"{e['global_sha256'][:16]}")
        else:
            line = (f"task {e['task']} [{e['rule']}]: round {e['round']}/{e['max_rounds']} {e['phase']}, "
                    f"{e['updates']} updates, {deadline_words(e)}")
            if e.get("leader"):
                line += (f", leader {e['leader']} (attempt {e['attempt']}), verifiers "
                         f"{', '.join(e.get('verifiers', [])) or 'none'}")
            lines.append(line)
        if e.get("privacy"):
            p = e["privacy"]
            spent = max((m["epsilon"] for m in p["members"].values()), default=0.0)
            lines[-1] += (f"; {p['level']}-level DP, epsilon spent up to {spent:.3f}"
                          + (f" of {p['budget']:g}" if p["budget"] else " (no budget)"))
    return data, lines


def deadline_words(e: dict) -> str:
    """Where the round's deadline stands, in words: what may happen next once it has passed."""
    left = e["seconds_left"]
    if left >= 0:
        return f"deadline in {left:.0f} s"
    ago = f"passed {-left:.0f} s ago"
    phase = e["phase"]
    if phase == "submission":
        need = e["min_participants"] - e["updates"]
        if need > 0:
            return (f"submission window {ago}; the round closes once {need} more member{'s' if need > 1 else ''} "
                    f"submit{'' if need > 1 else 's'} (it needs {e['min_participants']})")
        return f"submission window {ago}; any member may now close the round"
    if phase == "reveal":
        return f"reveal window {ago}; any member may now close the reveals (who did not reveal is left out)"
    if phase == "aggregation":
        return f"the leader's window {ago}; any member may now time it out and the next candidate leads"
    if phase == "verification":
        return f"verification window {ago}; any member may now time the attempt out"
    return f"deadline {ago}"


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    app.command("status", epilog=EXIT_CODES_HELP)(status)
