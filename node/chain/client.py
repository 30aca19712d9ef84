"""The chain client: one typed method per FedLedger call, signed locally, reverts decoded.

Every transaction is signed in this process with the member's own key (eth-account); the node
never asks the chain node to sign. Reverts surface as `ContractRevert` naming the custom error
and its arguments. Events come back decoded, in chain order: they are the lineage record.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware

from ..errors import ChainError, ContractRevert, InputError, TransactionRejected
from ..protocol.inclusion import bitmap
from ..protocol.types import (
    MemberView,
    Phase,
    RoundInfo,
    TaskConfig,
    TaskState,
    to_bytes32,
)
from .contracts import Artifact, load_artifact
from .abi import abi_type as _abi_type
from .abi import plain as _plain
from .secrets import ElectionSecrets
from .transport import LeanHTTPProvider


log = logging.getLogger("fedledger.chain")

#: Gas limits never below these: the path of these calls depends on what lands just before them
#: (the attestation reaching the quorum finalizes the round and opens the next one; a timeout can
#: reopen a round; the submission that fills a round also closes it and elects). Unused gas is not
#: charged.
GAS_FLOOR = {"attest": 300_000, "timeout": 300_000, "publishAggregate": 300_000, "closeSubmissions": 300_000,
             "submitUpdate": 300_000, "reveal": 300_000, "closeReveals": 300_000}


@dataclass(frozen=True)
class Event:
    """A decoded contract event; bytes32 values are given as lowercase hex, rule ids as text."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int

    def __getitem__(self, key: str) -> Any:
        return self.args[key]


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int
    events: list[Event] = field(default_factory=list)

    def event(self, name: str) -> Event:
        for ev in self.events:
            if ev.name == name:
                return ev
        raise KeyError(f"transaction {self.tx_hash} emitted no {name} event")


# --------------------------------------------------------------------------- client


