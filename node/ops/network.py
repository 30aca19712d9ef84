"""Network files for a consortium on Hyperledger Besu (QBFT) and Kubo: one validator and one IPFS
node per organisation.

From a consortium description (who, at which address, with which public keys) this writes:

    DIR/genesis.json                  the QBFT genesis: every organisation's validator in extraData,
                                      free gas (zeroBaseFee, baseFeePerGas 0), forks up to Cancun
                                      (the contracts are compiled for evmVersion cancun)
    DIR/ports.md                      which port each organisation opens to which
    DIR/swarm.key                     the private swarm's pre-shared key (SECRET, mode 600): hand it
                                      to each organisation over a secure channel
    DIR/ORG/besu/besu.toml            Besu options (`besu --config-file=besu.toml`, run from ORG/besu)
    DIR/ORG/besu/static-nodes.json    the other organisations' validators (enode URLs)
    DIR/ORG/besu/permissions_config.toml   node allowlist: only the consortium's validators connect
    DIR/ORG/kubo-setup.sh             Kubo configuration commands: private swarm, peers, API on localhost
    DIR/ORG/node.toml                 the fedledger node config (poa = true, the chain id, local RPC/API)

Only public material goes in (node public keys, IPFS peer ids, addresses); each organisation
keeps its validator key where it was generated (`besu public-key export` prints the public key).
`dev_keys=True` generates missing node keys locally, for a trial run by one operator.

The QBFT extraData is RLP([32-byte vanity, [validator addresses], vote, round, seals]); in a
genesis block the vote is empty (an empty list), the round 0 (empty bytes) and there are no
seals (an empty list), as `besu rlp encode --type=QBFT_EXTRA_DATA` writes it. A validator's
address is the last 20 bytes of keccak256 of its node's 64-byte public key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import rlp
from eth_utils import keccak, to_checksum_address

from .. import defaults
from ..errors import InputError
from ..peer.config import Chain, Ipfs, Keystore, NodeConfig, Organisation, Task, WorkloadSettings

QBFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"  # "ctical byzantine fault tolerance"
FREE_GAS_LIMIT = 0x1FFFFFFFFFFFFF  # the largest gas limit JSON tools accept; gas is free anyway
MAX_CONTRACT_SIZE = 2147483647
RPC_APIS = ["ETH", "NET", "WEB3", "QBFT", "PERM", "ADMIN"]  # on 127.0.0.1 only
SWARM_KEY_HEADER = "/key/swarm/psk/1.0.0/\n/base16/\n"


class NetworkSpecError(InputError):
    """The consortium description is incomplete or inconsistent; the message says what to fix."""


# --------------------------------------------------------------------------- QBFT extraData


def _address_bytes(address: str) -> bytes:
    text = address[2:] if address.lower().startswith("0x") else address
    if not re.fullmatch(r"[0-9a-fA-F]{40}", text):
        raise NetworkSpecError(f"{address!r} is not a 20-byte hex address")
    return bytes.fromhex(text)


def qbft_extra_data(validators: Sequence[str], vanity: bytes = bytes(32)) -> str:
    """The genesis extraData of a QBFT network whose validators are `validators` (in this order)."""
    if not validators:
        raise NetworkSpecError("a QBFT network needs at least one validator")
    if len(vanity) != 32:
        raise NetworkSpecError("the vanity field is 32 bytes")
    raw = [_address_bytes(v) for v in validators]
    if len(set(raw)) != len(raw):
        raise NetworkSpecError("a validator is listed twice")
    return "0x" + rlp.encode([vanity, raw, [], b"", []]).hex()


def decode_qbft_extra_data(extra_data: str) -> dict[str, Any]:
    """The fields of a QBFT extraData: vanity, validators (checksummed), vote, round, seals."""
    text = extra_data[2:] if extra_data.startswith("0x") else extra_data
    items = rlp.decode(bytes.fromhex(text))
    if not isinstance(items, list) or len(items) != 5:
        raise NetworkSpecError("QBFT extraData is an RLP list of 5 items (vanity, validators, vote, round, seals)")
    vanity, validators, vote, round_, seals = items
    return {
        "vanity": bytes(vanity),
        "validators": [to_checksum_address(bytes(v)) for v in validators],
        "vote": vote,
        "round": int.from_bytes(bytes(round_), "big") if isinstance(round_, bytes) else round_,
        "seals": seals,
    }


# --------------------------------------------------------------------------- keys


def _public_key_bytes(public_key: str) -> bytes:
    text = public_key[2:] if public_key.lower().startswith("0x") else public_key
    if len(text) == 130 and text[:2] == "04":  # uncompressed SEC1 form
        text = text[2:]
    if not re.fullmatch(r"[0-9a-fA-F]{128}", text):
        raise NetworkSpecError(f"node public key {public_key[:20]}... must be 64 bytes of hex "
                               "(`besu public-key export` prints it)")
    return bytes.fromhex(text)


def address_of_public_key(public_key: str) -> str:
    """The node (validator) address of a Besu node public key."""
    return to_checksum_address(keccak(_public_key_bytes(public_key))[12:])


def new_node_key(path: Path) -> str:
    """Write a new secp256k1 node key to `path` (Besu's key file: 0x-prefixed hex, mode 600);
    return its public key. For trials only: a real validator key is generated where it is used."""
    from eth_keys import keys

    private = keys.PrivateKey(secrets.token_bytes(32))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as fh:
        fh.write("0x" + private.to_bytes().hex())
    return "0x" + private.public_key.to_bytes().hex()


def public_key_of_key_file(path: Path) -> str:
    from eth_keys import keys

    text = Path(path).read_text().strip()
    return "0x" + keys.PrivateKey(bytes.fromhex(text[2:] if text.startswith("0x") else text)).public_key.to_bytes().hex()


def new_swarm_key() -> str:
    """A Kubo private-network key (libp2p PSK v1): three lines, the last 32 random bytes in hex."""
    return SWARM_KEY_HEADER + secrets.token_hex(32) + "\n"


# --------------------------------------------------------------------------- the consortium


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PEER_ID = re.compile(r"^(12D3KooW|Qm)[1-9A-HJ-NP-Za-km-z]{40,}$")


@dataclass
class Site:
    """One organisation's site: where the other organisations reach it, and its public keys."""

    name: str
    host: str  # the IPv4 address the other organisations reach its validator and IPFS node at
    node_public_key: str | None = None  # Besu node public key (validator identity)
    ipfs_peer_id: str | None = None  # Kubo `ipfs id -f '<id>'`
    member_address: str | None = None  # its fedledger member address (`fedledger keys new`)
    p2p_port: int = 30303
    rpc_port: int = 8545
    ws_port: int = 8546  # Besu's WebSocket JSON-RPC, on localhost: new blocks pushed to the node
    ipfs_swarm_port: int = 4001
    ipfs_api_port: int = 5001
    ipfs_gateway_port: int = 8080  # read-only, opened to the other organisations: what this one stored

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.ipfs_gateway_port}"

    @property
    def validator(self) -> str:
        if not self.node_public_key:
            raise NetworkSpecError(f"{self.name} has no node_public_key")
        return address_of_public_key(self.node_public_key)

    @property
    def enode(self) -> str:
        pub = _public_key_bytes(self.node_public_key or "").hex()
        return f"enode://{pub}@{self.host}:{self.p2p_port}"

    @property
    def ipfs_multiaddr(self) -> str | None:
        if not self.ipfs_peer_id:
            return None
        return f"/ip4/{self.host}/tcp/{self.ipfs_swarm_port}/p2p/{self.ipfs_peer_id}"


