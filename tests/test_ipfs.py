"""The IPFS store against real js-ipfs daemons: round trips, content moving between two nodes
(as between two organisations), reproducible CIDs, integrity and size checks, timeouts for
content nobody has, the pin policy, and daemons that start, crash and restart cleanly."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from fedledger.node.storage.ipfs import (
    GatewayClient,
    IntegrityError,
    IpfsClient,
    IpfsTimeout,
    IpfsUnavailable,
    PinPolicy,
    SizeLimitExceeded,
    StorageError,
    raw_cid,
)
from fedledger.node.storage.daemon import IpfsDaemon, free_port
from fedledger.node.storage.modelfile import ModelRejected, ModelSpec, read_model, write_model, write_model_file

pytestmark = pytest.mark.ipfs

PARENT = "cd" * 32


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model(seed: int, member: str = "org-a") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((256, 1024)).astype(np.float32), "b": rng.standard_normal(256).astype(np.float32)}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def clients(ipfs_pair):
    a, b = ipfs_pair
    with a.client() as ca, b.client() as cb:
        yield ca, cb


# --------------------------------------------------------------------------- the node


def test_dev_node_config_is_loopback_only(ipfs_node):
    cfg = json.loads(ipfs_node.config_path.read_text())
    assert cfg["Bootstrap"] == []
    assert cfg["Addresses"]["Delegates"] == []
    assert cfg["Discovery"]["MDNS"]["Enabled"] is False
    assert cfg["Discovery"]["webRTCStar"]["Enabled"] is False
    assert cfg["Swarm"]["DisableNatPortMap"] is True
    listen = cfg["Addresses"]["Swarm"] + [cfg["Addresses"][k] for k in ("API", "Gateway", "RPC")]
    assert all(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in listen), listen
    assert cfg["Addresses"]["RPC"].endswith("/tcp/0")
    with ipfs_node.client() as c:
        assert all("/ip4/127.0.0.1/" in a for a in c.id()["Addresses"])


def test_daemon_runs_with_tcp_nodelay_preloaded(ipfs_node):
    """Without it a cross-node block fetch waits on delayed ACKs (about 250 ms, see the file)."""
    from fedledger.node.storage.daemon import TCP_NODELAY, _env_of

    assert f'--require "{TCP_NODELAY}"' in _env_of(ipfs_node.pid)["NODE_OPTIONS"]
    assert "setNoDelay(true)" in TCP_NODELAY.read_text()


def test_node_reports_its_peer_id_and_version(ipfs_client, ipfs_node):
    assert ipfs_client.id()["ID"] == ipfs_node.peer_id
    assert ipfs_client.version()["Version"]


def test_client_for_a_node_that_is_not_running_raises_unavailable():
    with IpfsClient(f"http://127.0.0.1:{free_port()}", timeout=2) as c:
        with pytest.raises(IpfsUnavailable, match="is it running"):
            c.id()


# --------------------------------------------------------------------------- content


def test_bytes_round_trip_through_one_node(ipfs_client):
    data = random_bytes(700_000, seed=1)  # several 256 KiB blocks
    cid = ipfs_client.add_bytes(data)
    assert ipfs_client.cat(cid) == data


def test_model_file_round_trips_through_one_node_with_matching_sha256(ipfs_client, tmp_path):
    tensors = model(seed=2)
    src = tmp_path / "update.safetensors"
    digest = write_model_file(src, tensors, {"task": "t", "round": "1", "kind": "update", "parent": PARENT,
                                              "member": "org-a"})
    cid = ipfs_client.add_file(src)
    dst = tmp_path / "fetched" / "update.safetensors"
    assert ipfs_client.cat_to_file(cid, dst, expected_sha256=digest) == digest
    out, meta = read_model(dst, digest, ModelSpec.from_tensors(tensors))
    np.testing.assert_array_equal(out["w"], tensors["w"])
    assert meta["member"] == "org-a"


def test_add_returns_a_cidv1_base32_raw_leaf_cid_anyone_can_recompute(ipfs_client):
    data = b"a small update fits in one raw block"
    cid = ipfs_client.add_bytes(data)
    assert cid == raw_cid(data)
    assert cid.startswith("bafkrei")


def test_update_added_on_node_a_is_fetched_by_node_b_with_matching_sha256(clients, tmp_path):
    ca, cb = clients
    tensors = model(seed=3)
    meta = {"task": "t", "round": "1", "kind": "update", "parent": PARENT, "member": "org-a"}
    data = write_model(tensors, meta)
    cid = ca.add_bytes(data)
    assert not cb.is_pinned(cid)
    dst = tmp_path / "from-a.safetensors"
    digest = cb.cat_to_file(cid, dst, expected_sha256=sha(data), max_bytes=len(data))
    assert digest == sha(data)
    assert dst.read_bytes() == data
    out, _ = read_model(dst, sha(data), ModelSpec.from_tensors(tensors), expected_meta={"member": "org-a"})
    np.testing.assert_array_equal(out["b"], tensors["b"])


def test_same_bytes_give_the_same_cid_on_both_nodes(clients):
    ca, cb = clients
    data = random_bytes(1_500_000, seed=4)  # multi-block: the DAG layout must match too
    cid_a = ca.add_bytes(data)
    cid_b = cb.add_bytes(data)
    assert cid_a == cid_b
    assert cid_a.startswith("bafybei")  # CIDv1, dag-pb root, base32


def test_add_file_and_add_bytes_give_the_same_cid(ipfs_client, tmp_path):
    data = random_bytes(600_000, seed=5)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert ipfs_client.add_file(path) == ipfs_client.add_bytes(data)


# --------------------------------------------------------------------------- hostile content


def test_cid_whose_content_does_not_match_the_chain_sha256_is_refused(clients, tmp_path):
    ca, cb = clients
    real = random_bytes(300_000, seed=6)
    recorded = sha(random_bytes(300_000, seed=7))  # what the chain says the update is
    cid = ca.add_bytes(real)
    dst = tmp_path / "update.safetensors"
    with pytest.raises(IntegrityError) as info:
        cb.cat_to_file(cid, dst, expected_sha256=recorded)
    assert info.value.reason_code == "hash_mismatch"
    assert info.value.expected == recorded and info.value.actual == sha(real)
    assert leftovers(tmp_path) == []  # no file, no temporary file


def test_content_beyond_max_bytes_is_refused_while_streaming(ipfs_client, tmp_path):
    data = random_bytes(2_000_000, seed=8)
    cid = ipfs_client.add_bytes(data)
    with pytest.raises(SizeLimitExceeded) as info:
        ipfs_client.cat_to_file(cid, tmp_path / "big", expected_sha256=sha(data), max_bytes=1_000_000)
    assert info.value.reason_code == "too_large"
    with pytest.raises(SizeLimitExceeded):
        ipfs_client.cat(cid, max_bytes=1_000_000)
    assert leftovers(tmp_path) == []


def test_existing_file_is_untouched_when_a_download_is_refused(ipfs_client, tmp_path):
    dst = tmp_path / "global.safetensors"
    dst.write_bytes(b"previous global model")
    cid = ipfs_client.add_bytes(b"something else")
    with pytest.raises(IntegrityError):
        ipfs_client.cat_to_file(cid, dst, expected_sha256="00" * 32)
    assert dst.read_bytes() == b"previous global model"


@pytest.mark.timeout(60)
def test_cat_of_a_cid_no_node_has_times_out_instead_of_hanging(clients):
    _, cb = clients
    missing = raw_cid(b"never added to any node " + os.urandom(16))
    with pytest.raises(IpfsTimeout) as info:
        cb.cat(missing, timeout=2)
    assert info.value.reason_code == "unavailable"


@pytest.mark.timeout(60)
def test_cat_to_file_of_a_cid_no_node_has_times_out_and_leaves_nothing(clients, tmp_path):
    _, cb = clients
    missing = raw_cid(b"never added either " + os.urandom(16))
    with pytest.raises(IpfsTimeout):
        cb.cat_to_file(missing, tmp_path / "x", expected_sha256="00" * 32, timeout=2)
    assert leftovers(tmp_path) == []


def test_fetched_update_that_is_not_a_model_is_rejected_by_the_reader(clients, tmp_path):
    ca, cb = clients
    hostile = b"\x80\x04\x95" + os.urandom(5000)  # pickle-looking bytes, honestly hashed
    cid = ca.add_bytes(hostile)
    dst = tmp_path / "update"
    digest = cb.cat_to_file(cid, dst, expected_sha256=sha(hostile))
    spec = ModelSpec.from_tensors(model(seed=0))
    with pytest.raises(ModelRejected) as info:
        read_model(dst, digest, spec)
    assert info.value.reason_code == "bad_header"
    assert isinstance(info.value, StorageError)


def test_malformed_cid_is_an_ipfs_error_not_a_crash(ipfs_client):
    with pytest.raises(StorageError) as info:
        ipfs_client.cat("not-a-cid", timeout=5)
    assert not isinstance(info.value, IpfsTimeout)


# --------------------------------------------------------------------------- blocks written directly


@pytest.mark.parametrize("size", [0, 1, 262_144, 262_145, 174 * 262_144, 174 * 262_144 + 1])
def test_file_cid_is_the_cid_the_nodes_importer_gives(ipfs_node, tmp_path, size):
    """One raw block, a dag-pb root over raw leaves, and a two-level tree (175 leaves)."""
    from fedledger.node.storage.unixfs import file_cid

    path = tmp_path / "blob"
    path.write_bytes(random_bytes(size, seed=size % 997))
    with IpfsClient(ipfs_node.api_url, direct=False) as importer:
        assert file_cid(path) == importer.add_file(path)


def test_add_file_writes_the_blocks_into_a_local_node_which_then_serves_them(ipfs_pair, tmp_path):
    import requests

    a, b = ipfs_pair
    path = tmp_path / "update.safetensors"
    data = random_bytes(3 * 262_144 + 11, seed=31)
    path.write_bytes(data)
    with a.client() as ca, b.client() as cb:
        assert ca.local_blocks() == a.repo_dir / "blocks"
        before = _blocks(a)
        cid = ca.add_file(path)
        assert len(_blocks(a) - before) == 5  # four leaves and their root, written by this process
        assert ca.is_pinned(cid)
        assert cb.cat(cid, timeout=20) == data  # the node serves them to the swarm
        assert requests.get(f"{a.gateway_url}/ipfs/{cid}", timeout=10).content == data
        with IpfsClient(a.api_url, direct=False) as importer:
            assert importer.add_file(path) == cid
        assert len(_blocks(a) - before) == 5  # the importer found every block it would write


def test_a_node_whose_store_is_not_on_this_disk_gets_its_files_through_its_api(ipfs_node, tmp_path, monkeypatch):
    """A repo path that looks like a block store here but is not the node's: the probe block is not
    found in it, so nothing is written there and `add_file` goes through the node's importer."""
    fake = tmp_path / "repo"
    (fake / "blocks").mkdir(parents=True)
    (fake / "blocks" / "SHARDING").write_text("/repo/flatfs/shard/v1/next-to-last/2\n")
    path = tmp_path / "blob"
    path.write_bytes(random_bytes(300_000, seed=32))
    with IpfsClient(ipfs_node.api_url) as client:
        real_call = client._call
        monkeypatch.setattr(client, "_call", lambda cmd, *a, **k: [{"RepoPath": str(fake)}] if cmd == "repo/stat"
                            else real_call(cmd, *a, **k))
        assert client.local_blocks() is None
        cid = client.add_file(path)
        assert client.is_pinned(cid)
    assert [p.name for p in (fake / "blocks").iterdir()] == ["SHARDING"]


