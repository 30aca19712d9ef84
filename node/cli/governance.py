"""`fedledger govern | propose | vote | execute | proposals`: the members govern the consortium."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from .output import (
    EXIT_CODES_HELP,
    config_opt,
    deployment_opt,
    devnet_opt,
    emit,
    json_opt,
    keystore_opt,
    password_opt,
    poa_opt,
    reflow,
    reporting,
    rpc_opt,
)

DAY = 86400

propose_app = typer.Typer(help="Propose a change for the members to vote on (after bootstrap: `fedledger govern`). "
                               "Your yes vote is counted with the proposal. Create tasks by vote with "
                               "`fedledger task create` as usual: once the consortium is governed it proposes.",
                          no_args_is_help=True, epilog=EXIT_CODES_HELP)


#: The options of every signed governance command: which chain, which key, and --json.
CHAIN_OPTIONS = (("deployment", Optional[Path], deployment_opt), ("rpc", Optional[str], rpc_opt),
                 ("poa", Optional[bool], poa_opt), ("config", Optional[Path], config_opt),
                 ("keystore", Optional[Path], lambda: keystore_opt(
                     "Your organisation's encrypted keystore: a member's (`govern`: the admin's).")),
                 ("password", Optional[str], password_opt),
                 ("devnet", Optional[Path], devnet_opt), ("as_json", bool, json_opt))


def signed(func):
    """Give a command CHAIN_OPTIONS after its own parameters; it receives them as `**chain`."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=make(), annotation=kind)
             for name, kind, make in CHAIN_OPTIONS]
    func.__signature__ = sig.replace(parameters=own + added)
    func.__annotations__ = {**typing.get_type_hints(func), **{name: kind for name, kind, _ in CHAIN_OPTIONS}}
    return func


def _chain_only(chain: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in chain.items() if k != "as_json"}


def _access(sign: bool = True, **chain: Any):
    """The chain client and the consortium's MemberVote; refused while the consortium is in bootstrap."""
    from ..chain.governance import Governance
    from ..errors import InputError
    from ..ops.access import chain_access

    acc = chain_access(sign=sign, **_chain_only(chain))
    gov = Governance.of(acc.client)
    if gov is None:
        raise InputError(f"the consortium is still in bootstrap: its admin {acc.client.admin()} decides alone. "
                         "End bootstrap with `fedledger govern --threshold 2/3` (signed by the admin)")
    return acc, gov


def _rules(threshold: Optional[str], delay: Optional[int], voting_period: Optional[int], current=None):
    from ..chain.governance import Rules, parse_threshold

    return Rules(parse_threshold(threshold) if threshold is not None else current.threshold_bps,
                 delay if delay is not None else current.delay,
                 voting_period if voting_period is not None else current.voting_period).check()


def _proposed(as_json: bool, gov, pid: int, tx) -> None:
    p = gov.proposal(pid)
    emit(as_json, {"ok": True, "proposal": p.to_json(), "tx_hash": tx.tx_hash, "block": tx.block_number,
                   "gas_used": tx.gas_used},
         [f"proposal {pid}: {describe(p)}",
          f"{p.yes} of {p.required} yes votes needed (of {p.electorate} members); members vote with "
          f"`fedledger vote {pid} yes`"])


