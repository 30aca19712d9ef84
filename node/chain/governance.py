"""The members' vote (contracts/MemberVote.sol): ending bootstrap, proposals, ballots, execution.

A consortium starts in bootstrap: the deployer's key is FedLedger's admin and admits the first
members. `Governance.start` deploys MemberVote and hands it the admin role (two steps: offered by
the admin, accepted by the contract); from then on every admission, removal, task creation or
cancellation, and every change of the vote's own rules, is a proposal the members vote on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from eth_utils import to_checksum_address

from ..errors import InputError
from .abi import plain
from .client import ChainClient, TxResult
from .contracts import GOVERNANCE_CONTRACT, Artifact, load_artifact

STATES = ("none", "active", "passed", "executed", "defeated", "expired")

# What a proposal may do: the command-line word, the contract function it calls, and on which contract.
ACTIONS = {
    "add-member": ("addMember", "ledger"),
    "remove-member": ("removeMember", "ledger"),
    "create-task": ("createTask", "ledger"),
    "cancel-task": ("cancelTask", "ledger"),
    "update-task": ("updateTask", "ledger"),
    "set-rules": ("setRules", "vote"),
}


@dataclass(frozen=True)
class Rules:
    threshold_bps: int  # yes votes needed, in basis points of the members when the proposal was made
    delay: int  # seconds between passing and execution
    voting_period: int  # seconds a proposal stays open (and a passed one executable after its delay)

    def check(self) -> "Rules":
        if not 5001 <= self.threshold_bps <= 10000:
            raise InputError(f"the threshold must be more than half and at most all of the members "
                             f"(5001-10000 basis points), not {self.threshold_bps}")
        if self.delay < 0 or self.delay >= 2**32:
            raise InputError(f"the delay must be 0 to 2^32-1 seconds, not {self.delay}")
        if not 60 <= self.voting_period < 2**32:
            raise InputError(f"the voting period must be at least 60 seconds, not {self.voting_period}")
        return self


def parse_threshold(text: str) -> int:
    """'2/3', '67%' or '0.67' as basis points. A fraction rounds down (2/3 -> 6666): with at most
    1024 members, ceil(n * 6666 / 10000) is exactly the smallest count of at least two thirds."""
    raw = text.strip()
    try:
        if "/" in raw:
            num, den = (int(x) for x in raw.split("/", 1))
            if den <= 0:
                raise ValueError
            return num * 10000 // den
        if raw.endswith("%"):
            return round(float(raw[:-1]) * 100)
        return round(float(raw) * 10000)
    except ValueError:
        raise InputError(f"--threshold {text!r}: write a fraction of the members such as 2/3, 67% or 0.67") from None


@dataclass(frozen=True)
class Proposal:
    id: int
    state: str
    action: str
    args: dict[str, Any]
    description: str
    proposer: str
    electorate: int
    required: int
    yes: int
    no: int
    created_at: int
    passed_at: int
    executable_at: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _with_ledger_abi(ledger: ChainClient) -> Artifact:
    """MemberVote's artifact that also knows the ledger's events and errors: an executed proposal's
    receipt carries the ledger's events, and a failed one reverts with the ledger's own error."""
    own = load_artifact(GOVERNANCE_CONTRACT)
    borrowed = [i for i in ledger.artifact.abi if i["type"] in ("event", "error")
                and not any(j["type"] == i["type"] and j["name"] == i["name"] for j in own.abi)]
    return replace(own, abi=own.abi + borrowed)


class Governance:
    """MemberVote for one FedLedger, signing with the ledger client's account."""

    def __init__(self, ledger: ChainClient, address: str):
        self.ledger = ledger
        self.client = ChainClient(ledger.rpc_url, address, ledger.account, artifact=_with_ledger_abi(ledger),
                                  timeout=ledger.request_timeout, poll_latency=ledger.poll_latency)
        self.address = self.client.address

    @classmethod
    def start(cls, ledger: ChainClient, rules: Rules) -> tuple["Governance", list[TxResult]]:
        """End bootstrap: deploy MemberVote under `rules` and hand it the admin role of `ledger`,
        whose admin this client's account must be. Refused before anything is deployed when the
        consortium has fewer than two members or the account is not the admin."""
        rules.check()
        if ledger.member_count() < 2:
            raise InputError(f"the consortium has {ledger.member_count()} member(s): admit at least two before "
                             "handing it to a vote (one key would still decide alone)")
        admin = ledger.admin()
        if admin != ledger.sender:
            raise InputError(f"only the admin can end bootstrap: the admin is {admin}, this key is {ledger.sender}")
        deployer = ChainClient(ledger.rpc_url, None, ledger.account, artifact=load_artifact(GOVERNANCE_CONTRACT),
                               timeout=ledger.request_timeout)
        deployed = deployer.deploy(ledger.address, rules.threshold_bps, rules.delay, rules.voting_period)
        gov = cls(ledger, deployer.address)
        offered = ledger.transfer_admin(gov.address)
        accepted = gov.client._transact("acceptAdmin")
        return gov, [deployed, offered, accepted]

    @classmethod
    def of(cls, ledger: ChainClient) -> "Governance | None":
        """The MemberVote that is `ledger`'s admin, or None while the consortium is in bootstrap."""
        admin = ledger.admin()
        if not ledger.has_code(admin):
            return None
        gov = cls(ledger, admin)
        try:
            if gov.client._view("ledger") != ledger.address:
                return None
        except Exception:  # a contract admin that is not a MemberVote
            return None
        return gov

    # ------------------------------------------------------------ transactions

    def propose(self, action: str, args: list[Any], description: str = "") -> tuple[int, TxResult]:
        if action not in ACTIONS:
            raise InputError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        fn_name, where = ACTIONS[action]
        if fn_name in ("addMember", "removeMember"):
            args = [to_checksum_address(args[0]), *args[1:]]
        contract = self.ledger.contract if where == "ledger" else self.client.contract
        data = contract.encode_abi(fn_name, args=args)
        tx = self.client._transact("propose", contract.address, data, description)
        return tx.event("Proposed")["id"], tx

    def vote(self, proposal: int, support: bool) -> TxResult:
        return self.client._transact("vote", proposal, support)

    def execute(self, proposal: int) -> TxResult:
        return self.client._transact("execute", proposal)

    # ------------------------------------------------------------------ views

    def rules(self) -> Rules:
        view = self.client._view
        return Rules(view("thresholdBps"), view("delay"), view("votingPeriod"))

    def count(self) -> int:
        return self.client._view("proposalCount")

    def proposal(self, proposal: int) -> Proposal:
        raw = self.client._view("proposal", proposal)
        state = STATES[self.client._view("state", proposal)]
        (proposer, target, created, _ends, passed, executable, electorate, required, yes, no, _executed, data,
         description) = raw
        contract = self.ledger.contract if target == self.ledger.address else self.client.contract
        fn, params = contract.decode_function_input(data)
        action = next(word for word, (name, _) in ACTIONS.items() if name == fn.fn_name)
        return Proposal(
            id=proposal, state=state, action=action,
            args={k: (to_checksum_address(v) if isinstance(v, str) and v.startswith("0x") and len(v) == 42
                      else plain(k, v)) for k, v in params.items()},
            description=description, proposer=proposer, electorate=electorate, required=required, yes=yes, no=no,
            created_at=created, passed_at=passed, executable_at=executable if passed else None,
        )

    def proposals(self) -> list[Proposal]:
        return [self.proposal(i) for i in range(self.count())]
