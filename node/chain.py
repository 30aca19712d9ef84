"""The chain client: one typed method per FedLedger call, signed locally, reverts decoded.

Every transaction is signed in this process with the member's own key (eth-account); the node
never asks the chain node to sign. Reverts surface as `ContractRevert` naming the custom error
and its arguments. Events come back decoded, in chain order: they are the lineage record.
"""

from __future__ import annotations

import enum
import http.client
import json
import logging
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware

from .contracts import Artifact, load_artifact


log = logging.getLogger("fedledger.chain")

#: Gas limits never below these: the path of these calls depends on what lands just before them
#: (the attestation reaching the quorum finalizes the round and opens the next one; a timeout can
#: reopen a round; the submission that fills a round also closes it and elects). Unused gas is not
#: charged.
GAS_FLOOR = {"attest": 300_000, "timeout": 300_000, "publishAggregate": 300_000,
             "closeSubmissions": 300_000, "submitUpdate": 300_000}


class Phase(enum.IntEnum):
    NONE = 0
    SUBMISSION = 1
    AGGREGATION = 2
    VERIFICATION = 3
    FINALIZED = 4


class FailReason(enum.IntEnum):
    LEADER_TIMEOUT = 0
    REJECTED = 1
    UNVERIFIED = 2


class ChainError(RuntimeError):
    """The chain node could not be reached or did not answer in time."""


class ContractRevert(ChainError):
    """A call reverted. `error` is the custom error's name, `args` its named arguments."""

    def __init__(self, error: str, args: dict[str, Any], function: str):
        self.error = error
        self.args_ = args
        self.function = function
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        super().__init__(f"{function} reverted with {error}({shown})")


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value)


# --------------------------------------------------------------------------- value helpers


