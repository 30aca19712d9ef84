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

from .chain import ChainClient, Phase
from .config import NodeConfig, TrainingConfig
from .deploy import deploy
from .devnet import DEV_KEYS, AnvilNode, Devnet, stop_pid
from .ipfs_daemon import IpfsDaemon, connect_all, start_all
from .keys import DEV_SCRYPT_N, create_keystore
from .modelfile import ModelSpec
from .ops import OpsError, TaskPlan, create_task, send_ether

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
    fedcurv_lambda: float = 0.0
    lr_decay: float = 1.0
    submission_window: int = 120  # a round with every organisation in closes at once; this only waits for absentees
    aggregation_window: int = 60
    verification_window: int = 60
    timeout: float = 1800.0
    # Faults and attacks, each on real processes (see `fedledger sim --help`):
    restart_org: str | None = None  # "NAME@ROUND": SIGKILL that node process when ROUND opens, then restart it
    drop_org: str | None = None  # "NAME@ROUND": SIGKILL that node process when ROUND opens, for good
    kill_leader_at: int | None = None  # SIGKILL the elected leader of ROUND before it publishes
    byzantine_leader_at: str | None = None  # "3", "2,4" or "all": the first leader of those rounds cheats
    attackers: int = 0  # the last K organisations attack ...
    attack: str = "signflip"  # ... with signflip | scale:X | noise:SIGMA | labelflip | malformed:KIND|cycle
    restart_chain_at: int | None = None  # stop the chain node (state written) when ROUND opens, start it again
    restart_ipfs: str | None = None  # "NAME@ROUND": restart that organisation's IPFS node when ROUND opens
    ipfs_nodes: int | None = None  # share this many IPFS nodes among the organisations; None: one each
    gateways: bool = True  # fetch each blob from its storer's IPFS gateway first; False: the swarm only


class SimError(RuntimeError):
    """The simulation could not run to the end; the message says where it stopped."""


def run_sim(opts: SimOptions, say: Callable[[str], None] = print) -> dict:
    import threading

    if threading.current_thread() is threading.main_thread():
        # SIGTERM (`timeout`, a CI runner) must stop the devnet's processes too: turn it into
        # SystemExit so the cleanup below runs instead of the interpreter dying mid-flight.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            return _run_sim(opts, say)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return _run_sim(opts, say)