def _safe(text) -> str:
    """A member-written value shown on one line: control characters escaped, never interpreted."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def describe(p) -> str:
    a = {k: (_safe(v) if isinstance(v, str) else v) for k, v in p.args.items()}
    if p.action == "unknown" or "raw" in a:
        return f"a call the chain cannot decode ({_safe(a.get('raw', ''))[:24]}...)" + (
            f": {_safe(p.description)}" if p.description else "")
    return {
        "add-member": lambda: f"admit {a.get('name')} ({a.get('member')})",
        "remove-member": lambda: f"remove {a.get('member')}",
        "cancel-task": lambda: f"cancel task {a.get('task')}",
        "update-task": lambda: (f"update task {a.get('task')}: {a.get('minParticipants')}-{a.get('maxParticipants')} "
                                f"participants, windows {a.get('submissionWindow')}/{a.get('aggregationWindow')}/"
                                f"{a.get('verificationWindow')}/{a.get('revealWindow')} s, {a.get('maxRounds')} rounds"),
        "create-task": lambda: _task_words(a.get("cfg", {})),
        "cancel-proposal": lambda: f"cancel proposal {a.get('id')}",
        "set-rules": lambda: (f"set the threshold to {a.get('thresholdBps_', 0) / 100:g}% of the members, the delay to "
                              f"{a.get('delay_')} s, the voting period to {a.get('votingPeriod_')} s"),
    }[p.action]() + (f": {_safe(p.description)}" if p.description else "")


def _task_words(c: dict) -> str:
    """Everything a member should see before voting for a task (a task with 0 verifiers trusts its leaders)."""
    return (f"create a task: rule {_safe(c.get('ruleId'))} {_safe(c.get('ruleParams'))}, {c.get('maxRounds')} rounds, "
            f"{c.get('minParticipants')}-{c.get('maxParticipants')} participants, {c.get('verifiersPerRound')} "
            f"verifiers (quorum {c.get('quorum')}), windows {c.get('submissionWindow')}/{c.get('aggregationWindow')}/"
            f"{c.get('verificationWindow')}/{c.get('revealWindow')} s, at most {c.get('maxSamples')} samples per "
            f"update, genesis {_safe(c.get('genesisSha256'))} ({_safe(c.get('genesisCid'))}), spec "
            f"{_safe(c.get('modelSpecCid'))}")


@propose_app.command("add-member", epilog=EXIT_CODES_HELP)
@reflow
@signed
def propose_add(
    member: str = typer.Argument(..., help="The organisation's address (0x...) or keystore file."),
    name: str = typer.Option(..., "--name", help="Its name, 1-64 bytes, never used by another address."),
    description: str = typer.Option("", "--description", help="Why, for the other members (at most 1024 bytes)."),
    **chain: Any,
) -> None:
    """Propose admitting an organisation (members only)."""
    with reporting(chain["as_json"]):
        from ..ops.access import parse_address

        address = parse_address(member)
        _, gov = _access(**chain)
        pid, tx = gov.propose("add-member", [address, name], description)
        _proposed(chain["as_json"], gov, pid, tx)


@propose_app.command("remove-member", epilog=EXIT_CODES_HELP)
@reflow
@signed
def propose_remove(
    member: str = typer.Argument(..., help="The member's address (0x...) or keystore file."),
    description: str = typer.Option("", "--description", help="Why, for the other members (at most 1024 bytes)."),
    **chain: Any,
) -> None:
    """Propose removing a member (members only). Once executed the member submits no more updates;
    it still finishes the round it is in (reveal, lead, verify), so no round is stranded."""
    with reporting(chain["as_json"]):
        from ..ops.access import parse_address

        address = parse_address(member)
        _, gov = _access(**chain)
        pid, tx = gov.propose("remove-member", [address], description)
        _proposed(chain["as_json"], gov, pid, tx)


@propose_app.command("cancel-task", epilog=EXIT_CODES_HELP)
@reflow
@signed
def propose_cancel(
    task: int = typer.Argument(..., min=0, help="The task id."),
    description: str = typer.Option("", "--description", help="Why, for the other members (at most 1024 bytes)."),
    **chain: Any,
) -> None:
    """Propose cancelling a task (members only): its round in progress ends unfinalized (a round that
    cannot finish), and its last finalized global model stays its result."""
    with reporting(chain["as_json"]):
        acc, gov = _access(**chain)
        acc.client.require_task(task)
        pid, tx = gov.propose("cancel-task", [task], description)
        _proposed(chain["as_json"], gov, pid, tx)


@propose_app.command("update-task", epilog=EXIT_CODES_HELP)
@reflow
@signed
def propose_update(
    task: int = typer.Argument(..., min=0, help="The task id."),
    min_participants: Optional[int] = typer.Option(None, "--min-participants", min=1,
                                                   help="Updates a round needs before it can close."),
    max_participants: Optional[int] = typer.Option(None, "--max-participants", min=1,
                                                   help="Updates that close a round at once."),
    submission_window: Optional[int] = typer.Option(None, "--submission-window", min=1, help="Seconds."),
    aggregation_window: Optional[int] = typer.Option(None, "--aggregation-window", min=1, help="Seconds."),
    verification_window: Optional[int] = typer.Option(None, "--verification-window", min=1, help="Seconds."),
    reveal_window: Optional[int] = typer.Option(None, "--reveal-window", min=1, help="Seconds."),
    rounds: Optional[int] = typer.Option(None, "--rounds", min=1, help="Rounds the task runs (not below the current one)."),
    description: str = typer.Option("", "--description", help="Why, for the other members (at most 1024 bytes)."),
    **chain: Any,
) -> None:
    """Propose changing a task's participant bounds, windows or round count (members only); what you
    leave out stays as it is. It can be executed only while the task's current round accepts
    updates, and applies from then on: lowering --min-participants lets a round that cannot close
    (too few members left) close. The rule, its parameters, the verifiers and the quorum never change."""
    with reporting(chain["as_json"]):
        acc, gov = _access(**chain)
        acc.client.require_task(task)
        cfg = acc.client.task_config(task)

        def pick(value, current):
            return current if value is None else value

        args = [task, pick(min_participants, cfg.min_participants), pick(max_participants, cfg.max_participants),
                pick(submission_window, cfg.submission_window), pick(aggregation_window, cfg.aggregation_window),
                pick(verification_window, cfg.verification_window), pick(reveal_window, cfg.reveal_window),
                pick(rounds, cfg.max_rounds)]
        pid, tx = gov.propose("update-task", args, description)
        _proposed(chain["as_json"], gov, pid, tx)


@propose_app.command("cancel-proposal", epilog=EXIT_CODES_HELP)
@reflow
@signed
def propose_cancel_proposal(
    proposal: int = typer.Argument(..., min=0, help="The proposal to withdraw (active or passed)."),
    description: str = typer.Option("", "--description", help="Why, for the other members (at most 1024 bytes)."),
    **chain: Any,
) -> None:
    """Propose withdrawing an active or passed proposal (members only): a stale duplicate, a mistake,
    an admission the consortium no longer wants."""
    with reporting(chain["as_json"]):
        _, gov = _access(**chain)
        gov.proposal(proposal)  # UnknownProposal before anything is sent
        pid, tx = gov.propose("cancel-proposal", [proposal], description)
        _proposed(chain["as_json"], gov, pid, tx)


@propose_app.command("rules", epilog=EXIT_CODES_HELP)
@reflow
@signed
def propose_rules(
    threshold: Optional[str] = typer.Option(None, "--threshold", help="Yes votes a proposal needs, as a share of the "
                                            "members when it was made: 2/3, 75%, 0.8 (more than half, at most all)."),
    delay: Optional[int] = typer.Option(None, "--delay", min=0, help="Seconds between passing and execution."),
    voting_period: Optional[int] = typer.Option(None, "--voting-period", min=60, help="Seconds a proposal stays open."),
    description: str = typer.Option("", "--description", help="Why, for the other members (at most 1024 bytes)."),
    **chain: Any,
) -> None:
    """Propose new voting rules (members only); what you leave out stays as it is."""
    with reporting(chain["as_json"]):
        from ..chain.governance import parse_threshold

        if threshold is not None:
            parse_threshold(threshold)  # a bad value is refused before the chain is asked anything
        _, gov = _access(**chain)
        rules = _rules(threshold, delay, voting_period, gov.rules())
        pid, tx = gov.propose("set-rules", [rules.threshold_bps, rules.delay, rules.voting_period], description)
        _proposed(chain["as_json"], gov, pid, tx)


@signed
def govern(
    threshold: str = typer.Option("2/3", "--threshold", help="Yes votes a proposal needs, as a share of the members "
                                  "when it was made: 2/3, 75%, 0.8 (more than half, at most all)."),
    delay: int = typer.Option(0, "--delay", min=0, help="Seconds a passed proposal waits before it can be executed "
                              "(time for the members to react)."),
    voting_period: int = typer.Option(7 * DAY, "--voting-period", min=60,
                                      help="Seconds a proposal stays open for votes, and a passed one executable."),
    **chain: Any,
) -> None:
    """End bootstrap (admin only, once): deploy the consortium's MemberVote contract and hand it the
    admin role. From then on no single key admits or removes members or creates or cancels tasks:
    members propose (`fedledger propose`), vote (`fedledger vote`) and execute. Needs at least two
    members; the threshold is always more than half of them."""
    with reporting(chain["as_json"]):
        from ..chain.governance import Governance
        from ..ops.access import chain_access

        rules = _rules(threshold, delay, voting_period)
        acc = chain_access(sign=True, **_chain_only(chain))
        gov, txs = Governance.start(acc.client, rules)
        emit(chain["as_json"], {"ok": True, "governance": gov.address, "threshold_bps": rules.threshold_bps,
                       "delay": rules.delay, "voting_period": rules.voting_period,
                       "members": acc.client.member_count(), "gas_used": sum(t.gas_used for t in txs),
                       "block": txs[-1].block_number},
             [f"bootstrap ended in block {txs[-1].block_number}: the members of {acc.deployment.address} now govern it "
              f"through {gov.address}",
              f"a proposal needs {rules.threshold_bps / 100:g}% of the members; executable {rules.delay} s after it "
              f"passes; open for {rules.voting_period} s"])


@signed
def vote(
    proposal: int = typer.Argument(..., min=0, help="The proposal id (`fedledger proposals`)."),
    choice: str = typer.Argument(..., help="yes or no."),
    execute: bool = typer.Option(True, "--execute/--no-execute", help="Execute the proposal at once when this vote "
                                 "passes it and it has no delay."),
    **chain: Any,
) -> None:
    """Vote on an open proposal (members that were members when it was made, once each). The chain
    refuses (exit 4) a second vote (AlreadyVoted), a closed proposal (WrongState) and a member
    admitted after the proposal (NotInElectorate)."""
    with reporting(chain["as_json"]):
        from ..errors import InputError

        if choice.lower() not in ("yes", "no"):
            raise InputError(f"vote yes or no, not {choice!r}")
        _, gov = _access(**chain)
        tx = gov.vote(proposal, choice.lower() == "yes")
        p = gov.proposal(proposal)
        data: dict[str, Any] = {"ok": True, "proposal": p.to_json(), "tx_hash": tx.tx_hash, "executed": False}
        lines = [f"voted {choice.lower()} on proposal {proposal} ({describe(p)}): {p.yes} yes, {p.no} no, "
                 f"{p.required} needed; it is {p.state}"]
        now = gov.ledger.block_timestamp("pending")
        if p.state == "passed" and execute and p.executable_at is not None and p.executable_at <= now:
            done = gov.execute(proposal)
            data.update(executed=True, execute_tx_hash=done.tx_hash)
            data["proposal"] = gov.proposal(proposal).to_json()
            lines.append(f"executed in block {done.block_number}")
        elif p.state == "passed":
            lines.append(f"executable from {p.executable_at} (chain time): `fedledger execute {proposal}`")
        emit(chain["as_json"], data, lines)


@signed
def execute(
    proposal: int = typer.Argument(..., min=0, help="The proposal id."),
    **chain: Any,
) -> None:
    """Execute a passed proposal once its delay is over (members only). The chain refuses (exit 4)
    a proposal that has not passed (WrongState), one still in its delay (TooEarly), a caller that
    is not a member (NotMember), and passes on the ledger's own error when the call fails
    (AlreadyMember, ...)."""
    with reporting(chain["as_json"]):
        _, gov = _access(**chain)
        tx = gov.execute(proposal)
        p = gov.proposal(proposal)
        created = next((e for e in tx.events if e.name == "TaskCreated"), None)
        emit(chain["as_json"], {"ok": True, "proposal": p.to_json(), "tx_hash": tx.tx_hash, "block": tx.block_number,
                       "task": created["task"] if created else None},
             [f"executed proposal {proposal} ({describe(p)}) in block {tx.block_number}"]
             + ([f"task {created['task']} created"] if created else []))


def proposals(
    all_: bool = typer.Option(False, "--all", help="Also list executed, defeated and expired proposals."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), as_json: bool = json_opt(),
) -> None:
    """List the proposals (open and passed ones; --all for every one) with their votes and the
    voting rules. Needs no key."""
    with reporting(as_json):
        _, gov = _access(sign=False, deployment=deployment, rpc=rpc, poa=poa, config=config)
        rules = gov.rules()
        shown = [p for p in gov.proposals() if all_ or p.state in ("active", "passed")]
        lines = [f"governed by {gov.address}: {rules.threshold_bps / 100:g}% of the members, delay {rules.delay} s, "
                 f"voting period {rules.voting_period} s"]
        lines += [f"#{p.id} [{p.state}] {describe(p)} — {p.yes} yes / {p.no} no, {p.required} needed of "
                  f"{p.electorate}" for p in shown] or ["no open proposals"]
        emit(as_json, {"ok": True, "governance": gov.address, "threshold_bps": rules.threshold_bps,
                       "delay": rules.delay, "voting_period": rules.voting_period,
                       "proposals": [p.to_json() for p in shown]}, lines)


def register(app: typer.Typer) -> None:
    for fn, name in ((govern, "govern"), (vote, "vote"), (execute, "execute"), (proposals, "proposals")):
        app.command(name, epilog=EXIT_CODES_HELP)(reflow(fn))
    app.add_typer(propose_app, name="propose")