# --------------------------------------------------------------------------- gateways


@pytest.fixture
def gateway():
    with closing(GatewayClient(timeout=10)) as g:
        yield g


def test_blob_stored_on_node_a_is_read_from_a_gateway_with_matching_sha256(ipfs_pair, gateway, tmp_path):
    a, _ = ipfs_pair
    data = random_bytes(700_000, seed=21)  # three 256 KiB chunks: a file of several blocks
    with a.client() as ca:
        cid = ca.add_bytes(data)
    dst = tmp_path / "update.safetensors"
    assert gateway.fetch_to_file(a.gateway_url, cid, dst, expected_sha256=sha(data), max_bytes=len(data)) == sha(data)
    assert dst.read_bytes() == data
    assert leftovers(tmp_path) == ["update.safetensors"]


def test_gateway_content_is_held_to_the_chain_sha256_and_the_size_limit(ipfs_pair, gateway, tmp_path):
    a, _ = ipfs_pair
    data = random_bytes(300_000, seed=22)
    with a.client() as ca:
        cid = ca.add_bytes(data)
    with pytest.raises(IntegrityError) as info:
        gateway.fetch_to_file(a.gateway_url, cid, tmp_path / "x", expected_sha256=sha(b"what the chain says"))
    assert info.value.actual == sha(data)
    with pytest.raises(SizeLimitExceeded):
        gateway.fetch_to_file(a.gateway_url, cid, tmp_path / "x", expected_sha256=sha(data), max_bytes=100_000)
    assert leftovers(tmp_path) == []


