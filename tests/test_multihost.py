"""Three organisations on three "hosts": network namespaces on this machine, joined by a bridge.

Each organisation gets its own namespace and address (10.77.0.11-13), its own IPFS node (API on
127.0.0.1:5001 inside its namespace, swarm on its address), its own work directory, keystore,
password file and node process; the chain (Anvil) runs in a fourth namespace at 10.77.0.2. The
bridge lives in a fifth namespace, so the test adds nothing to this machine's own network: the
10.77.0.0/24 addresses exist only inside the namespaces it creates, and every namespace is
deleted at the end. The organisations share no file except what an operator hands over: the
deployment file, addresses and swarm multiaddrs. Every step is an operator command.

Needs root (CAP_NET_ADMIN) and iproute2; without them the test is skipped with the exact error.
Without the devnet tools of `make setup` (Anvil, js-ipfs) it fails, saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedledger.node.procs import wait_until
from fedledger.node.peer.config import NodeConfig
from fedledger.node.chain.devnet import DEV_KEYS, anvil_binary
from fedledger.node.storage.orgnode import OrgIpfsDaemon

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SUBNET = "10.77.0"
CHAIN_ADDR = f"{SUBNET}.2"
ORGS = {"org1": f"{SUBNET}.11", "org2": f"{SUBNET}.12", "org3": f"{SUBNET}.13"}
RPC_URL = f"http://{CHAIN_ADDR}:8545"


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


class Lab:
    """Network namespaces joined by a bridge in a namespace of its own; deleted by `close`."""

    def __init__(self, tag: str):
        self.tag = tag
        self.hub = f"{tag}-hub"
        self.namespaces: list[str] = []

    def _must(self, *args: str) -> None:
        out = _ip(*args)
        if out.returncode != 0:
            raise RuntimeError(f"`ip {' '.join(args)}` failed: {out.stderr.strip()}")

    def add_namespace(self, name: str) -> None:
        self._must("netns", "add", name)
        self.namespaces.append(name)
        self._must("-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        self.add_namespace(self.hub)
        self._must("-n", self.hub, "link", "add", "br0", "type", "bridge")
        self._must("-n", self.hub, "link", "set", "br0", "up")

    def host(self, name: str, address: str) -> str:
        """A namespace with one interface, eth0 at `address`/24, plugged into the bridge."""
        ns = f"{self.tag}-{name}"
        self.add_namespace(ns)
        port = f"p-{name}"[:15]
        self._must("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._must("-n", self.hub, "link", "set", port, "master", "br0")
        self._must("-n", self.hub, "link", "set", port, "up")
        self._must("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        self._must("-n", ns, "link", "set", "eth0", "up")
        return ns

    def pids(self) -> list[int]:
        out = []
        for ns in self.namespaces:
            res = _ip("netns", "pids", ns)
            out += [int(p) for p in res.stdout.split()] if res.returncode == 0 else []
        return out

    def close(self) -> None:
        """Stop whatever still runs inside the namespaces (all started by this test), delete them."""
        for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                wait_until(lambda: not self.pids(), timeout=grace, interval=0.1, what="namespace processes to exit")
            except TimeoutError:
                pass  # the next signal is stronger
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns)
        self.namespaces.clear()


def _namespaces_or_skip(tag: str) -> None:
    if shutil.which("ip") is None:
        pytest.skip("cannot create network namespaces: the `ip` command (iproute2) is not installed; "
                    "install it with `apt-get install -y iproute2` (as root)")
    probe = f"{tag}-probe"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        pytest.skip(f"cannot create network namespaces: `ip netns add` failed: {made.stderr.strip()}")
    try:
        for args in (["netns", "exec", probe, "true"],
                     ["-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"]):
            out = _ip(*args)
            if out.returncode != 0:
                pytest.skip(f"cannot use network namespaces: `ip {' '.join(args)}` failed: {out.stderr.strip()}")
    finally:
        _ip("netns", "del", probe)


@pytest.fixture
def lab(request):
    tag = f"flt{os.getpid() % 100000}"
    _namespaces_or_skip(tag)
    # Namespaces need root, which a machine may rightly not grant (a skip); the devnet tools come
    # from `make setup`, so their absence is a failure that says so.
    from tests.plugins.chain import require_anvil
    from tests.plugins.ipfs import require_jsipfs

    require_jsipfs()
    require_anvil()
    lab = Lab(tag)
    request.addfinalizer(lab.close)
    lab.build()
    return lab


class Org:
    """One organisation: its namespace, address and directory; runs operator commands there."""

    def __init__(self, name: str, ns: str, address: str, home: Path):
        self.name, self.ns, self.address, self.home = name, ns, address, home
        home.mkdir(parents=True)
        self.password_file = home / "password"
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, sys.executable, "-m", "fedledger.node.cli", *map(str, args)]

    def run(self, *args: str, env: dict | None = None, timeout: float = 180) -> str:
        out = subprocess.run(self.argv(*args), cwd=self.home, env={**self.env, **(env or {})}, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"{self.name}: fedledger {' '.join(map(str, args))} exited {out.returncode}:\n" \
                                    f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def json(self, *args: str, **kw) -> dict:
        return json.loads(self.run(*args, "--json", **kw))

    def popen(self, *args: str, log: Path) -> subprocess.Popen:
        with open(log, "ab") as fh:
            return subprocess.Popen(self.argv(*args), cwd=self.home, env=self.env, stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_three_organisations_on_separate_namespaces_federate_two_rounds(lab, tmp_path, request):
    chain_ns = lab.host("chain", CHAIN_ADDR)
    orgs = [Org(name, lab.host(name, addr), addr, tmp_path / name) for name, addr in ORGS.items()]
    org1, org2, org3 = orgs

    # The chain: Anvil on the chain namespace's address (the only place it listens).
    chain_log = tmp_path / "chain" / "anvil.log"
    chain_log.parent.mkdir()
    with open(chain_log, "wb") as fh:
        anvil = subprocess.Popen(["ip", "netns", "exec", chain_ns, str(anvil_binary()), "--host", CHAIN_ADDR,
                                  "--port", "8545", "--chain-id", "31337", "--accounts", "10"],
                                 stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    request.addfinalizer(lambda: _stop(anvil))
    _wait_for(lambda: f"Listening on {CHAIN_ADDR}:8545" in chain_log.read_text() or anvil.poll() is not None,
              30, "Anvil to listen")
    assert anvil.poll() is None, chain_log.read_text()

    # Keys: org1 is also the consortium admin, with the chain's funded dev account.
    org1.run("keys", "import", "keystore.json", "--key-from", "env:ADMIN_KEY", "--password", "file:password",
             "--scrypt-n", "16384", env={"ADMIN_KEY": DEV_KEYS[0]})
    for org in (org2, org3):
        org.run("keys", "new", "keystore.json", "--password", "file:password", "--scrypt-n", "16384")
    addresses = {org.name: org.run("keys", "address", "keystore.json").strip() for org in orgs}

    # IPFS: every organisation's node on the same loopback port of its own namespace, its swarm
    # on its own address; the multiaddrs are what the operators exchange.
    for org in orgs:
        request.addfinalizer(lambda repo=org.home / "ipfs": OrgIpfsDaemon(repo).stop())
    inited = {org.name: org.json("ipfs", "init", "--repo", "ipfs", "--swarm-host", org.address, "--swarm-port",
                                 "4001", "--api-port", "5001", "--gateway-port", "8080") for org in orgs}
    swarm = {name: info["swarm_addrs"][0] for name, info in inited.items()}
    gateway = {name: info["gateway_url"] for name, info in inited.items()}
    assert gateway["org2"] == f"http://{ORGS['org2']}:8080"
    starting = []
    for org in orgs:
        peers = [a for name, a in swarm.items() if name != org.name]
        proc = subprocess.Popen(org.argv("ipfs", "up", "--repo", "ipfs", *sum((["--bootstrap", a] for a in peers), []),
                                         "--json"), cwd=org.home, env=org.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        request.addfinalizer(lambda p=proc: _stop(p))
        starting.append((org, proc))
    for org, proc in starting:
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, f"{org.name} ipfs up: {out[-2000:]} {err[-2000:]}"
        info = json.loads(out)
        assert info["api_url"] == "http://127.0.0.1:5001" and info["swarm_addrs"] == [swarm[org.name]]

    def connected(org: Org) -> bool:
        status = org.json("ipfs", "status", "--repo", "ipfs")
        others = {a.rsplit("/", 1)[1] for name, a in swarm.items() if name != org.name}
        return others <= set(status["connected_peers"] or [])

    for org in orgs:  # each node reached the others over the bridge
        _wait_for(lambda: connected(org), 60, f"{org.name}'s IPFS node to connect to the others", interval=1.0)

    # The admin (org1) deploys, admits the three members and creates the task.
    admin = ["--keystore", "keystore.json", "--password", "file:password"]
    org1.run("deploy", "--rpc", RPC_URL, *admin, "--out", "deployment.json")
    for org in orgs:
        fund = [] if org is org1 else ["--fund", "10"]
        org1.run("member", "add", addresses[org.name], "--name", org.name, *fund, *admin)
    created = org1.json("task", "create", "--workload", "digits-mlp", "--seed", "2", "--rounds", "2", "--verifiers",
                        "1", "--ipfs-repo", "ipfs", *admin)
    assert created["task"] == 0 and created["config"]["max_participants"] == 3

    # Handed over: the deployment file, and to org2 and org3 the others' gateway URLs (org1 uses the
    # swarm alone). Each organisation writes its own config and runs its node.
    for i, org in enumerate(orgs):
        if org is not org1:
            shutil.copy(org1.home / "deployment.json", org.home / "deployment.json")
        gateways = [] if org is org1 else [f"--gateway={addresses[o.name]}={gateway[o.name]}"
                                           for o in orgs if o is not org]
        org.run("init", org.name, "--dir", ".", "--ipfs-repo", "ipfs", "--password", "file:password", "--task", "0",
                "--workload", "digits-mlp", "--org-index", str(i), "--num-orgs", "3", *gateways)
        cfg = NodeConfig.load(org.home / "node.toml")
        assert cfg.chain.rpc_url == RPC_URL and cfg.ipfs.api_url == "http://127.0.0.1:5001"
        for path in (cfg.keystore.path, cfg.chain.deployment, cfg.organisation.work_dir,
                     Path(cfg.keystore.password.removeprefix("file:"))):
            assert path.resolve().is_relative_to(org.home.resolve()), f"{org.name} depends on {path}"
    nodes = []
    for org in orgs:
        proc = org.popen("node", "run", "--config", "node.toml", log=org.home / "node.log")
        request.addfinalizer(lambda p=proc: _stop(p))
        nodes.append((org, proc))
    for org, proc in nodes:
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            logs = "\n".join(f"--- {o.name}\n{(o.home / 'node.log').read_text()[-3000:]}" for o in orgs)
            pytest.fail(f"the nodes did not finish the task within 300 s:\n{logs}")
        assert proc.returncode == 0, (org.home / "node.log").read_text()[-4000:]

    # The lineage, read by another organisation through its own namespace.
    shown = org2.json("task", "show", "0", "--deployment", "deployment.json")
    assert shown["completed"] and [r["round"] for r in shown["lineage"]] == [1, 2]
    genesis = hashlib.sha256((org1.home / "tasks" / "task0" / "genesis.safetensors").read_bytes()).hexdigest()
    assert shown["lineage"][0]["parent"] == genesis == shown["config"]["genesis_sha256"]
    assert shown["lineage"][1]["parent"] == shown["lineage"][0]["sha256"]
    assert shown["lineage"][1]["sha256"] == shown["global_sha256"]
    for r in shown["lineage"]:
        assert sorted(u["member"] for u in r["updates"]) == ["org1", "org2", "org3"]
    # Every organisation trained on the global model it fetched through its own IPFS node.
    for org in orgs:
        submitted = [json.loads(line) for line in (org.home / "metrics.jsonl").read_text().splitlines()
                     if json.loads(line)["event"] == "submitted"]
        assert [s["round"] for s in submitted] == [1, 2]
        assert (org.home / "models" / f"{shown['lineage'][0]['sha256']}.safetensors").exists()
    # org2 and org3 fetched from the other hosts' gateways (each round, at least one of them is not the
    # leader and fetches its aggregate), and none failed; org1 fetched through the swarm alone.
    def fetched(org: Org) -> tuple[int, int, int]:
        done = next(line for line in (org.home / "node.log").read_text().splitlines() if "completed; fetched" in line)
        counts = re.search(r"fetched (\d+) blobs from gateways and (\d+) through the swarm \((\d+) gateway failures", done)
        assert counts, done
        return int(counts[1]), int(counts[2]), int(counts[3])

    assert fetched(org2)[2] == fetched(org3)[2] == 0
    assert fetched(org2)[0] + fetched(org3)[0] >= 2
    assert fetched(org1)[0] == 0 and fetched(org1)[1] > 0
