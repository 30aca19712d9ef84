"""The Besu QBFT network generator: genesis extraData, free gas, and configs that agree with each other."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from eth_keys import keys

from fedledger.node.ops.network import (
    NetworkSpec,
    NetworkSpecError,
    address_of_public_key,
    decode_qbft_extra_data,
    qbft_extra_data,
    write_network,
)
from fedledger.node.peer.config import NodeConfig

ROOT = Path(__file__).resolve().parent.parent

# The example genesis of Besu's QBFT documentation ("Configure QBFT consensus"): its four
# validators and the extraData `besu rlp encode --type=QBFT_EXTRA_DATA` gives for them.
BESU_DOCS_VALIDATORS = [
    "0x64a702e6263b7297a96638cac6ae65e6541f4169",
    "0x3923390ad55e90c237593b3b0e401f3b08a03185",
    "0xaefdb9a738c9f433e5b6b212a6d62f6370c2f692",
    "0xc7eeb9a4e00ce683cf93039b212648e01c6c6b78",
]
BESU_DOCS_EXTRA_DATA = (
    "0xf87aa00000000000000000000000000000000000000000000000000000000000000000f854"
    "9464a702e6263b7297a96638cac6ae65e6541f4169943923390ad55e90c237593b3b0e401f3b08a03185"
    "94aefdb9a738c9f433e5b6b212a6d62f6370c2f69294c7eeb9a4e00ce683cf93039b212648e01c6c6b78c080c0"
)

PEER_IDS = [
    "12D3KooWBKvuJK3LHSFBie1Seos19sfi2Jh9nWXD2fZZSLvgYN77",
    "12D3KooWS6GufmLtgvKyyWRjzChZL6i6qthk1TB8HDg8BkC4trRm",
    "12D3KooWKpEmtGFYhjB6c73Qpd3Z4BCvun9nkm3pYGWhUQM2823h",
    "12D3KooWLBN3eFqBwQFZ8DLgcXaYMQEWUWY38WaQRkRCKy8daURD",
]


def consortium_doc(n: int = 4, **overrides) -> dict:
    doc = {"chain_id": 47110, "block_period_seconds": 2, "request_timeout_seconds": 4,
           "organisation": [{"name": f"org{i + 1}", "host": f"192.0.2.{10 + i}", "ipfs_peer_id": PEER_IDS[i],
                             "member_address": "0x" + f"{i + 1:02x}" * 20}
                            for i in range(n)]}
    doc.update(overrides)
    return doc


def key_file_public(path: Path) -> bytes:
    text = path.read_text().strip()
    return keys.PrivateKey(bytes.fromhex(text.removeprefix("0x"))).public_key.to_bytes()


def test_extra_data_matches_besu_rlp_encode_for_the_documented_validators():
    assert qbft_extra_data(BESU_DOCS_VALIDATORS) == BESU_DOCS_EXTRA_DATA


def test_extra_data_decodes_back_to_vanity_validators_and_empty_vote_round_seals():
    decoded = decode_qbft_extra_data(BESU_DOCS_EXTRA_DATA)
    assert [v.lower() for v in decoded["validators"]] == BESU_DOCS_VALIDATORS
    assert decoded["vanity"] == bytes(32)
    assert decoded["vote"] == [] and decoded["round"] == 0 and decoded["seals"] == []


def test_extra_data_refuses_a_duplicate_or_malformed_validator():
    with pytest.raises(NetworkSpecError, match="twice"):
        qbft_extra_data([BESU_DOCS_VALIDATORS[0], BESU_DOCS_VALIDATORS[0].upper().replace("0X", "0x")])
    with pytest.raises(NetworkSpecError, match="20-byte"):
        qbft_extra_data(["0x1234"])
    with pytest.raises(NetworkSpecError, match="at least one"):
        qbft_extra_data([])


def test_validator_address_is_keccak_of_the_node_public_key():
    private = keys.PrivateKey(bytes(range(1, 33)))
    assert address_of_public_key(private.public_key.to_hex()) == private.public_key.to_checksum_address()
    # The uncompressed SEC1 form (04 prefix) names the same node.
    assert address_of_public_key("0x04" + private.public_key.to_bytes().hex()) == private.public_key.to_checksum_address()


@pytest.fixture
def network(tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "network"
    result = write_network(NetworkSpec.from_dict(consortium_doc()), out, dev_keys=True)
    return out, result


def test_genesis_lists_every_organisations_validator_derived_from_its_own_key_file(network):
    out, result = network
    genesis = json.loads((out / "genesis.json").read_text())
    validators = decode_qbft_extra_data(genesis["extraData"])["validators"]
    from_keys = [keys.PublicKey(key_file_public(out / f"org{i}" / "besu" / "data" / "key")).to_checksum_address()
                 for i in range(1, 5)]
    assert validators == from_keys == list(result["validators"].values())


def test_genesis_is_a_free_gas_qbft_chain_with_cancun_for_the_contracts(network):
    out, _ = network
    g = json.loads((out / "genesis.json").read_text())
    cfg = g["config"]
    assert cfg["chainId"] == 47110
    assert cfg["qbft"] == {"blockperiodseconds": 2, "epochlength": 30000, "requesttimeoutseconds": 4}
    assert cfg["zeroBaseFee"] is True and g["baseFeePerGas"] == "0x0"
    assert cfg["londonBlock"] == 0 and cfg["shanghaiTime"] == 0 and cfg["cancunTime"] == 0
    assert int(g["gasLimit"], 16) >= 30_000_000 and cfg["contractSizeLimit"] >= 24576
    assert g["mixHash"] == "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"
    assert g["difficulty"] == "0x1" and g["alloc"] == {}


def test_each_besu_config_charges_no_gas_keeps_rpc_on_localhost_and_reads_the_shared_genesis(network):
    out, _ = network
    for i in range(1, 5):
        besu_dir = out / f"org{i}" / "besu"
        toml = tomllib.loads((besu_dir / "besu.toml").read_text())
        assert toml["min-gas-price"] == 0
        assert toml["rpc-http-host"] == "127.0.0.1" and set(toml["host-allowlist"]) <= {"localhost", "127.0.0.1"}
        assert (besu_dir / toml["genesis-file"]).resolve() == (out / "genesis.json").resolve()
        assert (besu_dir / toml["node-private-key-file"]).exists()
        assert toml["p2p-host"] == f"192.0.2.{9 + i}" and toml["discovery-enabled"] is False
        assert "QBFT" in toml["rpc-http-api"]
        assert toml["rpc-ws-enabled"] is True and toml["rpc-ws-host"] == "127.0.0.1" and toml["rpc-ws-port"] == 8546
        assert (besu_dir / toml["static-nodes-file"]).exists() and (besu_dir / toml["permissions-nodes-config-file"]).exists()


def test_static_nodes_name_the_other_validators_and_the_allowlist_all_of_them(network):
    out, _ = network
    enodes = {}
    for i in range(1, 5):
        pub = key_file_public(out / f"org{i}" / "besu" / "data" / "key").hex()
        enodes[f"org{i}"] = f"enode://{pub}@192.0.2.{9 + i}:30303"
    for i in range(1, 5):
        besu_dir = out / f"org{i}" / "besu"
        static = json.loads((besu_dir / "static-nodes.json").read_text())
        assert sorted(static) == sorted(v for k, v in enodes.items() if k != f"org{i}")
        allow = tomllib.loads((besu_dir / "permissions_config.toml").read_text())["nodes-allowlist"]
        assert sorted(allow) == sorted(enodes.values())


def test_kubo_setup_joins_the_private_swarm_with_the_other_organisations_only(network):
    out, _ = network
    for i in range(1, 5):
        script = (out / f"org{i}" / "kubo-setup.sh").read_text()
        assert "Addresses.API /ip4/127.0.0.1/tcp/5001" in script
        # The gateway binds the organisation's own address (192.0.2.9+i), never every interface.
        assert f"Addresses.Gateway /ip4/192.0.2.{9 + i}/tcp/8080" in script and "Gateway.NoFetch true" in script
        assert "Addresses.Gateway /ip4/0.0.0.0" not in script
        assert "LIBP2P_FORCE_PNET=1" in script and "swarm.key" in script
        assert "ipfs bootstrap rm --all" in script
        added = [line.split()[-1] for line in script.splitlines() if line.startswith("ipfs bootstrap add")]
        assert added == [f"/ip4/192.0.2.{9 + j}/tcp/4001/p2p/{PEER_IDS[j - 1]}" for j in range(1, 5) if j != i]
        peering = json.loads(script.split("Peering.Peers '", 1)[1].split("'", 1)[0])
        assert [p["ID"] for p in peering] == [PEER_IDS[j - 1] for j in range(1, 5) if j != i]


def test_fedledger_node_configs_load_and_point_at_their_own_local_chain_and_ipfs_nodes(network):
    out, _ = network
    genesis = json.loads((out / "genesis.json").read_text())
    for i in range(1, 5):
        base = out / f"org{i}"
        cfg = NodeConfig.load(base / "node.toml")
        besu = tomllib.loads((base / "besu" / "besu.toml").read_text())
        assert cfg.name == f"org{i}" and cfg.chain.poa is True
        assert cfg.chain.chain_id == genesis["config"]["chainId"]
        assert cfg.chain.rpc_url == f"http://127.0.0.1:{besu['rpc-http-port']}"
        assert cfg.ipfs.api_url == "http://127.0.0.1:5001"
        assert cfg.keystore.password.startswith("env:") and cfg.workload.org_index == i - 1
        assert cfg.workload.num_orgs == 4
        assert cfg.chain.ws_url == f"ws://127.0.0.1:{besu['rpc-ws-port']}"
        # Every other member's blobs come from its gateway, on its host.
        assert cfg.ipfs.gateways == {"0x" + f"{j:02x}" * 20: f"http://192.0.2.{9 + j}:8080" for j in range(1, 5) if j != i}


def test_secrets_are_written_owner_only_and_kept_on_a_second_run(network, tmp_path):
    out, result = network
    key = out / "swarm.key"
    lines = key.read_text().splitlines()
    assert lines[:2] == ["/key/swarm/psk/1.0.0/", "/base16/"] and len(bytes.fromhex(lines[2])) == 32
    for path in [key] + [out / f"org{i}" / "besu" / "data" / "key" for i in range(1, 5)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = key.read_text(), (out / "org1" / "besu" / "data" / "key").read_text()
    again = write_network(NetworkSpec.from_dict(consortium_doc()), out, dev_keys=True)
    assert (key.read_text(), (out / "org1" / "besu" / "data" / "key").read_text()) == before
    assert again["validators"] == result["validators"]


def test_production_input_needs_every_public_key_and_writes_no_node_key(tmp_path):
    with pytest.raises(NetworkSpecError, match="node_public_key is missing"):
        write_network(NetworkSpec.from_dict(consortium_doc()), tmp_path / "a")
    doc = consortium_doc()
    privs = [keys.PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
    for org, priv in zip(doc["organisation"], privs):
        org["node_public_key"] = priv.public_key.to_hex()
    result = write_network(NetworkSpec.from_dict(doc), tmp_path / "b")
    assert list(result["validators"].values()) == [p.public_key.to_checksum_address() for p in privs]
    assert not list((tmp_path / "b").rglob("key"))


@pytest.mark.parametrize("change, message", [
    ({"organisation": []}, "at least one"),
    ({"chain_id": 0}, "out of range"),
    ({"request_timeout_seconds": 1}, "request_timeout_seconds"),
])
def test_inconsistent_consortium_settings_are_refused(change, message):
    with pytest.raises(NetworkSpecError, match=message):
        NetworkSpec.from_dict(consortium_doc(**change))


def test_duplicate_organisations_or_unreachable_hosts_are_refused():
    doc = consortium_doc()
    doc["organisation"][1]["name"] = "org1"
    with pytest.raises(NetworkSpecError, match="used twice"):
        NetworkSpec.from_dict(doc)
    doc = consortium_doc()
    doc["organisation"][2]["host"] = "0.0.0.0"
    with pytest.raises(NetworkSpecError, match="not an address"):
        NetworkSpec.from_dict(doc)
    doc = consortium_doc()
    doc["organisation"][0]["ipfs_peer_id"] = "not-a-peer"
    with pytest.raises(NetworkSpecError, match="not a peer id"):
        NetworkSpec.from_dict(doc)


def test_fewer_than_four_validators_is_allowed_with_a_warning(tmp_path):
    result = write_network(NetworkSpec.from_dict(consortium_doc(n=2)), tmp_path / "n", dev_keys=True)
    assert any("3f+1" in w for w in result["warnings"])


def test_the_script_writes_the_network_from_a_consortium_file(tmp_path):
    example = subprocess.run([sys.executable, str(ROOT / "scripts" / "qbft_genesis.py"), "--example"],
                             capture_output=True, text=True, check=True).stdout
    assert "[[organisation]]" in example and "chain_id" in example
    spec = tmp_path / "consortium.toml"
    spec.write_text("chain_id = 47110\n" + "".join(
        f'[[organisation]]\nname = "org{i}"\nhost = "192.0.2.{i}"\n' for i in range(1, 5)))
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "qbft_genesis.py"), str(spec), "--out",
                          str(tmp_path / "net"), "--dev-keys", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    genesis = json.loads((tmp_path / "net" / "genesis.json").read_text())
    assert decode_qbft_extra_data(genesis["extraData"])["validators"] == list(result["validators"].values())
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "qbft_genesis.py"), str(spec), "--out",
                          str(tmp_path / "net2")], capture_output=True, text=True)
    assert bad.returncode == 1 and "node_public_key is missing" in bad.stderr


def test_adding_an_organisation_later_keeps_the_genesis_and_updates_everyones_peer_lists(network):
    out, result = network
    genesis_before = (out / "genesis.json").read_bytes()
    doc = consortium_doc(n=4)
    for i, org in enumerate(doc["organisation"], start=1):
        org["node_public_key"] = "0x" + key_file_public(out / f"org{i}" / "besu" / "data" / "key").hex()
    newcomer = keys.PrivateKey(bytes([9]) * 32)
    doc["organisation"].append({"name": "org5", "host": "192.0.2.99", "node_public_key": newcomer.public_key.to_hex()})
    again = write_network(NetworkSpec.from_dict(doc), out)
    assert (out / "genesis.json").read_bytes() == genesis_before  # the same chain
    assert any("org5" in w and "qbft_proposeValidatorVote" in w for w in again["warnings"])
    new_enode = f"enode://{newcomer.public_key.to_bytes().hex()}@192.0.2.99:30303"
    for i in range(1, 5):
        assert new_enode in json.loads((out / f"org{i}" / "besu" / "static-nodes.json").read_text())
        allow = tomllib.loads((out / f"org{i}" / "besu" / "permissions_config.toml").read_text())["nodes-allowlist"]
        assert new_enode in allow
    assert NodeConfig.load(out / "org5" / "node.toml").workload.num_orgs == 5