def _blocks(node: IpfsDaemon) -> set[str]:
    return {f.name for f in (node.repo_dir / "blocks").rglob("*.data")}


def test_a_gateway_serves_only_what_its_member_holds_and_never_fetches_for_callers(ipfs_pair):
    """A caller who can reach member B's gateway must not read member A's blobs through it."""
    import requests

    a, b = ipfs_pair
    data = random_bytes(600_000, seed=23)
    with a.client() as ca, b.client() as cb:
        cid = ca.add_bytes(data)
        before = _blocks(b)
        refused = requests.get(f"{b.gateway_url}/ipfs/{cid}", timeout=10)
        assert refused.status_code == 404 and "not held by this member" in refused.text
        assert refused.headers["x-fedledger-gateway"] == "local-only"
        wants = cb._call("bitswap/wantlist")[0].get("Keys") or []
        assert _blocks(b) == before and wants == []  # nothing was asked of the swarm
        assert requests.get(f"{a.gateway_url}/ipfs/{cid}", timeout=10).content == data  # its holder serves it
        for path in (f"/ipns/{cid}", "/ipfs/not-a-cid", "/", f"/ipfs/z{cid[1:]}"):
            assert requests.get(f"{b.gateway_url}{path}", timeout=10).status_code in (400, 404), path
        assert cb.cat(cid) == data  # the swarm would have found it: B now holds it, and serves it
        assert requests.get(f"{b.gateway_url}/ipfs/{cid}", timeout=10).content == data