@dataclass
class NetworkSpec:
    """A consortium's network as its description file gives it: the chain id, the QBFT timing and
    every organisation's site."""

    chain_id: int
    organisations: list[Site]
    block_period_seconds: int = 2
    request_timeout_seconds: int = 4
    epoch_length: int = 30000
    gas_limit: int = FREE_GAS_LIMIT
    timestamp: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "NetworkSpec":
        """Read a consortium TOML file (see docs/deploy.md for its format)."""
        try:
            doc = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise NetworkSpecError(f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise NetworkSpecError(f"{path} is not valid TOML: {exc}") from exc
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "NetworkSpec":
        known = {"chain_id", "block_period_seconds", "request_timeout_seconds", "epoch_length", "gas_limit",
                 "timestamp", "organisation"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise NetworkSpecError(f"unknown consortium setting(s): {', '.join(unknown)}")
        if "chain_id" not in doc:
            raise NetworkSpecError("chain_id is required: pick one no public chain uses (https://chainlist.org)")
        orgs = []
        org_fields = set(Site.__dataclass_fields__)
        for i, entry in enumerate(doc.get("organisation", [])):
            bad = sorted(set(entry) - org_fields)
            if bad:
                raise NetworkSpecError(f"organisation #{i + 1}: unknown key(s) {', '.join(bad)}")
            if "name" not in entry or "host" not in entry:
                raise NetworkSpecError(f"organisation #{i + 1}: name and host are required")
            orgs.append(Site(**entry))
        c = cls(chain_id=int(doc["chain_id"]), organisations=orgs,
                **{k: int(doc[k]) for k in ("block_period_seconds", "request_timeout_seconds", "epoch_length",
                                            "gas_limit", "timestamp") if k in doc})
        c.check(require_keys=False)
        return c

    def check(self, require_keys: bool = True) -> list[str]:
        """Refuse what cannot work; return warnings for what works but is unwise."""
        warnings = []
        if not 0 < self.chain_id < 2**63:
            raise NetworkSpecError(f"chain_id {self.chain_id} is out of range")
        if self.chain_id in (1, 5, 11155111, 17000, 31337, 1337):
            warnings.append(f"chain_id {self.chain_id} is used by a public or development chain: pick another")
        if not self.organisations:
            raise NetworkSpecError("list at least one [[organisation]]")
        if self.block_period_seconds < 1 or self.request_timeout_seconds <= self.block_period_seconds:
            raise NetworkSpecError("block_period_seconds must be >= 1 and request_timeout_seconds larger than it")
        seen: dict[str, set] = {"name": set(), "endpoint": set(), "key": set(), "peer": set()}
        for org in self.organisations:
            if not _NAME.match(org.name):
                raise NetworkSpecError(f"organisation name {org.name!r}: use letters, digits, '_', '.', '-' (max 64)")
            try:
                ip = ipaddress.IPv4Address(org.host)
            except ValueError:
                raise NetworkSpecError(f"{org.name}: host {org.host!r} must be an IPv4 address (Besu's node "
                                       "allowlist compares enode IPs)") from None
            if ip.is_unspecified or (ip.is_loopback and len(self.organisations) > 1):
                raise NetworkSpecError(f"{org.name}: host {org.host} is not an address other organisations can reach")
            for port in (org.p2p_port, org.rpc_port, org.ipfs_swarm_port, org.ipfs_api_port):
                if not 0 < int(port) < 65536:
                    raise NetworkSpecError(f"{org.name}: port {port} is out of range")
            for kind, value in (("name", org.name), ("endpoint", (org.host, org.p2p_port))):
                if value in seen[kind]:
                    raise NetworkSpecError(f"{org.name}: {kind} {value} is used twice")
                seen[kind].add(value)
            if org.node_public_key:
                key = _public_key_bytes(org.node_public_key)
                if key in seen["key"]:
                    raise NetworkSpecError(f"{org.name}: the same node public key is listed twice")
                seen["key"].add(key)
            elif require_keys:
                raise NetworkSpecError(f"{org.name}: node_public_key is missing (`besu public-key export`), "
                                       "or pass --dev-keys for a trial")
            if org.ipfs_peer_id:
                if not _PEER_ID.match(org.ipfs_peer_id):
                    raise NetworkSpecError(f"{org.name}: ipfs_peer_id {org.ipfs_peer_id!r} is not a peer id "
                                           "(`ipfs id -f '<id>'`)")
                if org.ipfs_peer_id in seen["peer"]:
                    raise NetworkSpecError(f"{org.name}: ipfs_peer_id is listed twice")
                seen["peer"].add(org.ipfs_peer_id)
            else:
                warnings.append(f"{org.name}: no ipfs_peer_id yet: the others' Kubo peering lists leave it out")
            if org.member_address:
                _address_bytes(org.member_address)
        n = len(self.organisations)
        if n < 4:
            warnings.append(f"{n} validators tolerate no faulty validator: QBFT needs 3f+1 validators to survive f "
                            f"faults, so 4 to keep going with one down")
        return warnings

    # ------------------------------------------------------------------ outputs

    def genesis(self) -> dict[str, Any]:
        """The genesis file every validator starts from (identical bytes at every organisation)."""
        self.check()
        return {
            "config": {
                "chainId": self.chain_id,
                "berlinBlock": 0,
                "londonBlock": 0,
                "shanghaiTime": 0,
                "cancunTime": 0,
                "zeroBaseFee": True,
                "contractSizeLimit": MAX_CONTRACT_SIZE,
                "qbft": {
                    "blockperiodseconds": self.block_period_seconds,
                    "epochlength": self.epoch_length,
                    "requesttimeoutseconds": self.request_timeout_seconds,
                },
            },
            "nonce": "0x0",
            "timestamp": hex(self.timestamp),
            "gasLimit": hex(self.gas_limit),
            "difficulty": "0x1",
            "mixHash": QBFT_MIX_HASH,
            "coinbase": "0x" + "00" * 20,
            "baseFeePerGas": "0x0",
            "alloc": {},
            "extraData": qbft_extra_data([o.validator for o in self.organisations]),
        }

    def others(self, org: Site) -> list[Site]:
        return [o for o in self.organisations if o.name != org.name]

    def besu_toml(self, org: Site) -> str:
        """Besu options of `org`'s validator; relative paths are relative to ORG/besu (run it there)."""
        allow = ["localhost", "127.0.0.1"]
        lines = [
            f"# Besu QBFT validator of {org.name} (address {org.validator}).",
            "# Start it from this directory:  besu --config-file=besu.toml",
            "# The node key (data/key) never leaves this host; genesis.json is the same for everyone.",
            'data-path = "data"',
            'node-private-key-file = "data/key"',
            'genesis-file = "../../genesis.json"',
            "",
            "# Peer-to-peer: only the consortium's validators, from the static list, allowed by the allowlist.",
            'p2p-interface = "0.0.0.0"',
            f'p2p-host = "{org.host}"',
            f"p2p-port = {org.p2p_port}",
            "discovery-enabled = false",
            'static-nodes-file = "static-nodes.json"',
            "permissions-nodes-config-file-enabled = true",
            'permissions-nodes-config-file = "permissions_config.toml"',
            "",
            "# JSON-RPC for this organisation's fedledger node only: localhost, never opened to others.",
            "rpc-http-enabled = true",
            'rpc-http-host = "127.0.0.1"',
            f"rpc-http-port = {org.rpc_port}",
            f"rpc-http-api = {json.dumps(RPC_APIS)}",
            f"host-allowlist = {json.dumps(allow)}",
            "# The same on WebSocket, so the node is told of each block instead of polling for it.",
            "rpc-ws-enabled = true",
            'rpc-ws-host = "127.0.0.1"',
            f"rpc-ws-port = {org.ws_port}",
            f"rpc-ws-api = {json.dumps(RPC_APIS)}",
            "graphql-http-enabled = false",
            "",
            "# Free gas: members need no ether (the genesis sets zeroBaseFee and baseFeePerGas 0).",
            "min-gas-price = 0",
            'sync-mode = "FULL"',
        ]
        return "\n".join(lines) + "\n"

    def static_nodes(self, org: Site) -> list[str]:
        return [o.enode for o in self.others(org)]

    def permissions_config(self) -> str:
        enodes = ",\n  ".join(json.dumps(o.enode) for o in self.organisations)
        return ("# Besu node allowlist: the consortium's validators (this one included).\n"
                f"nodes-allowlist = [\n  {enodes}\n]\n")

    def kubo_setup(self, org: Site) -> str:
        """Shell commands that configure `org`'s Kubo node for the private swarm."""
        peers = [o for o in self.others(org) if o.ipfs_peer_id]
        missing = [o.name for o in self.others(org) if not o.ipfs_peer_id]
        peering = [{"ID": o.ipfs_peer_id, "Addrs": [f"/ip4/{o.host}/tcp/{o.ipfs_swarm_port}"]} for o in peers]
        lines = [
            "#!/bin/sh",
            f"# Kubo (IPFS) node of {org.name} in the consortium's private swarm. Run once, as the user that",
            "# runs the node, with this organisation's IPFS_PATH; then start `ipfs daemon` with",
            "# LIBP2P_FORCE_PNET=1 in its environment (it then refuses to run without the swarm key).",
            "set -eu",
            'export IPFS_PATH="${IPFS_PATH:-$HOME/.ipfs}"',
            "export LIBP2P_FORCE_PNET=1",
            'HERE="$(cd "$(dirname "$0")" && pwd)"',
            '[ -f "$IPFS_PATH/config" ] || ipfs init --profile server',
            '# The pre-shared swarm key (secret; the same at every organisation): only holders connect.',
            'install -m 600 "${SWARM_KEY:-$HERE/../swarm.key}" "$IPFS_PATH/swarm.key"',
            "# The API on localhost only: the fedledger node is its only client.",
            f"ipfs config Addresses.API /ip4/127.0.0.1/tcp/{org.ipfs_api_port}",
            "# The read-only gateway serves what this node stores to the other organisations' fedledger",
            f"# nodes (firewall it to their hosts), on {org.host} only (the address the consortium file",
            "# names for this organisation); NoFetch: it never fetches anything for a caller.",
            f"ipfs config Addresses.Gateway /ip4/{org.host}/tcp/{org.ipfs_gateway_port}",
            "ipfs config --json Gateway.NoFetch true",
            f"ipfs config --json Addresses.Swarm '[\"/ip4/0.0.0.0/tcp/{org.ipfs_swarm_port}\"]'",
            f"ipfs config --json Addresses.Announce '[\"/ip4/{org.host}/tcp/{org.ipfs_swarm_port}\"]'",
            "# Private networks speak TCP only; no public routing, relays or local discovery.",
            "ipfs config --json Swarm.Transports.Network.QUIC false",
            "ipfs config --json Swarm.Transports.Network.WebTransport false",
            "ipfs config --json Swarm.Transports.Network.WebRTCDirect false 2>/dev/null || true  # Kubo >= 0.30",
            "ipfs config --json Swarm.RelayClient.Enabled false",
            "ipfs config --json Swarm.RelayService.Enabled false",
            "ipfs config --json Discovery.MDNS.Enabled false",
            "ipfs config Routing.Type dht",
            "# The other organisations' nodes: bootstrap from them and keep connected (Peering).",
            "ipfs bootstrap rm --all",
        ]
        lines += [f"ipfs bootstrap add {o.ipfs_multiaddr}" for o in peers]
        lines.append(f"ipfs config --json Peering.Peers '{json.dumps(peering)}'")
        if missing:
            lines.append(f"# Not yet known (no ipfs_peer_id): {', '.join(missing)}; regenerate when they send it.")
        return "\n".join(lines) + "\n"

    def node_toml(self, org: Site, index: int) -> str:
        """The fedledger node config of `org`: its own Besu RPC and Kubo API on localhost, poa on."""
        gateways = {o.member_address: o.gateway_url for o in self.others(org) if o.member_address}
        cfg = NodeConfig(
            organisation=Organisation(name=org.name, work_dir=Path("work")),
            chain=Chain(rpc_url=f"http://127.0.0.1:{org.rpc_port}", deployment=Path(defaults.DEPLOYMENT_FILE),
                        chain_id=self.chain_id, poa=True, ws_url=f"ws://127.0.0.1:{org.ws_port}"),
            ipfs=Ipfs(api_url=f"http://127.0.0.1:{org.ipfs_api_port}", gateways=gateways),
            keystore=Keystore(path=Path("keystore.json"), password="env:FEDLEDGER_PASSWORD"),
            task=Task(id=0),
            workload=WorkloadSettings(builtin=defaults.WORKLOAD, partition="iid", org_index=index,
                                      num_orgs=len(self.organisations)),
        )
        return cfg.to_toml()

    def ports(self) -> str:
        rows = ["| organisation | opens to the other organisations | never opens (localhost only) |",
                "|---|---|---|"]
        for o in self.organisations:
            rows.append(f"| {o.name} ({o.host}) | {o.p2p_port}/tcp Besu P2P; {o.ipfs_swarm_port}/tcp IPFS swarm; "
                        f"{o.ipfs_gateway_port}/tcp IPFS gateway (read-only) | "
                        f"{o.rpc_port}/tcp Besu JSON-RPC; {o.ws_port}/tcp Besu WebSocket; {o.ipfs_api_port}/tcp IPFS API |")
        rows += ["", "Each organisation allows inbound TCP on its P2P, swarm and gateway ports from the other organisations' "
                     "hosts only (listed above) and makes outbound connections to theirs. Discovery is off, so no UDP. "
                     "The fedledger node itself listens on nothing."]
        return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- writing


def write_network(consortium: NetworkSpec, out: Path, *, dev_keys: bool = False,
                  swarm_key: bool = True) -> dict[str, Any]:
    """Write every file of the module docstring under `out`; returns what was written and the
    warnings. An existing genesis, node keys and swarm key are kept, never overwritten: rerun it
    with a new organisation added to get everyone's updated configs for the same chain."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generated = []
    for org in consortium.organisations:
        key_file = out / org.name / "besu" / "data" / "key"
        if not org.node_public_key and dev_keys:
            org.node_public_key = public_key_of_key_file(key_file) if key_file.exists() else new_node_key(key_file)
            generated.append(org.name)
    warnings = consortium.check()
    if generated:
        warnings.append(f"generated trial node keys for {', '.join(generated)} under {out}/ORG/besu/data/key: "
                        "copy each to its organisation only, and use real ones in production")
    written: list[str] = []

    def put(path: Path, text: str, mode: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mode is not None:
            os.chmod(path, mode)
        written.append(str(path))

    genesis_path = out / "genesis.json"
    genesis = consortium.genesis()
    if genesis_path.exists():
        # The genesis is written once: a changed one would be another chain. Organisations that
        # join later become validators by vote (docs/deploy.md), not through the genesis.
        kept = json.loads(genesis_path.read_text())
        if kept != genesis:
            old = decode_qbft_extra_data(kept["extraData"])["validators"]
            new = [o.name for o in consortium.organisations if o.validator not in old]
            warnings.append(f"kept the existing {genesis_path} (chain {kept['config']['chainId']}); "
                            + (f"{', '.join(new)} must be voted in as validators (qbft_proposeValidatorVote)"
                               if new else "its settings differ from the consortium file"))
    else:
        put(genesis_path, json.dumps(genesis, indent=2) + "\n")
    put(out / "ports.md", consortium.ports())
    key_path = out / "swarm.key"
    if swarm_key and not key_path.exists():
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_swarm_key())
        written.append(str(key_path))
    for i, org in enumerate(consortium.organisations):
        base = out / org.name
        put(base / "besu" / "besu.toml", consortium.besu_toml(org))
        put(base / "besu" / "static-nodes.json", json.dumps(consortium.static_nodes(org), indent=2) + "\n")
        put(base / "besu" / "permissions_config.toml", consortium.permissions_config())
        put(base / "kubo-setup.sh", consortium.kubo_setup(org), 0o755)
        put(base / "node.toml", consortium.node_toml(org, i))
    return {"written": written, "warnings": warnings,
            "validators": {o.name: o.validator for o in consortium.organisations}, "chain_id": consortium.chain_id}


EXAMPLE = """\
# A consortium of fedledger organisations on a Besu QBFT chain. One [[organisation]] per member:
# each runs one validator and one Kubo node. Only public facts go here.
chain_id = 47110                  # pick one no public chain uses
block_period_seconds = 2
request_timeout_seconds = 4

[[organisation]]
name = "hospital-a"
host = "192.0.2.10"               # where the others reach its validator and IPFS node
node_public_key = "0x..."         # besu --data-path=data public-key export
ipfs_peer_id = "12D3KooW..."      # ipfs id -f '<id>'
# member_address = "0x..."        # fedledger keys address keystore.json (the others' nodes map it to its gateway)
# p2p_port = 30303
# ipfs_swarm_port = 4001
# rpc_port = 8545                 # on localhost
# ipfs_api_port = 5001            # on localhost
# ws_port = 8546                  # on localhost
# ipfs_gateway_port = 8080        # read-only, open to the other organisations
"""


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="qbft_genesis.py",
        description="Write the QBFT genesis and every organisation's Besu, Kubo and fedledger configs for a "
                    "consortium (see docs/deploy.md).",
        epilog="Exit codes: 0 ok, 1 the consortium file is wrong (the message says what to fix).")
    parser.add_argument("consortium", nargs="?", type=Path, help="The consortium TOML file (--example prints one).")
    parser.add_argument("--out", type=Path, default=Path("network"), help="Output directory (default: network).")
    parser.add_argument("--dev-keys", action="store_true",
                        help="Generate node keys for organisations without node_public_key (a trial by one operator; "
                             "in production each organisation generates its own).")
    parser.add_argument("--no-swarm-key", action="store_true", help="Do not write swarm.key (you already have one).")
    parser.add_argument("--example", action="store_true", help="Print an example consortium file and exit.")
    parser.add_argument("--json", action="store_true", help="Print what was written as JSON.")
    args = parser.parse_args(argv)
    if args.example:
        print(EXAMPLE, end="")
        return 0
    if args.consortium is None:
        parser.error("give the consortium file (or --example)")
    try:
        result = write_network(NetworkSpec.load(args.consortium), args.out, dev_keys=args.dev_keys,
                               swarm_key=not args.no_swarm_key)
    except NetworkSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"chain id {result['chain_id']}, validators:")
        for name, addr in result["validators"].items():
            print(f"  {name:20} {addr}")
        print(f"wrote {len(result['written'])} files under {args.out} (ports: {args.out / 'ports.md'})")
    return 0