def to_bytes32(value: str | bytes) -> bytes:
    """A sha256 as 32 bytes, from bytes or a hex string (with or without 0x)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 32:
            raise ValueError(f"expected 32 bytes, got {len(value)}")
        return bytes(value)
    text = value[2:] if value.startswith("0x") else value
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError(f"expected a 64-hex-digit hash, got {len(text)} digits")
    return raw


def rule_to_bytes32(rule: str) -> bytes:
    raw = rule.encode("ascii")
    if not raw or len(raw) > 32:
        raise ValueError(f"rule id {rule!r} must be 1-32 ASCII characters")
    return raw.ljust(32, b"\0")


def rule_from_bytes32(raw: bytes) -> str:
    return bytes(raw).rstrip(b"\0").decode("ascii", errors="replace")


@dataclass(frozen=True)
class TaskConfig:
    """What a task fixes at creation. Hashes are lowercase hex; windows are seconds."""

    model_spec_cid: str
    genesis_cid: str
    genesis_sha256: str
    rule_id: str
    rule_params: bytes = b"{}"
    min_participants: int = 2
    max_participants: int = 10
    submission_window: int = 60
    aggregation_window: int = 60
    verification_window: int = 60
    verifiers_per_round: int = 2
    quorum: int = 2
    max_rounds: int = 5

    def to_tuple(self) -> tuple:
        return (
            self.model_spec_cid,
            self.genesis_cid,
            to_bytes32(self.genesis_sha256),
            rule_to_bytes32(self.rule_id),
            bytes(self.rule_params),
            self.min_participants,
            self.max_participants,
            self.submission_window,
            self.aggregation_window,
            self.verification_window,
            self.verifiers_per_round,
            self.quorum,
            self.max_rounds,
        )

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> "TaskConfig":
        return cls(
            model_spec_cid=t[0],
            genesis_cid=t[1],
            genesis_sha256=bytes(t[2]).hex(),
            rule_id=rule_from_bytes32(t[3]),
            rule_params=bytes(t[4]),
            min_participants=t[5],
            max_participants=t[6],
            submission_window=t[7],
            aggregation_window=t[8],
            verification_window=t[9],
            verifiers_per_round=t[10],
            quorum=t[11],
            max_rounds=t[12],
        )


@dataclass(frozen=True)
class TaskState:
    completed: bool
    current_round: int
    global_sha256: str
    global_cid: str


@dataclass(frozen=True)
class RoundInfo:
    phase: Phase
    epoch: int
    attempt: int
    count: int
    agrees: int
    disagrees: int
    deadline: int
    total_samples: int
    seed: str
    inputs_digest: str
    aggregate_sha256: str
    aggregate_cid: str
    leader: str | None


@dataclass(frozen=True)
class MemberView:
    state: TaskState
    round: RoundInfo
    submitted: bool  # the member submitted to the current round
    verifier: bool  # the member verifies the current attempt


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


# --------------------------------------------------------------------------- election


def coprime_step(r: int, n: int) -> int:
    """Mirror of FedLedger.coprimeStep: the permutation step for n candidates."""
    from math import gcd

    if n <= 2:
        return 1
    s = 1 + (r % (n - 1))
    while gcd(s, n) != 1:
        s = 1 if s + 1 == n else s + 1
    return s


def derive_seed(parent_block_hash: str | bytes, task: int, round_: int, epoch: int, inputs_digest: str | bytes) -> str:
    """Mirror of the seed FedLedger derives at close: keccak(abi.encode(blockhash(closing block
    - 1), task, round, epoch, inputsDigest)), as hex."""
    from eth_abi import encode

    data = encode(
        ["bytes32", "uint256", "uint256", "uint16", "bytes32"],
        [to_bytes32(parent_block_hash), task, round_, epoch, to_bytes32(inputs_digest)],
    )
    return keccak(data).hex()


def election_order(seed: str | bytes, participants: Sequence[str]) -> list[str]:
    """The candidate order the contract fixes at close, recomputed from its seed and the
    participants in submission order: any member or auditor can check the election."""
    seed_b = to_bytes32(seed)
    n = len(participants)
    if n == 0:
        return []
    offset = int.from_bytes(seed_b, "big") % n
    step = coprime_step(int.from_bytes(keccak(seed_b), "big"), n)
    return [participants[(offset + i * step) % n] for i in range(n)]


def verifiers_for(order: Sequence[str], attempt: int, verifiers_per_round: int) -> list[str]:
    """The verifiers of an attempt: the next `verifiers_per_round` candidates after its leader."""
    n = len(order)
    k = min(verifiers_per_round, max(n - 1, 0))
    return [order[(attempt + 1 + j) % n] for j in range(k)]


# --------------------------------------------------------------------------- client


class LeanHTTPProvider(Web3.HTTPProvider):
    """web3's HTTP provider over one keep-alive `http.client` connection per thread instead of
    `requests`: a node asks for the block number ten times a second and reads the round on every
    block, and `requests` took a quarter of a node's CPU doing it (py-spy, ten organisations on two
    cores); `http.client` does the same POST for a fraction. Transport failures are `OSError`s
    (`ChainClient._rpc` turns them into `ChainError`); a connection the node closed while idle is
    reopened once."""

    def __init__(self, endpoint_uri: str, timeout: float = 60.0):
        super().__init__(endpoint_uri, request_kwargs={"timeout": timeout})
        url = urllib.parse.urlsplit(endpoint_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ChainError(f"{endpoint_uri!r} is not an http:// or https:// JSON-RPC URL")
        self._conn_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._host, self._port, self._path = url.hostname, url.port, (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._timeout = timeout
        self._local = threading.local()

    def _make_request(self, method, request_data: bytes) -> bytes:  # type: ignore[override]
        headers = {"Content-Type": "application/json", "Content-Length": str(len(request_data))}
        for retry in (True, False):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if fresh:
                conn = self._local.conn = self._conn_class(self._host, self._port, timeout=self._timeout)
            try:
                conn.request("POST", self._path, body=request_data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                if retry and not fresh and not isinstance(exc, TimeoutError):
                    continue  # the node closed an idle keep-alive connection: reopen once
                if isinstance(exc, OSError):
                    raise
                raise ConnectionError(f"{method}: {exc!r}") from exc
            if resp.status != 200:
                raise ConnectionError(f"{method}: HTTP {resp.status} from the chain node: {body[:200]!r}")
            return body
        raise AssertionError("unreachable")


class HeadWatcher:
    """Wakes a node as soon as its chain node announces a block (`eth_subscribe` to `newHeads`
    over WebSocket), instead of it asking for the block number every few tens of milliseconds.

    `wait(timeout)` returns True when a block arrived since the last call. `connected` tells
    whether the subscription stands; while it does not (the chain node restarts, or does not
    serve WebSocket), callers poll as before, and the watcher reconnects by itself."""

    def __init__(self, ws_url: str, name: str = "chain"):
        url = urllib.parse.urlsplit(ws_url)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise ChainError(f"{ws_url!r} is not a ws:// or wss:// URL")
        self.ws_url = ws_url
        self.latest = -1
        self.connected = False
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-heads", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        arrived = self._event.wait(timeout)
        self._event.clear()
        return arrived

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        from websockets.sync.client import connect

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with connect(self.ws_url, open_timeout=5, close_timeout=1, compression=None, proxy=None,
                             max_size=1 << 20) as ws:
                    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
                    answer = json.loads(ws.recv(timeout=5))
                    if "error" in answer:
                        log.info("%s does not push new blocks (%s): polling", self.ws_url, answer["error"])
                        return
                    self.connected, backoff = True, 0.5
                    log.info("new blocks pushed by %s", self.ws_url)
                    self._event.set()  # whatever happened while we were away: look now
                    while not self._stop.is_set():
                        try:
                            msg = json.loads(ws.recv(timeout=1.0))
                        except TimeoutError:
                            continue
                        head = (msg.get("params") or {}).get("result") or {}
                        if "number" in head:
                            self.latest = int(head["number"], 16)
                            self._event.set()
            except Exception as exc:  # refused, closed, malformed: poll meanwhile and try again
                if self.connected:
                    log.info("new-block subscription at %s lost (%s); polling until it is back", self.ws_url, exc)
                self.connected = False
                self._event.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.connected = False


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
        poll_latency: float = 0.05,
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
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._errors = self._error_table(self.artifact.abi)
        view = next(i for i in self.artifact.abi if i.get("name") == "memberView" and i["type"] == "function")
        self._member_view_selector = keccak(text=f"memberView({','.join(_abi_type(i) for i in view['inputs'])})")[:4]
        self._member_view_outputs = [_abi_type(o) for o in view["outputs"]]
        self.address = to_checksum_address(address) if address else None
        self.contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi) if address else None
        self._event_by_topic = {}
        self._event_layout: dict[str, list[tuple[str, str, bool]] | None] = {}
        self._indexed: dict[str, list[str]] = {}  # event name -> its indexed arguments, in order
        for item in self.artifact.abi:
            if item["type"] == "event":
                sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                self._event_by_topic[keccak(text=sig)] = item["name"]
                self._indexed[item["name"]] = [i["name"] for i in item["inputs"] if i.get("indexed")]
                # Events without structs are decoded here with eth_abi: web3's process_log took a
                # sixth of a leader's CPU. Indexed arguments of FedLedger's events are all static.
                # Indexed arguments first, as web3 gives them.
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

    def latest_timestamp(self) -> int:
        return self._rpc(lambda: self.w3.eth.get_block("latest")["timestamp"])

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

    def deploy(self) -> TxResult:
        """Deploy FedLedger with this client's account as admin; the client then points at it."""
        factory = self.w3.eth.contract(abi=self.artifact.abi, bytecode=self.artifact.bytecode)
        result, receipt = self._send(factory.constructor(), "constructor")
        self.address = receipt["contractAddress"]
        self.contract = self.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        return result

    # ------------------------------------------------------------ transactions

    def add_member(self, member: str, name: str) -> TxResult:
        return self._transact("addMember", to_checksum_address(member), name)

    def remove_member(self, member: str) -> TxResult:
        return self._transact("removeMember", to_checksum_address(member))

    def transfer_admin(self, new_admin: str) -> TxResult:
        return self._transact("transferAdmin", to_checksum_address(new_admin))

    def create_task(self, config: TaskConfig) -> tuple[int, TxResult]:
        result = self._transact("createTask", config.to_tuple())
        return result.event("TaskCreated")["task"], result

    def submit_update(
        self, task: int, round_: int, parent_sha256: str, cid: str, sha256: str, num_samples: int
    ) -> TxResult:
        return self._transact(
            "submitUpdate", task, round_, to_bytes32(parent_sha256), cid, to_bytes32(sha256), num_samples
        )

    def close_submissions(self, task: int, round_: int) -> TxResult:
        return self._transact("closeSubmissions", task, round_)

    def publish_aggregate(self, task: int, round_: int, attempt: int, cid: str, sha256: str) -> TxResult:
        return self._transact("publishAggregate", task, round_, attempt, cid, to_bytes32(sha256))

    def attest(self, task: int, round_: int, attempt: int, agree: bool, computed_sha256: str) -> TxResult:
        return self._transact("attest", task, round_, attempt, agree, to_bytes32(computed_sha256))

    def timeout(self, task: int, round_: int) -> TxResult:
        return self._transact("timeout", task, round_)

    # ------------------------------------------------------------------- views

    def admin(self) -> str:
        return self._view("admin")

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

    def task_state(self, task: int) -> TaskState:
        completed, current, sha, cid = self._view("taskState", task)
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
        completed, current, sha, cid, rnd, submitted, verifier = values
        return MemberView(TaskState(completed, current, bytes(sha).hex(), cid), self._round_info(rnd),
                          submitted, verifier)

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
        topics when every named event indexes them first: only the wanted logs cross the wire and
        get decoded, whatever the length of the chain."""
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
        logs = self._rpc(lambda: self.w3.eth.get_logs(flt))
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

    def _view(self, fn_name: str, *args):
        fn = getattr(self._need_contract().functions, fn_name)(*args)
        try:
            return self._rpc(lambda: fn.call())
        except ContractLogicError as exc:
            raise self._decode_revert(exc, fn_name) from None

    def _transact(self, fn_name: str, *args) -> TxResult:
        fn = getattr(self._need_contract().functions, fn_name)(*args)
        result, _ = self._send(fn, fn_name)
        return result

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
            try:
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.request_timeout, poll_latency=self.poll_latency
                )
            except TimeExhausted as exc:
                raise ChainError(f"{fn_name}: no receipt for 0x{bytes(tx_hash).hex()} after {self.request_timeout} s") from exc
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
                    raise ChainError(f"{fn_name} was refused by the chain node: {exc}") from exc
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


_HASH_FIELDS = {"parent", "sha256", "computedSha256", "seed", "inputsDigest", "finalSha256", "expected", "given"}


def _plain(name: str, value: Any) -> Any:
    """Event/error values in plain Python: bytes32 as hex, rule ids as text, structs as dicts."""
    if isinstance(value, (bytes, bytearray)):
        if name == "ruleId":
            return rule_from_bytes32(value)
        return bytes(value).hex()
    if isinstance(value, Mapping):  # structs in events come back as (nested) AttributeDicts
        return {k: _plain(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    return value


def _abi_type(item: dict) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in item["components"]) + ")" + t[len("tuple"):]
    return t


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