@pytest.mark.parametrize("size", [0, 1, 262_144, 262_145, 174 * 262_144 + 5])
def test_a_gateway_streams_a_held_file_straight_from_its_blocks(ipfs_pair, size):
    """One block, several, and a two-level tree (more than 174 leaves): the bytes added, served
    from the block files by the gateway itself, not reassembled by js-ipfs."""
    import requests

    a, _ = ipfs_pair
    data = random_bytes(size, seed=size % 1000)
    with a.client() as ca:
        cid = ca.add_bytes(data)
    resp = requests.get(f"{a.gateway_url}/ipfs/{cid}", timeout=30)
    assert resp.status_code == 200 and resp.headers["x-fedledger-gateway"] == "local-only, direct"
    assert int(resp.headers["content-length"]) == size and resp.content == data


def test_a_gateway_refuses_a_file_it_holds_only_in_part_and_asks_nobody_for_the_rest(ipfs_pair):
    import requests

    from fedledger.node.storage.blocks import flatfs_block_path

    a, _ = ipfs_pair
    data = random_bytes(600_000, seed=24)  # a root and three leaves
    with a.client() as ca:
        before = _blocks(a)
        cid = ca.add_bytes(data)
        root = flatfs_block_path(a.repo_dir, cid)
        leaves = sorted((a.repo_dir / "blocks").rglob("*.data"))
        leaf = next(p for p in leaves if p.name not in before and p != root)
        leaf.unlink()
        resp = requests.get(f"{a.gateway_url}/ipfs/{cid}", timeout=10)
        assert resp.status_code == 404 and "does not hold the whole file" in resp.text
        assert (ca._call("bitswap/wantlist")[0].get("Keys") or []) == []


def test_a_crafted_tree_of_too_many_blocks_is_refused_at_once_and_the_gateway_serves_on(ipfs_pair):
    """A tree that reached a member's store (through the swarm, say) and names one leaf 70,000 times:
    the walk stops at 65,536 blocks, the request is refused, and the next one is served."""
    import time

    import requests

    from fedledger.node.storage.blocks import put_block
    from fedledger.node.storage.unixfs import _leaf, _parent, cid_string

    a, _ = ipfs_pair
    blocks = a.repo_dir / "blocks"
    leaf = _leaf(b"x" * 64, lambda mh, data: put_block(blocks, mh, data))
    root = _parent([leaf] * 70_000, lambda mh, data: put_block(blocks, mh, data))
    t0 = time.monotonic()
    resp = requests.get(f"{a.gateway_url}/ipfs/{cid_string(root.cid)}", timeout=30)
    assert resp.status_code == 404 and "does not hold the whole file" in resp.text
    assert time.monotonic() - t0 < 10
    data = random_bytes(300_000, seed=25)
    with a.client() as ca:
        cid = ca.add_bytes(data)
    assert requests.get(f"{a.gateway_url}/ipfs/{cid}", timeout=10).content == data