def _run_sim(opts: SimOptions, say: Callable[[str], None]) -> dict:
    from .tasks import get_task

    if opts.ipfs_nodes is not None and not 1 <= opts.ipfs_nodes <= opts.orgs:
        raise SimError(f"--ipfs-nodes must be between 1 and --orgs ({opts.orgs}), got {opts.ipfs_nodes}")
    out = Path(opts.out).resolve()
    if (out / "report.json").exists() or (out / "devnet.json").exists():
        raise SimError(f"{out} holds an earlier run; choose another --out (runs are kept for audit)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim.json").write_text(json.dumps(asdict(opts), indent=2) + "\n")
    task_spec = get_task(opts.task)
    names = [f"org{i + 1}" for i in range(opts.orgs)]
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
            _fund(admin, addr)
            admin.add_member(addr, name)
            members.append(addr)
        say(f"admitted {opts.orgs} members: {', '.join(names)}")

        genesis = task_spec.genesis_weights(opts.seed)
        if opts.fedcurv_lambda > 0:
            from .trainer import add_fedcurv_zeros

            genesis = add_fedcurv_zeros(genesis)  # one set of tensor names for every model of the task
        spec = ModelSpec.from_tensors(genesis)
        admin_ipfs = daemons[0].client()
        plan = TaskPlan(rule=opts.rule, rule_params=json.loads(opts.rule_params),
                        min_participants=max(1, min(opts.orgs, (opts.orgs + 1) // 2)), max_participants=opts.orgs,
                        submission_window=opts.submission_window, aggregation_window=opts.aggregation_window,
                        verification_window=opts.verification_window, verifiers=opts.verifiers, quorum=opts.quorum,
                        rounds=opts.rounds)
        try:
            created = create_task(admin, admin_ipfs, genesis, out / "genesis.safetensors", plan)
        except (OpsError, ValueError) as exc:
            raise SimError(f"cannot create the task: {exc}") from exc
        task_id, gsha = created.task, created.config.genesis_sha256
        say(f"task {task_id}: {opts.task}, rule {opts.rule}, {opts.rounds} rounds, {opts.verifiers} verifiers, "
            f"genesis {gsha[:12]}")

        defaults = task_spec.default_config
        training = TrainingConfig(epochs=opts.epochs, lr=opts.lr or defaults.lr, momentum=defaults.momentum,
                                  batch_size=opts.batch_size or defaults.batch_size, mu=opts.mu, seed=opts.seed,
                                  fedcurv_lambda=opts.fedcurv_lambda, lr_decay=opts.lr_decay)
        adversaries = plan_adversaries(opts, names)
        gateways = {addr: daemon_of[name].gateway_url for name, addr in zip(names, members)} if opts.gateways else {}
        for i, name in enumerate(names):
            daemon = daemon_of[name]
            cfg = NodeConfig(
                adversary=adversaries.get(name, {}),
                name=name, work_dir=out / "orgs" / name, rpc_url=anvil.rpc_url, deployment=out / "deployment.json",
                ipfs_api=daemon.api_url, keystore=out / "orgs" / name / "keystore.json",
                password=f"env:{PASSWORD_ENV}", task=task_id, builtin=opts.task, data=opts.data,
                partition=opts.partition, org_index=i, num_orgs=opts.orgs, partition_seed=opts.seed,
                training=training, gateways={a: u for a, u in gateways.items() if a != members[i]},
                ws_url=anvil.rpc_url.replace("http://", "ws://", 1),  # Anvil serves both on one port
                # New blocks are pushed over the WebSocket; polling only stands in while it is down.
                # Every node shares these cores and asks the one chain node, so it stays gentle.
                poll_seconds=max(0.1, 0.01 * opts.orgs),
            )
            path = out / "orgs" / name / "node.toml"
            path.write_text(cfg.to_toml())
            procs[name] = spawn_node(path, out / "orgs" / name / "node.log", password)
        say(f"started {opts.orgs} node processes (logs in {out / 'orgs'}/*/node.log)")

        faults: list[dict] = [{"fault": "adversary", "org": n, **a} for n, a in adversaries.items()]
        injector = FaultInjector(opts, names, members, procs, anvil, daemon_of, out, password, say, faults)
        finalized_at = watch(admin, task_id, opts, procs, say, injector)
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


def _fund(admin: ChainClient, address: str, wei: int = 100 * 10**18) -> None:
    # The devnet's dev account holds 10,000 ETH: 100 per member covers gas for 100 organisations.
    send_ether(admin, address, wei)


def parse_fault(spec: str | None, names: list[str]) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, rnd = spec.partition("@")
    if name not in names or not rnd.isdigit():
        raise SimError(f"fault {spec!r}: expected NAME@ROUND with NAME one of {', '.join(names)}")
    return name, int(rnd)


def parse_rounds(spec: str | None, rounds: int) -> list[int]:
    if not spec:
        return []
    if spec == "all":
        return list(range(1, rounds + 1))
    try:
        return [int(x) for x in spec.split(",")]
    except ValueError:
        raise SimError(f"rounds {spec!r}: expected 'all' or a comma-separated list like 2,4") from None


def plan_adversaries(opts: SimOptions, names: list[str]) -> dict[str, dict]:
    """Which organisation misbehaves how: written into its node config's [adversary] section."""
    plan: dict[str, dict] = {}
    if opts.attackers:
        if opts.attackers >= len(names):
            raise SimError(f"--attackers {opts.attackers} leaves no honest organisation out of {len(names)}")
        kind, _, arg = opts.attack.partition(":")
        entry = {"malformed": arg or "cycle"} if kind == "malformed" else {"attack": opts.attack}
        from .adversary import Adversary

        Adversary.from_dict(entry)  # validate before anything starts
        for name in names[-opts.attackers:]:
            plan.setdefault(name, {}).update(entry)
    byz = parse_rounds(opts.byzantine_leader_at, opts.rounds)
    hold = [opts.kill_leader_at] if opts.kill_leader_at else []
    for name in names:
        if byz:
            plan.setdefault(name, {})["byzantine_leader_rounds"] = byz
        if hold:
            plan.setdefault(name, {})["hold_before_publish_rounds"] = hold
    return plan


class FaultInjector:
    """Applies the requested faults to real processes as the chain reaches the given rounds."""

    def __init__(self, opts: SimOptions, names, members, procs, anvil, daemon_of: dict, out: Path, password: str,
                 say: Callable[[str], None], faults: list[dict]):
        self.opts, self.names, self.procs, self.anvil, self.out = opts, names, procs, anvil, out
        self.daemons = dict(daemon_of)  # organisation name -> its IPFS daemon
        self.name_of = dict(zip(members, names))
        self.password, self.say, self.faults = password, say, faults
        self.restart = parse_fault(opts.restart_org, names)
        self.drop = parse_fault(opts.drop_org, names)
        self.ipfs = parse_fault(opts.restart_ipfs, names)
        self.kill_leader_at = opts.kill_leader_at
        self.chain_at = opts.restart_chain_at
        self.killed_leader: dict | None = None

    def _kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def _respawn(self, name: str) -> None:
        self.procs[name] = spawn_node(self.out / "orgs" / name / "node.toml", self.out / "orgs" / name / "node.log",
                                      self.password)

    def step(self, state, info) -> None:
        rnd = state.current_round
        if self.restart and rnd == self.restart[1]:
            name = self.restart[0]
            self._kill(name)
            self._respawn(name)
            self.say(f"fault: killed {name}'s node process (SIGKILL) as round {rnd} opened; restarted it")
            self.faults.append({"round": rnd, "fault": "restart_org", "org": name, "time": time.time()})
            self.restart = None
        if self.drop and rnd == self.drop[1]:
            name = self.drop[0]
            self._kill(name)
            self.say(f"fault: killed {name}'s node process (SIGKILL) for good as round {rnd} opened")
            self.faults.append({"round": rnd, "fault": "drop_org", "org": name, "time": time.time()})
            self.drop = None
        if self.ipfs and rnd == self.ipfs[1]:
            name = self.ipfs[0]
            daemon = self.daemons[name]
            t0 = time.time()
            daemon.stop()
            daemon.start()
            connect_all(list({id(d): d for d in self.daemons.values()}.values()))
            self.say(f"fault: restarted {name}'s IPFS node ({time.time() - t0:.1f} s)")
            self.faults.append({"round": rnd, "fault": "restart_ipfs", "org": name, "time": t0,
                                "seconds": round(time.time() - t0, 2)})
            self.ipfs = None
        if self.chain_at and rnd == self.chain_at:
            t0 = time.time()
            self.anvil.stop()  # SIGTERM: Anvil writes its state file
            self.anvil.start()  # same port, state restored from the file
            self.say(f"fault: restarted the chain node from its state file ({time.time() - t0:.1f} s)")
            self.faults.append({"round": rnd, "fault": "restart_chain", "time": t0, "seconds": round(time.time() - t0, 2)})
            self.chain_at = None
        if (self.kill_leader_at and rnd == self.kill_leader_at and info is not None
                and info.phase == Phase.AGGREGATION and info.attempt == 0 and info.leader):
            name = self.name_of[info.leader]
            self._kill(name)
            self.say(f"fault: killed round {rnd}'s elected leader {name} (SIGKILL) before it published")
            self.killed_leader = {"round": rnd, "fault": "kill_leader", "org": name, "time": time.time(),
                                  "deadline": info.deadline}
            self.faults.append(self.killed_leader)
            self.kill_leader_at = None

    def round_finalized(self, rnd: int, when: float) -> None:
        k = self.killed_leader
        if k and k["round"] == rnd and "failover_seconds" not in k:
            k["failover_seconds"] = round(when - k["time"], 2)
            k["finalized_after_deadline_seconds"] = round(when - k["deadline"], 2)
            self._respawn(k["org"])  # the organisation comes back for the next rounds
            self.say(f"round {rnd} finalized {k['failover_seconds']:.1f} s after its leader was killed; "
                     f"{k['org']} restarted")


def watch(admin: ChainClient, task: int, opts: SimOptions, procs: dict, say: Callable[[str], None],
          injector: FaultInjector | None = None) -> dict[int, float]:
    """Follow the task on chain until it completes; returns when each round finalized (wall clock).
    Injects the requested faults on real processes along the way."""
    from .chain import ChainError

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
            raise SimError(f"every node process exited with an error; see {Path(opts.out) / 'orgs'}/*/node.log")
        if time.time() > deadline:
            raise SimError(f"the federation did not finish within {opts.timeout:.0f} s")
        time.sleep(0.02)
