"""The members' vote (contracts/MemberVote.sol): ending bootstrap, proposals, ballots, execution.

A consortium starts in bootstrap: the deployer's key is FedLedger's admin and admits the first
members. `Governance.start` deploys MemberVote and hands it the admin role (two steps: offered by
the admin, accepted by the contract); from then on every admission, removal, task creation or
cancellation, and every change of the vote's own rules, is a proposal the members vote on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from ..errors import InputError
from .abi import abi_type, plain
from .client import ChainClient, TxResult
from .contracts import GOVERNANCE_CONTRACT, Artifact, load_artifact

STATES = ("none", "active", "passed", "executed", "defeated", "expired", "cancelled")
MAX_DELAY = 30 * 86400  # MemberVote.MAX_DELAY
MAX_VOTING_PERIOD = 365 * 86400  # MemberVote.MAX_VOTING_PERIOD

# What a proposal may do: the command-line word, the contract function it calls, and on which contract.
ACTIONS = {
    "add-member": ("addMember", "ledger"),
    "remove-member": ("removeMember", "ledger"),
    "create-task": ("createTask", "ledger"),
    "cancel-task": ("cancelTask", "ledger"),
    "update-task": ("updateTask", "ledger"),
    "set-rules": ("setRules", "vote"),
    "cancel-proposal": ("cancelProposal", "vote"),
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
        if not 0 <= self.delay <= MAX_DELAY:
            raise InputError(f"the delay must be 0 to {MAX_DELAY} seconds (30 days), not {self.delay}: a longer "
                             "one could freeze the vote for good")
        if not 60 <= self.voting_period <= MAX_VOTING_PERIOD:
            raise InputError(f"the voting period must be 60 to {MAX_VOTING_PERIOD} seconds (a year), not "
                             f"{self.voting_period}")
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


def _selector(contract, name: str) -> bytes:
    item = next(i for i in contract.abi if i.get("type") == "function" and i.get("name") == name)
    return keccak(text=f"{name}({','.join(abi_type(x) for x in item['inputs'])})")[:4]


#: MemberVote.Proposal with its strings read as bytes (a description need not be UTF-8).
PROPOSAL_TUPLE = "(address,address,uint64,uint64,uint64,uint64,uint64,uint16,uint16,uint16,uint16,bool,bool,bytes,bytes)"


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
        # MemberVote's code, its one immutable (the ledger's address) masked: a look-alike with a
        # backdoor is not taken for the members' vote.
        code = bytes(ledger._rpc(lambda: ledger.w3.eth.get_code(to_checksum_address(admin))))
        masked = code.replace(bytes(12) + bytes.fromhex(ledger.address[2:]), bytes(32))
        if masked != bytes.fromhex(load_artifact(GOVERNANCE_CONTRACT).deployed_bytecode[2:]):
            return None
        return cls(ledger, admin)

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
        """Proposal `proposal`, decoded defensively: any member can propose malformed call data or a
        description that is not UTF-8, and one such proposal must not hide the others."""
        state = STATES[self.client._view("state", proposal)]
        call = "0x" + (_selector(self.client.contract, "proposal") + abi_encode(["uint256"], [proposal])).hex()
        raw = bytes.fromhex(self.ledger._raw("eth_call", [{"to": self.address, "data": call}, "latest"])[2:])
        (proposer, target, created, _ends, passed, executable, _admissions, electorate, required, yes, no, _executed,
         _cancelled, data, description) = abi_decode([PROPOSAL_TUPLE], raw)[0]
        target = to_checksum_address(target)
        contract = self.ledger.contract if target == self.ledger.address else self.client.contract
        selector = bytes(data[:4])
        action = next((word for word, (name, where) in ACTIONS.items()
                       if (where == "ledger") == (target == self.ledger.address)
                       and _selector(contract, name) == selector), "unknown")
        try:
            fn, params = contract.decode_function_input(bytes(data))
            args = {k: plain(k, v) for k, v in params.items()}
        except Exception:  # data the function cannot decode: the chain would refuse to execute it too
            args = {"raw": bytes(data).hex()}
        return Proposal(
            id=proposal, state=state, action=action, args=args,
            description=bytes(description).decode("utf-8", errors="replace"), proposer=to_checksum_address(proposer),
            electorate=electorate, required=required, yes=yes, no=no, created_at=created, passed_at=passed,
            executable_at=executable if passed else None,
        )

    def proposals(self) -> list[Proposal]:
        return [self.proposal(i) for i in range(self.count())]