def test_dead_gateway_and_hostile_cid_are_storage_errors(gateway, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(IpfsUnavailable):
        gateway.fetch_to_file(dead, raw_cid(b"x"), tmp_path / "x", timeout=5)
    for cid in ["../../api/v0/shutdown", "bafy?x=1", ""]:
        with pytest.raises(StorageError, match="not a CID"):
            gateway.fetch_to_file(dead, cid, tmp_path / "x", timeout=5)
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- pin policy


def _round_on_b(ca: IpfsClient, cb: IpfsClient, seed: int) -> tuple[str, str, str]:
    """One round as seen by member B: B's own update, A's update (fetched by B as leader),
    and the global model A published."""
    own = cb.add_bytes(random_bytes(1000, seed))
    other = ca.add_bytes(random_bytes(1000, seed + 1))
    cb.cat(other, timeout=20)
    cb.pin_add(other, timeout=20)  # the leader keeps inputs until the round is final
    global_cid = ca.add_bytes(random_bytes(1000, seed + 2))
    return own, other, global_cid


def test_pin_policy_drops_others_updates_and_keeps_own_and_global(clients):
    ca, cb = clients
    own, other, global_cid = _round_on_b(ca, cb, seed=100)
    unpinned = PinPolicy(collect_garbage=False).after_finalize(cb, [own], global_cid, [other])
    assert unpinned == [other]
    assert cb.is_pinned(own)
    assert cb.is_pinned(global_cid)  # fetched from A and pinned
    assert not cb.is_pinned(other)
    removed = cb.repo_gc()
    assert other in removed
    assert own not in removed and global_cid not in removed


def test_pin_policy_can_keep_others_updates(clients):
    ca, cb = clients
    own, other, global_cid = _round_on_b(ca, cb, seed=200)
    assert PinPolicy(keep_others_updates=True).after_finalize(cb, [own], global_cid, [other]) == []
    assert cb.is_pinned(other)
    assert other not in cb.repo_gc()


def test_pin_policy_never_unpins_bytes_identical_to_own_update(clients):
    ca, cb = clients
    same = random_bytes(1000, seed=300)
    own = cb.add_bytes(same)
    other = ca.add_bytes(same)  # another member submitted byte-identical weights
    global_cid = ca.add_bytes(random_bytes(1000, seed=301))
    assert own == other
    assert PinPolicy().after_finalize(cb, [own], global_cid, [other]) == []
    assert cb.is_pinned(own)


# --------------------------------------------------------------------------- daemon lifecycle


def test_daemon_restarts_after_being_killed_and_stops_without_leaving_a_process(ipfs_daemon_factory):
    daemon = ipfs_daemon_factory("crashy")
    with daemon.client() as c:
        cid = c.add_bytes(b"survives a crash")
    first_pid = daemon.pid
    daemon.kill()  # SIGKILL: leaves repo.lock and the api file behind
    assert (daemon.repo_dir / "repo.lock").exists()
    assert not daemon.running

    daemon.start(timeout=60)  # must clear the stale lock instead of waiting 20 s or failing
    assert daemon.running and daemon.pid != first_pid
    with daemon.client() as c:
        assert c.cat(cid, timeout=10) == b"survives a crash"

    again = IpfsDaemon(daemon.repo_dir, daemon.name)
    again.start(timeout=30)  # adopts the running daemon rather than starting a second one
    assert again.pid == daemon.pid

    pid = daemon.pid
    daemon.stop()
    assert not daemon.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone and reaped, not a zombie
    assert not (daemon.repo_dir / "repo.lock").exists()
    assert not daemon.pid_file.exists()
    daemon.stop()  # idempotent


def test_a_port_taken_between_picking_and_listening_is_replaced_not_waited_on(ipfs_daemon_factory):
    """Another process takes the API port after the repo recorded it (the race of free_port): the
    daemon logs EADDRINUSE and may keep running; start must move to fresh ports at once."""
    import socket
    import time

    daemon = ipfs_daemon_factory("taken", start=False)
    daemon.init()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = int(daemon.api_url.rsplit(":", 1)[1])
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    try:
        t0 = time.monotonic()
        daemon.start(timeout=60)
        assert daemon.running and int(daemon.api_url.rsplit(":", 1)[1]) != port
        assert time.monotonic() - t0 < 45  # not the whole timeout
    finally:
        squatter.close()
        daemon.stop()


def test_init_is_idempotent_and_keeps_ports_and_identity(ipfs_daemon_factory):
    daemon = ipfs_daemon_factory("idem", start=False)
    daemon.init()
    url, peer = daemon.api_url, daemon.peer_id
    daemon.init()
    assert (daemon.api_url, daemon.peer_id) == (url, peer)
