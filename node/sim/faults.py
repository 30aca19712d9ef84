"""Faults and attacks of a simulation, on real processes: which organisation misbehaves how
(written into its node config's `[adversary]` section), and the injector that kills, restarts and
stalls node processes, IPFS nodes and the chain node as the chain reaches the given rounds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..peer.adversary import COLLUDING_ATTACKS, Adversary
from ..peer.config import NodeConfig
from ..protocol.types import Phase
from ..storage.daemon import connect_all
from .nodes import spawn_node
from .options import SimOptions, parse_fault, parse_roles, parse_rounds


def plan_adversaries(opts: SimOptions, names: list[str]) -> dict[str, dict]:
    """Which organisation misbehaves how: written into its node config's [adversary] section."""
    plan: dict[str, dict] = {}
    if opts.attackers:
        if opts.attackers >= len(names):
            raise InputError(f"--attackers {opts.attackers} leaves no honest organisation out of {len(names)}")
        kind, _, arg = opts.attack.partition(":")
        entry = {"malformed": arg or "cycle"} if kind == "malformed" else {"attack": opts.attack}
        if kind in COLLUDING_ATTACKS:  # the attackers pool their honest updates, as in the papers
            entry.update(collude_dir=str(Path(opts.out).resolve() / "collusion"), colluders=opts.attackers,
                         participants=len(names))
        Adversary.from_dict(entry)  # validate before anything starts
        for name in names[-opts.attackers:]:
            plan.setdefault(name, {}).update(entry)
    byz = parse_rounds(opts.byzantine_leader_at, opts.rounds)
    roles = parse_roles(opts.restart_role, opts.rounds)
    # Whoever is elected holds at the role point until the injector kills it (the restarted node
    # runs without the hold).
    hold = [opts.kill_leader_at] if opts.kill_leader_at else []
    hold += [r for role, r in roles if role == "leader"]
    hold_attest = [r for role, r in roles if role == "verifier"]
    for name in names:
        if byz:
            plan.setdefault(name, {})["byzantine_leader_rounds"] = byz
            if opts.byzantine_shift != 0.05:
                plan[name]["byzantine_shift"] = opts.byzantine_shift
        if hold:
            plan.setdefault(name, {})["hold_before_publish_rounds"] = sorted(set(hold))
        if hold_attest:
            plan.setdefault(name, {})["hold_before_attest_rounds"] = hold_attest
    return plan


class FaultInjector:
    """Applies the requested faults to real processes as the chain reaches the given rounds."""

    def __init__(self, opts: SimOptions, names, members, procs, anvil, daemon_of: dict, out: Path, password: str,
                 say: Callable[[str], None], faults: list[dict], chain: Any = None, task: int = 0):
        self.opts, self.names, self.procs, self.anvil, self.out = opts, names, procs, anvil, out
        self.daemons = dict(daemon_of)  # organisation name -> its IPFS daemon
        self.name_of = dict(zip(members, names))
        self.password, self.say, self.faults = password, say, faults
        self.chain, self.task = chain, task  # a ChainClient reading the task (role points)
        self.restart = parse_fault(opts.restart_org, names, opts.rounds)
        self.drop = parse_fault(opts.drop_org, names, opts.rounds)
        self.ipfs = parse_fault(opts.restart_ipfs, names, opts.rounds)
        self.roles = parse_roles(opts.restart_role, opts.rounds)
        self.kill_leader_at = opts.kill_leader_at
        self.chain_at = opts.restart_chain_at
        self.killed_leader: dict | None = None

    def _kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait()

    def _respawn_without(self, name: str, hold: str) -> None:
        """Restart `name`'s node with the `hold` of its [adversary] section removed: it was held at a
        role point only to be killed there."""
        path = self.out / "orgs" / name / "node.toml"
        cfg = NodeConfig.load(path)
        cfg.adversary.pop(hold, None)
        path.write_text(cfg.to_toml())
        self._respawn(name)

    def _restart_at_role(self, role: str, rnd: int, info) -> bool:
        """Kill and restart the node(s) at `role`'s point of round `rnd` if the round is there now."""
        if role == "submitter":
            if info.count == 0:
                return False
            victims = [self.name_of[self.chain.participants(self.task, rnd)[0]]]
            hold = ""
        elif role == "leader":
            if info.phase != Phase.AGGREGATION or info.attempt != 0 or not info.leader:
                return False
            victims, hold = [self.name_of[info.leader]], "hold_before_publish_rounds"
        else:
            if info.phase != Phase.VERIFICATION or info.attempt != 0:
                return False
            victims = [self.name_of[v] for v in self.chain.verifiers_of(self.task, rnd, 0)]
            hold = "hold_before_attest_rounds"
        for name in victims:
            self._kill(name)
            self._respawn_without(name, hold)
            self.say(f"fault: killed {name}'s node process (SIGKILL) as the round {rnd} {role}; restarted it")
            self.faults.append({"round": rnd, "fault": "restart_role", "role": role, "org": name, "time": time.time()})
        return True

    def _respawn(self, name: str) -> None:
        self.procs[name] = spawn_node(self.out / "orgs" / name / "node.toml", self.out / "orgs" / name / "node.log",
                                      self.password)

    def step(self, state, info) -> None:
        rnd = state.current_round
        for role, at in list(self.roles):
            if at == rnd and info is not None and self._restart_at_role(role, rnd, info):
                self.roles.remove((role, at))
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
