"""Every default and limit of fedledger, once.

Commands, configs, help strings, validators and docs read these names; nothing else writes the
numbers. Lists of names (workloads, aggregation rules, partitions) are not here: they live in
their registries (`training.workloads.WORKLOADS`, `fedledger.aggregation.RULES`) and help strings
read them from there.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- a task (on chain)

#: Seconds a round accepts updates before it may close with fewer than every member.
SUBMISSION_WINDOW = 60
#: Seconds an elected leader has to publish its aggregate before anyone may time it out.
AGGREGATION_WINDOW = 60
#: Seconds the verifiers of an attempt have to attest.
VERIFICATION_WINDOW = 60
#: Seconds the participants of a closed round have to reveal the secrets that seed the election.
REVEAL_WINDOW = 30
#: Verifiers per round (0 trusts the leader); the quorum defaults to a majority of them, so with
#: three no single verifier can veto or pass an aggregate.
VERIFIERS = 3
#: The most samples one update may claim (the contract's limit: no sum of claims can overflow).
MAX_SAMPLES = 2**32
#: The contract's limit on verifiers per round (FedLedger.MAX_VERIFIERS).
MAX_VERIFIERS = 16
#: Rounds a task runs.
ROUNDS = 5
#: The aggregation rule of a new task.
RULE = "fedavg"



def majority(verifiers: int) -> int:
    """The default quorum: the smallest majority of the verifiers (0 without verifiers)."""
    return verifiers // 2 + 1 if verifiers > 0 else 0


# --------------------------------------------------------------------------- the simulation

#: Organisations `fedledger sim` plays.
SIM_ORGS = 4
#: The simulation's submission window: a round with every organisation in closes at once, so
#: this only bounds the wait for an absentee; node start-up (round 1) needs the slack.
SIM_SUBMISSION_WINDOW = 120
#: How `fedledger sim` splits the workload's data among organisations.
SIM_PARTITION = "dirichlet:0.5"
#: Seconds `fedledger sim` waits for the whole federation before it gives up.
SIM_TIMEOUT = 1800.0
#: Where `fedledger sim` writes its run directory.
SIM_OUT = "runs/sim"

# --------------------------------------------------------------------------- a node

#: The built-in workload (model + data) of a node config or a simulation.
WORKLOAD = "digits-mlp"
#: How a node's share of a built-in data set is drawn, outside simulations.
PARTITION = "iid"
#: Seconds between a node's block-number checks while no WebSocket pushes blocks.
POLL_SECONDS = 0.05
#: Seconds a node or the audit allows one blob fetch before it counts as unavailable.
FETCH_TIMEOUT = 60.0
#: Parallel downloads of a node.
FETCH_WORKERS = 8
#: Models up to this many MB are prefetched by every member as each update is announced; 0: off.
#: Off by default: with ten organisations on two cores the n^2 transfers cost more CPU than they
#: saved (rounds of 4.6-7.0 s against 2.2-3.1 s without; docs/bench.md).
PREFETCH_MAX_MB = 0.0

# --------------------------------------------------------------------------- operator commands

#: A node's own chain node and IPFS node, when nothing else is said.
RPC_URL = "http://127.0.0.1:8545"
IPFS_API = "http://127.0.0.1:5001"
#: The run directory of the local devnet.
DEVNET_DIR = "runs/devnet"
#: The deployment file every member is handed.
DEPLOYMENT_FILE = "deployment.json"

# --------------------------------------------------------------------------- the audit

#: Parallel blob fetches of the audit.
AUDIT_FETCH_WORKERS = 4
#: A mismatching aggregate is diagnosed by leaving each update out, up to this many updates.
LEAVE_ONE_OUT_MAX = 16