class ChainClient:
    """FedLedger over JSON-RPC. `account` signs; without one the client is read-only."""

    def __init__(
        self,
        rpc_url: str,
        address: str | None = None,
        account: LocalAccount | None = None,
        *,
        poa: bool = False,
        timeout: float = 60.0,
        artifact: Artifact | None = None,
        poll_latency: float = 0.25,
    ):
        self.rpc_url = rpc_url
        self.w3 = Web3(LeanHTTPProvider(rpc_url, timeout=timeout))
        # web3's validation middleware asks the node for its chain id before every call (measured:
        # a third of a polling node's chain time); the chain id is checked once against the
        # deployment and signed into every transaction. Names are never resolved through ENS.
        for name in ("validation", "ens_name_to_address"):
            self.w3.middleware_onion.remove(name)
        if poa:
            self.w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        self.artifact = artifact or load_artifact()
        self.account = account
        self.request_timeout = timeout
        self.poll_latency = poll_latency
        self._lock = threading.Lock()
        self.secrets = ElectionSecrets(self)
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._errors = self._error_table(self.artifact.abi)
        view = next((i for i in self.artifact.abi if i.get("name") == "memberView"), {"inputs": [], "outputs": []})
        self._member_view_selector = keccak(text=f"memberView({','.join(_abi_type(i) for i in view['inputs'])})")[:4]
        self._member_view_outputs = [_abi_type(o) for o in view["outputs"]]
        self.address = to_checksum_address(address) if address else None
        self.contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi) if address else None
        self._event_by_topic, self.event_topics = {}, {}  # topic 0 -> event name, and back
        self._event_layout: dict[str, list[tuple[str, str, bool]] | None] = {}
        self._indexed: dict[str, list[str]] = {}  # event name -> its indexed arguments, in order
        for item in self.artifact.abi:
            if item["type"] == "event":
                sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                self._event_by_topic[keccak(text=sig)] = item["name"]
                self.event_topics[item["name"]] = keccak(text=sig)
                self._indexed[item["name"]] = [i["name"] for i in item["inputs"] if i.get("indexed")]
                # Events without structs are decoded here with eth_abi: web3's process_log took a sixth
                # of a leader's CPU. Indexed arguments (all static) first, as web3 gives them.
                flat = not any(i["type"].startswith("tuple") for i in item["inputs"])
                inputs = sorted(item["inputs"], key=lambda i: not i.get("indexed"))
                self._event_layout[item["name"]] = [(i["name"], _abi_type(i), bool(i.get("indexed")))
                                                    for i in inputs] if flat else None

    # ----------------------------------------------------------------- basics

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc(lambda: self.w3.eth.chain_id)
        return self._chain_id

    @property
    def sender(self) -> str:
        if self.account is None:
            raise ChainError("this client has no account: load a keystore to send transactions")
        return self.account.address

    def block_number(self) -> int:
        return int(self._raw("eth_blockNumber", []), 16)

    def _raw(self, method: str, params: list) -> Any:
        """One JSON-RPC call straight through the provider, without web3's method machinery: for
        the calls a node makes on every poll and every block."""
        resp = self._rpc(lambda: self.w3.provider.make_request(method, params))
        if "error" in resp:
            raise ChainError(f"{method}: the chain node answered {resp['error']}")
        return resp["result"]

    def block_timestamp(self, block: int | str = "latest") -> int:
        return self._rpc(lambda: self.w3.eth.get_block(block)["timestamp"])

    def block_hash(self, number: int) -> str:
        """The hash of block `number`, as hex."""
        return bytes(self._rpc(lambda: self.w3.eth.get_block(number)["hash"])).hex()

    def gas_used(self, tx_hash: str) -> int:
        """The gas a mined transaction used."""
        return self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))["gasUsed"]

    def gas_price(self) -> int:
        return self._rpc(lambda: self.w3.eth.gas_price)

    def balance(self, address: str) -> int:
        """The ether (in wei) an account holds."""
        return self._rpc(lambda: self.w3.eth.get_balance(to_checksum_address(address)))

    def has_code(self, address: str | None = None) -> bool:
        """Whether a contract lives at `address` (default: this client's contract)."""
        target = to_checksum_address(address or self._need_contract().address)
        return bool(self._rpc(lambda: self.w3.eth.get_code(target)))

    def send_ether(self, to: str, wei: int, timeout: float | None = None) -> str:
        """Send `wei` from this client's account to `to` (gas for a member on a chain that charges
        it); returns the transaction hash. Shares the nonce bookkeeping of the contract calls."""
        sender = self.sender
        w3 = self.w3
        with self._lock:
            if self._nonce is None:
                self._nonce = self._rpc(lambda: w3.eth.get_transaction_count(sender, "pending"))
            tx = {"to": to_checksum_address(to), "value": int(wei), "gas": 21000,
                  "gasPrice": self._rpc(lambda: w3.eth.gas_price), "nonce": self._nonce, "chainId": self.chain_id}
            signed = self.account.sign_transaction(tx)
            try:
                tx_hash = self._rpc(lambda: w3.eth.send_raw_transaction(signed.raw_transaction))
            except ChainError:
                raise
            except Exception as exc:  # web3's RPC error: insufficient funds and the like
                self._nonce = None
                raise TransactionRejected(f"sending ether was refused by the chain node: {exc}") from exc
            self._nonce += 1
        receipt = self.wait_for_receipt(tx_hash, timeout or self.request_timeout, "sending ether")
        if receipt["status"] != 1:
            raise TransactionRejected(f"sending ether to {to} was refused by the chain node (status 0)")
        return "0x" + bytes(tx_hash).hex()

    def _rpc(self, fn):
        try:
            return fn()
        except (OSError, TimeExhausted) as exc:
            raise ChainError(f"chain node at {self.rpc_url} did not answer: {exc}") from exc
        except Exception as exc:  # requests' ConnectionError is not an OSError subclass everywhere
            if "Connection" in type(exc).__name__ or "Timeout" in type(exc).__name__:
                raise ChainError(f"chain node at {self.rpc_url} did not answer: {exc}") from exc
            raise

    def _need_contract(self):
        if self.contract is None:
            raise ChainError("no contract address: pass the deployment file or --contract")
        return self.contract

    # ------------------------------------------------------------------ deploy

    def deploy(self, *args) -> TxResult:
        """Deploy this client's contract (FedLedger: with its account as admin); the client then points at it."""
        factory = self.w3.eth.contract(abi=self.artifact.abi, bytecode=self.artifact.bytecode)
        result, receipt = self._send(factory.constructor(*args), "constructor")
        self.address = receipt["contractAddress"]
        self.contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        return result

    # ------------------------------------------------------------ transactions

    def add_member(self, member: str, name: str) -> TxResult:
        return self._transact("addMember", to_checksum_address(member), name)

    def remove_member(self, member: str) -> TxResult:
        return self._transact("removeMember", to_checksum_address(member))

    def transfer_admin(self, new_admin: str) -> TxResult:
        """Offer the admin role to `new_admin`; it is theirs once they call acceptOwnership."""
        return self._transact("transferOwnership", to_checksum_address(new_admin))

    def create_task(self, config: TaskConfig) -> tuple[int, TxResult]:
        result = self._transact("createTask", config.to_tuple())
        return result.event("TaskCreated")["task"], result

    def submit_update(
        self, task: int, round_: int, parent_sha256: str, cid: str, sha256: str, num_samples: int,
        commitment: str | bytes | None = None, secret: str | bytes | None = None, epoch: int = 0,
    ) -> TxResult:
        """Submit an update to epoch `epoch` of the round. It opens this member's pending commitment
        and commits to its secret for this round and epoch (chain/secrets.py), both derived from its
        key, so they come out the same after a restart. Tests may pass either."""
        next_secret = None
        if commitment is None:
            next_secret, commitment = self.secrets.next_commitment(task, round_, "update", epoch)
        if secret is None:
            secret = self.secrets.opening(task, round_)
        return self._committing(task, commitment, next_secret, "submitUpdate", task, round_, to_bytes32(parent_sha256),
                                cid, to_bytes32(sha256), num_samples, to_bytes32(commitment), to_bytes32(secret))

    def reveal(self, task: int, round_: int, secret: str | bytes | None = None,
               next_commitment: str | bytes | None = None) -> TxResult:
        """Reveal the secret this member's update of `round_` committed to (a round where nobody had
        one to open), committing to its next."""
        next_secret = None
        if next_commitment is None:
            next_secret, next_commitment = self.secrets.next_commitment(task, round_, "reveal")
        if secret is None:
            secret = self.secrets.opening(task, round_)
        return self._committing(task, next_commitment, next_secret, "reveal", task, round_, to_bytes32(secret),
                                to_bytes32(next_commitment))

    def _committing(self, task: int, commitment, secret: bytes | None, fn_name: str, *args) -> TxResult:
        try:
            result = self._transact(fn_name, *args)
        except Exception:
            self.secrets.forget(task)  # whatever the chain holds now, read it again next time
            raise
        self.secrets.committed(task, to_bytes32(commitment), secret)
        return result

    def pending_commitment(self, task: int, who: str | None = None) -> str:
        """The commitment `who`'s (default: this member's) next update or reveal must open, as hex
        (zeros: none yet)."""
        return self._view("pendingCommitment", task, to_checksum_address(who or self.sender)).hex()

    def close_submissions(self, task: int, round_: int) -> TxResult:
        return self._transact("closeSubmissions", task, round_)

    def close_reveals(self, task: int, round_: int) -> TxResult:
        return self._transact("closeReveals", task, round_)

    def publish_aggregate(self, task: int, round_: int, attempt: int, cid: str, sha256: str,
                          included: bytes | None = None, unavailable: bytes | None = None) -> TxResult:
        """Publish the aggregate of `attempt` and the bitmaps of the updates in it (`included`)
        and those this leader could not fetch in time (`unavailable`): protocol.inclusion. Without
        them: every participant's update, none unavailable."""
        if included is None or unavailable is None:
            n = len(self.participants(task, round_))
            included = bitmap(range(n), n) if included is None else included
            unavailable = bitmap([], n) if unavailable is None else unavailable
        return self._transact("publishAggregate", task, round_, attempt, cid, to_bytes32(sha256), bytes(included),
                              bytes(unavailable))

    def attest(self, task: int, round_: int, attempt: int, agree: bool, computed_sha256: str) -> TxResult:
        return self._transact("attest", task, round_, attempt, agree, to_bytes32(computed_sha256))

    def timeout(self, task: int, round_: int) -> TxResult:
        return self._transact("timeout", task, round_)

    # ------------------------------------------------------------------- views

    def admin(self) -> str:
        return self._view("owner")

    def is_member(self, who: str) -> bool:
        return self._view("isMember", to_checksum_address(who))

    def member_info(self, who: str) -> tuple[bool, str, int]:
        return tuple(self._view("memberInfo", to_checksum_address(who)))

    def member_count(self) -> int:
        return self._view("memberCount")

    def task_count(self) -> int:
        return self._view("taskCount")

    def task_config(self, task: int) -> TaskConfig:
        return TaskConfig.from_tuple(self._view("taskConfig", task))

    def require_task(self, task: int) -> None:
        """`InputError` unless `task` exists: a wrong id is the user's input, not the chain refusing."""
        if not 0 <= task < (count := self.task_count()):
            have = "no tasks yet" if count == 0 else f"tasks 0-{count - 1}" if count > 1 else "task 0 only"
            raise InputError(f"there is no task {task} on this chain ({have}; `fedledger task list` shows them)")

    def task_state(self, task: int, block: int | str = "latest") -> TaskState:
        """The task's state, now or as it stood at `block`."""
        completed, current, sha, cid = self._view("taskState", task, block=block)
        return TaskState(completed, current, bytes(sha).hex(), cid)

    def round_info(self, task: int, round_: int) -> RoundInfo:
        return self._round_info(self._view("roundInfo", task, round_))

    def member_view(self, task: int, member: str) -> MemberView:
        """One call for what a node reads on every new block: the task state, its current
        round, whether `member` submitted to it and whether it verifies the current attempt."""
        # Encoded and decoded with eth_abi (web3's contract-call machinery was a quarter of a node's
        # CPU); anything unusual (an unknown task reverts) takes the ordinary path for its error.
        data = "0x" + (self._member_view_selector + abi_encode(["uint256", "address"], [task, member])).hex()
        try:
            out = self._raw("eth_call", [{"to": self._need_contract().address, "data": data}, "latest"])
            values = abi_decode(self._member_view_outputs, bytes.fromhex(out[2:]))
        except (ChainError, ValueError, TypeError):
            values = self._view("memberView", task, to_checksum_address(member))
        completed, current, sha, cid, rnd, submitted, revealed, verifier = values
        return MemberView(TaskState(completed, current, bytes(sha).hex(), cid), self._round_info(rnd),
                          submitted, revealed, verifier)

    @staticmethod
    def _round_info(v) -> RoundInfo:
        leader = to_checksum_address(v[12]) if int(v[12], 16) != 0 else None
        return RoundInfo(
            phase=Phase(v[0]),
            epoch=v[1],
            attempt=v[2],
            count=v[3],
            agrees=v[4],
            disagrees=v[5],
            deadline=v[6],
            total_samples=v[7],
            seed=bytes(v[8]).hex(),
            inputs_digest=bytes(v[9]).hex(),
            aggregate_sha256=bytes(v[10]).hex(),
            aggregate_cid=v[11],
            leader=leader,
            reveals=v[13],
            included_hash=bytes(v[14]).hex(),
        )

    def participants(self, task: int, round_: int) -> list[str]:
        return list(self._view("participants", task, round_))

    def has_submitted(self, task: int, round_: int, who: str) -> bool:
        return self._view("hasSubmitted", task, round_, to_checksum_address(who))

    def election_order(self, task: int, round_: int) -> list[str]:
        return list(self._view("electionOrder", task, round_))

    def verifiers_of(self, task: int, round_: int, attempt: int) -> list[str]:
        return list(self._view("verifiersOf", task, round_, attempt))

    def failed_leaderships(self, who: str) -> int:
        return self._view("failedLeaderships", to_checksum_address(who))

    def withheld_updates(self, who: str) -> int:
        return self._view("withheldUpdates", to_checksum_address(who))

    def missed_reveals(self, who: str) -> int:
        return self._view("missedReveals", to_checksum_address(who))

    # ------------------------------------------------------------------ events

    def events(
        self,
        from_block: int = 0,
        to_block: int | str = "latest",
        names: Iterable[str] | None = None,
        task: int | None = None,
        round_: int | None = None,
    ) -> list[Event]:
        """Every FedLedger event in the block range (optionally one task's, one round's), in chain order.
        With `names`, the chain node filters by event signature, and by the indexed task and round
        topics when every named event indexes them first: only the wanted logs cross the wire."""
        self._need_contract()
        flt: dict[str, Any] = {"address": self.address, "fromBlock": from_block, "toBlock": to_block}
        wanted = set(names) if names else None
        if wanted:
            topics: list[Any] = [["0x" + t.hex() for t, n in self._event_by_topic.items() if n in wanted]]
            leading = [self._indexed[n] for n in wanted]
            for pos, (arg, value) in enumerate((("task", task), ("round", round_))):
                if value is None or not all(len(ix) > pos and ix[pos] == arg for ix in leading):
                    break
                topics.append("0x" + int(value).to_bytes(32, "big").hex())
            flt["topics"] = topics
        try:
            logs = self._rpc(lambda: self.w3.eth.get_logs(flt))
        except Web3RPCError as exc:  # a range the node refuses (past its head, too long): one line, exit 3
            raise ChainError(f"eth_getLogs from block {from_block}: the chain node refused: {exc.message}") from None
        out = []
        for log in logs:
            name = self._event_by_topic.get(bytes(log["topics"][0]))
            if name is None or (wanted and name not in wanted):
                continue
            ev = self._decode_log(name, log)
            if task is not None and ev.args.get("task") != task:
                continue
            if round_ is not None and ev.args.get("round") != round_:
                continue
            out.append(ev)
        return out

    def _decode_log(self, name: str, log) -> Event:
        layout = self._event_layout.get(name)
        if layout is not None:
            topics = iter(log["topics"][1:])
            data = iter(abi_decode([t for _, t, ix in layout if not ix], bytes(log["data"])))
            args = {}
            for arg, typ, indexed in layout:
                value = abi_decode([typ], bytes(next(topics)))[0] if indexed else next(data)
                if typ == "address":
                    value = to_checksum_address(value)
                elif typ == "address[]":
                    value = [to_checksum_address(a) for a in value]
                args[arg] = _plain(arg, value)
            return Event(name=name, args=args, block_number=log["blockNumber"],
                         tx_hash="0x" + bytes(log["transactionHash"]).hex(), log_index=log["logIndex"])
        decoded = self.contract.events[name]().process_log(log)
        return Event(
            name=name,
            args={k: _plain(k, v) for k, v in decoded["args"].items()},
            block_number=log["blockNumber"],
            tx_hash="0x" + bytes(log["transactionHash"]).hex(),
            log_index=log["logIndex"],
        )

    # ---------------------------------------------------------------- plumbing

    def _view(self, fn_name: str, *args, block: int | str = "latest"):
        fn = getattr(self._need_contract().functions, fn_name)(*args)
        try:
            return self._rpc(lambda: fn.call(block_identifier=block))
        except ContractLogicError as exc:
            raise self._decode_revert(exc, fn_name) from None

    def _transact(self, fn_name: str, *args) -> TxResult:
        return self._send(getattr(self._need_contract().functions, fn_name)(*args), fn_name)[0]

    def _send(self, fn, fn_name: str) -> tuple[TxResult, Any]:
        sender = self.sender
        try:
            # Against the pending block: its timestamp is now, while an automining devnet's latest
            # block can be old, and deadline checks (close, timeout) must see the current time.
            estimate = self._rpc(lambda: fn.estimate_gas({"from": sender}, block_identifier="pending"))
        except ContractLogicError as exc:
            raise self._decode_revert(exc, fn_name) from None
        # The estimate is of the state the pending block shows; a concurrent transaction can move
        # this call onto a costlier path (the attestation that reaches the quorum also finalizes
        # the round and opens the next), so state-dependent calls get a floor that covers it.
        gas = max(int(estimate * 1.25) + 20_000, GAS_FLOOR.get(fn_name, 0))
        for _ in range(2):
            tx_hash = self._sign_and_send(fn, fn_name, gas)
            receipt = self.wait_for_receipt(tx_hash, self.request_timeout, fn_name)
            if receipt["status"] == 1:
                break
            # Reverted after the estimate passed (another transaction got there first): replay the
            # call on the state it met to name the error.
            try:
                fn.call({"from": sender}, block_identifier=receipt["blockNumber"])
            except ContractLogicError as exc:
                raise self._decode_revert(exc, fn_name) from None
            if receipt["gasUsed"] < gas:
                raise ContractRevert("Unknown", {"tx": "0x" + bytes(tx_hash).hex()}, fn_name)
            log.warning("%s ran out of gas at %d (tx 0x%s); resending with %d", fn_name, gas,
                        bytes(tx_hash).hex(), gas * 2)
            gas *= 2
        else:
            raise ContractRevert("OutOfGas", {"tx": "0x" + bytes(tx_hash).hex(), "gas": gas // 2}, fn_name)
        events = []
        if self.contract is not None:
            for entry in receipt["logs"]:
                name = self._event_by_topic.get(bytes(entry["topics"][0])) if entry["topics"] else None
                if name:
                    events.append(self._decode_log(name, entry))
        return (
            TxResult(
                tx_hash="0x" + bytes(tx_hash).hex(),
                block_number=receipt["blockNumber"],
                gas_used=receipt["gasUsed"],
                events=events,
            ),
            receipt,
        )

    def wait_for_receipt(self, tx_hash, timeout: float, what: str):
        """The receipt of a sent transaction. Asked for at once, then after 2 ms, doubling up to
        `poll_latency`: an automining devnet answers within milliseconds (web3's fixed interval cost
        every transaction a whole interval), a chain with 2 s blocks gets a dozen asks a block."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                receipt = self._rpc(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
                if receipt is not None:
                    return receipt
            except TransactionNotFound:
                pass
            if time.monotonic() > deadline:
                raise ChainError(f"{what}: no receipt for 0x{bytes(tx_hash).hex()} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, self.poll_latency)

    def _sign_and_send(self, fn, fn_name: str, gas: int):
        sender = self.sender
        for _ in range(5):
            with self._lock:
                if self._nonce is None:
                    self._nonce = self._rpc(lambda: self.w3.eth.get_transaction_count(sender, "pending"))
                nonce = self._nonce
                tx = fn.build_transaction(
                    {
                        "from": sender,
                        "nonce": nonce,
                        "gas": gas,
                        "gasPrice": self._rpc(lambda: self.w3.eth.gas_price),
                        "chainId": self.chain_id,
                    }
                )
                signed = self.account.sign_transaction(tx)
                try:
                    tx_hash = self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
                except Web3RPCError as exc:
                    msg = str(exc).lower()
                    if "nonce" in msg or "already known" in msg or "underpriced" in msg:
                        # Another sender with this key moved the nonce: resync and retry.
                        self._nonce = None
                        continue
                    raise TransactionRejected(f"{fn_name} was refused by the chain node: {exc}") from exc
                self._nonce = nonce + 1
                return tx_hash
        raise ChainError(f"{fn_name}: could not find a free nonce for {sender} after 5 tries")

    @staticmethod
    def _error_table(abi: list[dict]) -> dict[bytes, tuple[str, list[str], list[str]]]:
        table = {}
        for item in abi:
            if item["type"] != "error":
                continue
            types = [_abi_type(i) for i in item["inputs"]]
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            table[selector] = (item["name"], types, [i["name"] for i in item["inputs"]])
        return table

    def _decode_revert(self, exc: ContractLogicError, fn_name: str) -> ContractRevert:
        data = exc.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            raw = bytes.fromhex(data[2:])
            entry = self._errors.get(raw[:4])
            if entry:
                name, types, names = entry
                values = [
                    to_checksum_address(v) if t == "address" else _plain(n, v)
                    for t, n, v in zip(types, names, abi_decode(types, raw[4:]))
                ]
                return ContractRevert(name, dict(zip(names, values)), fn_name)
        return ContractRevert("Revert", {"message": exc.message or str(exc)}, fn_name)
