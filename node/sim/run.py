"""`fedledger sim`: N organisations federate on the embedded devnet, as separate node processes.

It starts Anvil and one IPFS node per organisation (connected to each other, so every model
really moves between nodes), deploys, admits the members with their own encrypted keystores,
creates the task on a genesis model, runs one `fedledger node run` process per organisation,
shows progress, and writes `report.json` and `accuracy.png`. The chain state and IPFS repos stay
in the run directory, so the run can be audited later.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from eth_account import Account

from ..chain.client import ChainClient
from ..chain.deployment import deploy
from ..chain.devnet import DEV_KEYS, AnvilNode, Devnet
from ..chain.keys import DEV_SCRYPT_N, create_keystore
from ..errors import ChainError, InputError, SimError
from ..ops.tasks import create_task
from ..peer.config import Chain, Ipfs, Keystore, NodeConfig, Organisation, Task, WorkloadSettings
from ..protocol.types import Phase
from ..storage.daemon import IpfsDaemon, connect_all, start_all
from ..storage.modelfile import ModelSpec
from ..training.trainer import add_fedcurv_zeros
from ..training.workloads import get_workload
from .faults import FaultInjector, plan_adversaries
from .nodes import PASSWORD_ENV, spawn_node
from .options import SimOptions
from .report import build_report


def run_sim(opts: SimOptions, say: Callable[[str], None] = print) -> dict:
    """Run the simulation `opts` describes; returns the report (also written to OUT/report.json).
    Every option is checked before anything starts (`InputError`)."""
    opts.check()
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (`timeout`, a CI runner) must stop the devnet's processes too: turn it into
        # SystemExit so the cleanup below runs instead of the interpreter dying mid-flight.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            return _run_sim(opts, say)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return _run_sim(opts, say)


#: Written into --out when a run fails or is interrupted: the next run may take the directory over.
INCOMPLETE = "INCOMPLETE"


def claim_out(out: Path, say: Callable[[str], None], shown: str | None = None) -> None:
    """Make `out` this run's: refuse a finished (or running) run, move a failed one aside.
    `shown`: the directory as the user named it, for messages."""
    shown = shown or str(out)
    if (out / "report.json").exists():
        raise SimError(f"{shown} holds an earlier run; choose another --out (runs are kept for audit)")
    if (out / INCOMPLETE).exists():
        aside = out.with_name(f"{out.name}.failed-{time.strftime('%Y%m%d-%H%M%S')}")
        out.rename(aside)
        say(f"moved the run that failed in {out} aside to {aside}")
    elif (out / "devnet.json").exists():
        raise SimError(f"{shown} holds a run that is still going or ended without a report; choose another --out")
    out.mkdir(parents=True, exist_ok=True)


def _run_sim(opts: SimOptions, say: Callable[[str], None]) -> dict:
    out = Path(opts.out).resolve()
    claim_out(out, say, opts.out)
    (out / "sim.json").write_text(json.dumps(asdict(opts), indent=2) + "\n")
    workload = get_workload(opts.workload)
    training = opts.resolved_training()
    names = opts.names
    password = secrets.token_urlsafe(16)  # lives in the children's environment only

    anvil = AnvilNode(run_dir=out)
    if opts.ipfs_nodes in (None, opts.orgs):
        daemons = [IpfsDaemon(out / "ipfs" / name, name=name) for name in names]
    else:  # organisation i uses node i mod K: models still cross nodes between most pairs
        daemons = [IpfsDaemon(out / "ipfs" / f"ipfs{k + 1}", name=f"ipfs{k + 1}") for k in range(opts.ipfs_nodes)]
    daemon_of = {name: daemons[i % len(daemons)] for i, name in enumerate(names)}
    procs: dict[str, subprocess.Popen] = {}
    t_start = time.time()
    try:
        say(f"starting the devnet: Anvil + {len(daemons)} IPFS nodes in {out}")
        anvil.start()
        start_all(daemons)
        connect_all(daemons)
        net = Devnet(run_dir=out, anvil=anvil,
                     ipfs={d.name: {"repo": str(d.repo_dir), "api_url": d.api_url} for d in daemons})
        net.save()

        admin_acct = Account.from_key(DEV_KEYS[0])
        dep = deploy(anvil.rpc_url, admin_acct, out / "deployment.json")
        admin = dep.client(account=admin_acct)
        say(f"deployed FedLedger at {dep.address}")

        members = []
        for name in names:
            ks = out / "orgs" / name / "keystore.json"
            addr = create_keystore(ks, password, scrypt_n=DEV_SCRYPT_N)
            admin.send_ether(addr, 100 * 10**18)  # the dev account holds 10,000 ETH: gas for 100 members
            admin.add_member(addr, name)
            members.append(addr)
        say(f"admitted {opts.orgs} members: {', '.join(names)}")

        genesis = workload.genesis_weights(opts.seed)
        if training.fedcurv_lambda > 0:
            genesis = add_fedcurv_zeros(genesis)  # one set of tensor names for every model of the task
        spec = ModelSpec.from_tensors(genesis)
        admin_ipfs = daemons[0].client()
        plan = opts.plan()
        try:
            created = create_task(admin, admin_ipfs, genesis, out / "genesis.safetensors", plan)
        except (InputError, ValueError) as exc:
            raise SimError(f"cannot create the task: {exc}") from exc
        task_id, gsha = created.task, created.config.genesis_sha256
        say(f"task {task_id}: {opts.workload}, rule {opts.rule}, {opts.rounds} rounds, {plan.verifiers} verifiers "
            f"(quorum {plan.effective_quorum}), "
            f"genesis {gsha[:12]}")

        adversaries = plan_adversaries(opts, names)
        gateways = {addr: daemon_of[name].gateway_url for name, addr in zip(names, members)} if opts.gateways else {}
        for i, name in enumerate(names):
            daemon = daemon_of[name]
            cfg = NodeConfig(
                # New blocks are pushed over the WebSocket; polling only stands in while it is down.
                # Every node shares these cores and asks the one chain node, so it stays gentle.
                organisation=Organisation(name=name, work_dir=out / "orgs" / name,
                                          poll_seconds=max(0.1, 0.01 * opts.orgs)),
                chain=Chain(rpc_url=anvil.rpc_url, deployment=out / "deployment.json",
                            ws_url=anvil.rpc_url.replace("http://", "ws://", 1)),  # Anvil serves both on one port
                ipfs=Ipfs(api_url=daemon.api_url, gateways={a: u for a, u in gateways.items() if a != members[i]}),
                keystore=Keystore(path=out / "orgs" / name / "keystore.json", password=f"env:{PASSWORD_ENV}"),
                task=Task(id=task_id),
                workload=WorkloadSettings(builtin=opts.workload, data=opts.data, partition=opts.partition,
                                          org_index=i, num_orgs=opts.orgs, partition_seed=opts.seed),
                training=training,
                adversary=adversaries.get(name, {}),
            )
            path = out / "orgs" / name / "node.toml"
            path.write_text(cfg.to_toml())
            procs[name] = spawn_node(path, out / "orgs" / name / "node.log", password)
        say(f"started {opts.orgs} node processes (logs in {out / 'orgs'}/*/node.log)")

        faults: list[dict] = [{"fault": "adversary", "org": n, **a} for n, a in adversaries.items()]
        injector = FaultInjector(opts, names, members, procs, anvil, daemon_of, out, password, say, faults,
                                 chain=admin, task=task_id)
        finalized_at = watch(admin, task_id, opts, procs, say, injector)
        # Each node exits by itself once the task completed; its exit code goes into the report
        # (None: still running 30 s later, then stopped). A node killed on purpose keeps its -9.
        exit_codes: dict[str, int | None] = {}
        for name, p in procs.items():
            try:
                exit_codes[name] = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                exit_codes[name] = None
                p.terminate()
        say("every round finalized; evaluating the global models")
        report = build_report(out, admin, dep, task_id, opts, training, workload, admin_ipfs, spec, finalized_at,
                              t_start, names, members, faults, exit_codes)
        dropped = {f["org"] for f in faults if f["fault"] == "drop_org"}
        unclean = [n for n, x in report["nodes"].items()
                   if n not in dropped and (x["exit_code"] != 0 or x["traceback"])]
        if unclean:
            say(f"warning: node {', '.join(unclean)} did not end cleanly (exit code or traceback in node.log; "
                "see report.json's nodes)")
        return report
    except BaseException as exc:  # a failure or Ctrl-C: keep what the run wrote, free --out for the next one
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        (out / INCOMPLETE).write_text(json.dumps({"reason": reason, "at": time.time()}) + "\n")
        say(f"stopped; kept the logs and the chain state in {out} (node logs: orgs/*/node.log); the same --out "
            "may be used again (this run is then moved aside)")
        raise
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for d in daemons:
            d.stop()
        anvil.stop()
        Devnet(run_dir=out, anvil=anvil,
               ipfs={d.name: {"repo": str(d.repo_dir)} for d in daemons}).save()


def last_error_line(log: Path) -> str | None:
    """The last `error: ...` line (or traceback's exception line) a node wrote before it exited."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("error:"):
            return text[len("error:"):].strip()
        if text and not line[0].isspace() and re.match(r"^[A-Za-z_.]+(Error|Exception): ", text):
            return text
    return None


def watch(admin: ChainClient, task: int, opts: SimOptions, procs: dict, say: Callable[[str], None],
          injector: FaultInjector | None = None) -> dict[int, float]:
    """Follow the task on chain until it completes; returns when each round finalized (wall clock).
    Injects the requested faults on real processes along the way."""
    deadline = time.time() + opts.timeout
    finalized_at: dict[int, float] = {0: time.time()}
    last_line = ""
    last_block, last_read = -1, 0.0
    while True:
        try:
            # A round can take a tenth of a second: timestamp finalizations to within ~20 ms by
            # asking for the block number (cheap) and reading the round on each new block (and
            # twice a second, for the fault injector and the dead-process check).
            block = admin.block_number()
            if block == last_block and time.time() - last_read < 0.5:
                time.sleep(0.02)
                continue
            last_block, last_read = block, time.time()
            state = admin.task_state(task)
            info = None if state.completed else admin.round_info(task, state.current_round)
        except ChainError:
            time.sleep(0.5)  # the chain node is restarting
            continue
        done_rounds = state.current_round - (0 if state.completed else 1)
        for r in range(1, done_rounds + 1):
            if r not in finalized_at:
                finalized_at[r] = time.time()
                if injector:
                    injector.round_finalized(r, finalized_at[r])
        if state.completed:
            say(f"round {state.current_round}/{opts.rounds} finalized: task completed")
            return finalized_at
        if injector:
            injector.step(state, info)
        line = (f"round {state.current_round}/{opts.rounds}: {info.phase.name.lower()}, "
                f"{info.count}/{opts.orgs} updates")
        if info.phase in (Phase.AGGREGATION, Phase.VERIFICATION):
            line += f", leader {info.leader[:10]} (attempt {info.attempt})"
        if info.epoch:
            line += f", epoch {info.epoch}"
        if line != last_line:
            say(line)
            last_line = line
        dead = [n for n, p in procs.items() if p.poll() is not None and p.returncode != 0]
        if len(dead) == len(procs):
            logs = Path(opts.out) / "orgs"
            why = last_error_line(logs / dead[0] / "node.log")
            raise SimError(f"every node process exited with an error{f' ({dead[0]}: {why})' if why else ''}; "
                           f"see {logs}/*/node.log")
        if time.time() > deadline:
            raise SimError(f"the federation did not finish within {opts.timeout:.0f} s")
        time.sleep(0.02)
