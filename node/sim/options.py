"""What `fedledger sim` is asked to do: one options object, declared once.

Each field carries its help line; the `sim` command builds one command-line option per field from
this declaration (`--ipfs-nodes` is `ipfs_nodes`), and `report.json` records the options under the
same names. Local training is `training`: the settings given for it (the rest are the workload's
defaults), with the same names as `TrainingConfig`'s fields. Everything is checked before a single
service starts (`SimOptions.check`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fedledger.aggregation.registry import PRESETS, RULES

from .. import defaults
from ..errors import InputError
from ..training.workloads import WORKLOADS

FAULTS = "Faults and attacks"
#: The points of a round at which `--restart-role` kills a node.
ROLES = ("submitter", "leader", "verifier")


def _opt(default: Any, help: str, *, flags: tuple[str, ...] | None = None, panel: str | None = None,
         lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "flags": flags, "panel": panel, "lo": lo, "hi": hi})


@dataclass
class SimOptions:
    orgs: int = _opt(defaults.SIM_ORGS, "Number of organisations (one node process and IPFS node each).", lo=1, hi=200)
    rounds: int = _opt(defaults.ROUNDS, "Rounds to run.", lo=1)
    workload: str = _opt(defaults.WORKLOAD, f"Built-in workload (model and data): {', '.join(WORKLOADS)}.")
    data: str | None = _opt(None, "Data path for workloads that read files (cifar10-cnn: the directory of CIFAR-10 "
                                  "binary batches).")
    partition: str = _opt(defaults.SIM_PARTITION, "How data is split: iid, dirichlet:ALPHA, shards:K, skew:DEF.")
    rule: str = _opt(defaults.RULE, f"Aggregation rule: {', '.join(RULES)}; or the preset `robust` (FedAvg over the "
                     "updates aligned with the round's consensus, outliers dropped and clipped; docs/aggregation.md).")
    rule_params: str = _opt("{}", 'Rule parameters as JSON, e.g. \'{"beta": 0.1}\' for trimmed_mean.')
    verifiers: int | None = _opt(None, f"Verifiers per round; 0 trusts the leader (default: {defaults.VERIFIERS}, "
                                       "or one fewer than the organisations when they are fewer).", lo=0,
                                 hi=defaults.MAX_VERIFIERS)
    quorum: int | None = _opt(None, "Agreeing verifiers needed to finalize, a majority of them (default: the "
                                    "smallest majority).", lo=0)
    seed: int = _opt(0, "Seed for the genesis model, the data split and local training.", lo=0)
    out: str = _opt(defaults.SIM_OUT, "Run directory: report, plot, chain state and IPFS repos.")
    timeout: float = _opt(defaults.SIM_TIMEOUT, "Give up after this many seconds.", lo=1)
    submission_window: int = _opt(defaults.SIM_SUBMISSION_WINDOW,
                                  "Seconds a round accepts updates before it may close with fewer than all "
                                  "organisations (it closes at once when all have submitted).", lo=1)
    aggregation_window: int = _opt(defaults.AGGREGATION_WINDOW,
                                   "Seconds an elected leader has to publish before anyone may time it out.", lo=1)
    verification_window: int = _opt(defaults.VERIFICATION_WINDOW, "Seconds the verifiers have to attest.", lo=1)
    ipfs_nodes: int | None = _opt(None, "Share this many IPFS nodes among the organisations (organisation i uses "
                                        "node i mod K) to fit large simulations in memory; default: one each.")
    gateways: bool = _opt(True, "Fetch each model first from the IPFS HTTP gateway of the member who stored it "
                                "(hash-checked, falling back to the swarm), or only through each organisation's own "
                                "node and the swarm (bitswap).", flags=("--gateways/--swarm-only",))
    # Faults and attacks, each on real processes:
    restart_org: str | None = _opt(None, "Fault: SIGKILL NAME's node process when round ROUND opens and restart it, "
                                         "e.g. org2@2.", panel=FAULTS)
    drop_org: str | None = _opt(None, "Fault: SIGKILL NAME's node process when round ROUND opens, for good, e.g. "
                                      "org3@2.", panel=FAULTS)
    kill_leader_at: int | None = _opt(None, "Fault: SIGKILL the elected leader of this round before it publishes.",
                                      panel=FAULTS, lo=1)
    byzantine_leader_at: str | None = _opt(None, "Attack: the first leader of these rounds publishes a wrong "
                                                 "aggregate: 3, 2,4 or all.", panel=FAULTS)
    attackers: int = _opt(0, "Attack: the last K organisations send poisoned updates (see --attack).", panel=FAULTS,
                          lo=0)
    attack: str = _opt("signflip", "signflip, scale:X, noise:SIGMA, labelflip, alie (A Little Is Enough), ipm:EPS "
                                   "(inner-product manipulation; the colluders of both pool their honest updates in "
                                   "OUT/collusion), or malformed:KIND (malformed:cycle tries a different kind each "
                                   "round).", panel=FAULTS)
    restart_chain_at: int | None = _opt(None, "Fault: stop the chain node when this round opens and restart it from "
                                              "its state file.", panel=FAULTS, lo=1)
    restart_ipfs: str | None = _opt(None, "Fault: restart NAME's IPFS node when round ROUND opens, e.g. org1@2.",
                                    panel=FAULTS)
    restart_role: str | None = _opt(None, "Fault: SIGKILL a node at a point of its role in round ROUND and restart it "
                                          "at once: submitter@ROUND (once its update is on chain), leader@ROUND "
                                          "(elected, before it publishes), verifier@ROUND (every verifier of the first "
                                          "attempt, before it attests); comma-separate several, e.g. leader@2,"
                                          "verifier@3.", panel=FAULTS)
    byzantine_shift: float = _opt(0.05, "Attack: what a byzantine leader (--byzantine-leader-at) adds to every weight; "
                                        "small values probe the tolerance of rules verified within one.",
                                  panel=FAULTS, lo=0)
    #: Local training settings given (TrainingConfig's names); the others are the workload's defaults.
    training: dict[str, Any] = field(default_factory=dict, metadata={"cli": False})

    def check(self) -> None:
        """Refuse what cannot run, before anything starts: `InputError` naming the option."""
        from dataclasses import fields

        for f in fields(self):
            lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
            value = getattr(self, f.name)
            if value is None or (lo is None and hi is None):
                continue
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
                raise InputError(f"--{f.name.replace('_', '-')} must be {bounds}, got {value}")
        if self.workload not in WORKLOADS:
            raise InputError(f"--workload {self.workload!r} is not a built-in workload: {', '.join(WORKLOADS)}")
        if self.rule not in RULES and self.rule not in PRESETS:
            raise InputError(f"--rule {self.rule!r} is not a rule: {', '.join(RULES)} (presets: {', '.join(PRESETS)})")
        from fedledger.aggregation.registry import encode_params

        rule, params = self.resolved_rule()
        try:
            encode_params(rule, params)
        except ValueError as exc:
            raise InputError(f"--rule-params: {exc}") from exc
        if self.verifiers_per_round >= self.orgs:
            raise InputError(f"--verifiers {self.verifiers_per_round} needs at least {self.verifiers_per_round + 1} "
                             f"organisations (a leader and its verifiers); --orgs is {self.orgs}")
        self.plan().check()
        if self.ipfs_nodes is not None and not 1 <= self.ipfs_nodes <= self.orgs:
            raise InputError(f"--ipfs-nodes must be between 1 and --orgs ({self.orgs}), got {self.ipfs_nodes}")
        from ..training.partition import check_partition

        check_partition(self.workload, self.partition, self.orgs, self.seed)
        self.resolved_training()
        names = self.names
        for flag in ("restart_org", "drop_org", "restart_ipfs"):
            parse_fault(getattr(self, flag), names, self.rounds, flag)
        parse_rounds(self.byzantine_leader_at, self.rounds)
        parse_roles(self.restart_role, self.rounds)

    @property
    def names(self) -> list[str]:
        """The organisations' names: org1 .. orgN."""
        return [f"org{i + 1}" for i in range(self.orgs)]

    @property
    def verifiers_per_round(self) -> int:
        return self.verifiers if self.verifiers is not None else min(defaults.VERIFIERS, max(self.orgs - 1, 0))

    def plan(self):
        """What the simulation's task fixes on chain: every organisation takes part in a round,
        which closes as soon as all have submitted."""
        from ..ops.tasks import TaskPlan  # here, not at the top: the chain client costs every --help a second

        k = self.verifiers_per_round
        rule, params = self.resolved_rule()
        return TaskPlan(rule=rule, rule_params=params,
                        min_participants=min(self.orgs, max(k + 1, (self.orgs + 1) // 2)), max_participants=self.orgs,
                        submission_window=self.submission_window, aggregation_window=self.aggregation_window,
                        verification_window=self.verification_window, verifiers=k, quorum=self.quorum,
                        rounds=self.rounds)

    def resolved_rule(self) -> tuple[str, dict[str, Any]]:
        """The rule id and parameters the task stores: a preset (`--rule robust`) expanded, with
        --rule-params overriding its values."""
        from fedledger.aggregation.registry import resolve_rule

        return resolve_rule(self.rule, self.rule_params_dict())

    def rule_params_dict(self) -> dict[str, Any]:
        try:
            params = json.loads(self.rule_params)
        except ValueError as exc:
            raise InputError(f"--rule-params is not valid JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise InputError("--rule-params must be a JSON object, e.g. '{\"beta\": 0.1}'")
        return params

    def resolved_training(self):
        """The TrainingConfig every node runs: the workload's defaults, the settings given, the seed."""
        base = WORKLOADS[self.workload].default_config
        return base.overridden({**self.training, "seed": self.seed})


def _round_of(spec: str, text: str, rounds: int, flag: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= rounds:
        raise InputError(f"--{flag.replace('_', '-')} {spec!r}: the round must be 1 to --rounds ({rounds})")
    return int(text)


def parse_fault(spec: str | None, names: list[str], rounds: int, flag: str = "fault") -> tuple[str, int] | None:
    """NAME@ROUND, NAME one of `names`: (name, round), or None for no fault."""
    if not spec:
        return None
    name, at, rnd = spec.partition("@")
    if name not in names or not at:
        raise InputError(f"--{flag.replace('_', '-')} {spec!r}: expected NAME@ROUND with NAME one of "
                         f"{names[0]}..{names[-1]}")
    return name, _round_of(spec, rnd, rounds, flag)


def parse_rounds(spec: str | None, rounds: int) -> list[int]:
    """'all' or a comma-separated list of rounds."""
    if not spec:
        return []
    if spec == "all":
        return list(range(1, rounds + 1))
    return [_round_of(spec, x.strip(), rounds, "byzantine_leader_at") for x in spec.split(",")]


def parse_roles(spec: str | None, rounds: int) -> list[tuple[str, int]]:
    """ROLE@ROUND[,ROLE@ROUND...] with ROLE one of `ROLES`: [(role, round), ...]."""
    out = []
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        role, at, rnd = part.strip().partition("@")
        if role not in ROLES or not at:
            raise InputError(f"--restart-role {part!r}: expected ROLE@ROUND with ROLE one of {', '.join(ROLES)}")
        out.append((role, _round_of(part, rnd, rounds, "restart_role")))
    return out
