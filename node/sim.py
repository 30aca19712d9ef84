"""`fedledger sim`: N organisations federate on the embedded devnet, as separate node processes.

It starts Anvil and one IPFS node per organisation (connected to each other, so every model
really moves between nodes), deploys, admits the members with their own encrypted keystores,
creates the task on a genesis model, runs one `fedledger node run` process per organisation,
shows progress, and writes `report.json` and `accuracy.png`. The chain state and IPFS repos stay
in the run directory, so the run can be audited later.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from eth_account import Account

from fedledger.aggregation.registry import encode_params

from .chain import ChainClient, Phase, TaskConfig
from .config import NodeConfig, TrainingConfig
from .deploy import deploy
from .devnet import DEV_KEYS, AnvilNode, Devnet, stop_pid
from .ipfs_daemon import IpfsDaemon, connect_all, start_all
from .keys import DEV_SCRYPT_N, create_keystore
from .modelfile import ModelSpec, read_model, write_model_file

PASSWORD_ENV = "FEDLEDGER_SIM_PASSWORD"


@dataclass
class SimOptions:
    orgs: int = 4
    rounds: int = 5
    task: str = "digits-mlp"
    data: str | None = None
    partition: str = "dirichlet:0.5"
    rule: str = "fedavg"
    rule_params: str = "{}"
    verifiers: int = 2
    quorum: int | None = None
    seed: int = 0
    out: str = "runs/sim"
    epochs: int = 1
    lr: float | None = None
    batch_size: int | None = None
    mu: float = 0.0
    submission_window: int = 60
    aggregation_window: int = 30
    verification_window: int = 30
    timeout: float = 1800.0
    restart_org: str | None = None  # "NAME@ROUND": kill that node process (SIGKILL) when ROUND opens, then restart it


class SimError(RuntimeError):
    """The simulation could not run to the end; the message says where it stopped."""


def run_sim(opts: SimOptions, say: Callable[[str], None] = print) -> dict:
    from .tasks import get_task

    out = Path(opts.out).resolve()
    if (out / "report.json").exists() or (out / "devnet.json").exists():
        raise SimError(f"{out} holds an earlier run; choose another --out (runs are kept for audit)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim.json").write_text(json.dumps(asdict(opts), indent=2) + "\n")
    task_spec = get_task(opts.task)
    names = [f"org{i + 1}" for i in range(opts.orgs)]
    password = secrets.token_urlsafe(16)  # lives in the children's environment only

    anvil = AnvilNode(run_dir=out)
    daemons = [IpfsDaemon(out / "ipfs" / name, name=name) for name in names]
    procs: dict[str, subprocess.Popen] = {}
    t_start = time.time()
    try:
        say(f"starting the devnet: Anvil + {opts.orgs} IPFS nodes in {out}")
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
            _fund(admin, addr)
            admin.add_member(addr, name)
            members.append(addr)
        say(f"admitted {opts.orgs} members: {', '.join(names)}")

        genesis = task_spec.genesis_weights(opts.seed)
        spec = ModelSpec.from_tensors(genesis)
        admin_ipfs = daemons[0].client()
        spec_cid = admin_ipfs.add_bytes(spec.to_json())
        task_id = admin.task_count()
        gpath = out / "genesis.safetensors"
        gsha = write_model_file(gpath, genesis, {"kind": "genesis", "task": str(task_id), "round": "0",
                                                 "rule": opts.rule})
        gcid = admin_ipfs.add_file(gpath)
        for c in (spec_cid, gcid):
            admin_ipfs.pin_add(c)
        quorum = opts.quorum if opts.quorum is not None else opts.verifiers
        config = TaskConfig(
            model_spec_cid=spec_cid, genesis_cid=gcid, genesis_sha256=gsha, rule_id=opts.rule,
            rule_params=encode_params(opts.rule, json.loads(opts.rule_params)),
            min_participants=max(1, min(opts.orgs, (opts.orgs + 1) // 2)), max_participants=opts.orgs,
            submission_window=opts.submission_window, aggregation_window=opts.aggregation_window,
            verification_window=opts.verification_window, verifiers_per_round=opts.verifiers, quorum=quorum,
            max_rounds=opts.rounds,
        )
        task_id, _ = admin.create_task(config)
        say(f"task {task_id}: {opts.task}, rule {opts.rule}, {opts.rounds} rounds, {opts.verifiers} verifiers, "
            f"genesis {gsha[:12]}")

        defaults = task_spec.default_config
        training = TrainingConfig(epochs=opts.epochs, lr=opts.lr or defaults.lr, momentum=defaults.momentum,
                                  batch_size=opts.batch_size or defaults.batch_size, mu=opts.mu, seed=opts.seed)
        for i, (name, daemon) in enumerate(zip(names, daemons)):
            cfg = NodeConfig(
                name=name, work_dir=out / "orgs" / name, rpc_url=anvil.rpc_url, deployment=out / "deployment.json",
                ipfs_api=daemon.api_url, keystore=out / "orgs" / name / "keystore.json",
                password=f"env:{PASSWORD_ENV}", task=task_id, builtin=opts.task, data=opts.data,
                partition=opts.partition, org_index=i, num_orgs=opts.orgs, partition_seed=opts.seed,
                training=training,
            )
            path = out / "orgs" / name / "node.toml"
            path.write_text(cfg.to_toml())
            procs[name] = spawn_node(path, out / "orgs" / name / "node.log", password)
        say(f"started {opts.orgs} node processes (logs in {out / 'orgs'}/*/node.log)")

        faults: list[dict] = []
        finalized_at = watch(admin, task_id, opts, procs, say, faults, out, password)
        for name, p in procs.items():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.terminate()
        say("every round finalized; evaluating the global models")
        from .report import build_report

        report = build_report(out, admin, dep, task_id, opts, task_spec, admin_ipfs, spec, finalized_at,
                              t_start, names, members, faults)
        return report
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


def spawn_node(config_path: Path, log_path: Path, password: str) -> subprocess.Popen:
    env = dict(os.environ)
    env[PASSWORD_ENV] = password
    env.setdefault("OMP_NUM_THREADS", "1")
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "fedledger.node.cli", "node", "run", "--config", str(config_path)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    log.close()
    return proc


def _fund(admin: ChainClient, address: str, wei: int = 1000 * 10**18) -> None:
    w3 = admin.w3
    with admin._lock:
        if admin._nonce is None:
            admin._nonce = w3.eth.get_transaction_count(admin.sender, "pending")
        tx = {"to": address, "value": wei, "gas": 21000, "gasPrice": w3.eth.gas_price, "nonce": admin._nonce,
              "chainId": admin.chain_id}
        tx_hash = w3.eth.send_raw_transaction(admin.account.sign_transaction(tx).raw_transaction)
        admin._nonce += 1
    w3.eth.wait_for_transaction_receipt(tx_hash)


def parse_fault(spec: str | None, names: list[str]) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, rnd = spec.partition("@")
    if name not in names or not rnd.isdigit():
        raise SimError(f"fault {spec!r}: expected NAME@ROUND with NAME one of {', '.join(names)}")
    return name, int(rnd)


def watch(admin: ChainClient, task: int, opts: SimOptions, procs: dict, say: Callable[[str], None],
          faults: list[dict], out: Path, password: str) -> dict[int, float]:
    """Follow the task on chain until it completes; returns when each round finalized (wall clock).
    Injects the requested faults on real processes along the way."""
    deadline = time.time() + opts.timeout
    restart = parse_fault(opts.restart_org, list(procs))
    finalized_at: dict[int, float] = {0: time.time()}
    last_line = ""
    while True:
        state = admin.task_state(task)
        done_rounds = state.current_round - (0 if state.completed else 1)
        for r in range(1, done_rounds + 1):
            finalized_at.setdefault(r, time.time())
        if state.completed:
            say(f"round {state.current_round}/{opts.rounds} finalized: task completed")
            return finalized_at
        if restart and state.current_round == restart[1]:
            name = restart[0]
            procs[name].kill()
            procs[name].wait()
            say(f"fault: killed {name}'s node process (SIGKILL) as round {restart[1]} opened; restarting it")
            cfg_path = out / "orgs" / name / "node.toml"
            procs[name] = spawn_node(cfg_path, out / "orgs" / name / "node.log", password)
            faults.append({"round": restart[1], "fault": "restart_org", "org": name, "time": time.time()})
            restart = None
        info = admin.round_info(task, state.current_round)
        line = (f"round {state.current_round}/{opts.rounds}: {info.phase.name.lower()}, "
                f"{info.count}/{opts.orgs} updates")
        if info.phase in (Phase.AGGREGATION, Phase.VERIFICATION):
            line += f", leader {info.leader[:10]} (attempt {info.attempt})"
        if line != last_line:
            say(line)
            last_line = line
        dead = [n for n, p in procs.items() if p.poll() is not None and p.returncode != 0]
        if len(dead) == len(procs):
            raise SimError(f"every node process exited with an error; see {Path(opts.out) / 'orgs'}/*/node.log")
        if time.time() > deadline:
            raise SimError(f"the federation did not finish within {opts.timeout:.0f} s")
        time.sleep(0.2)
