"""The devnet CLI on real processes: a chain that survives down/up with members, tasks and rounds."""

import json
import subprocess
import sys

import pytest
from eth_account import Account

from fedledger.node.chain.client import ChainClient
from fedledger.node.protocol import Phase, TaskConfig
from fedledger.node.chain.deployment import Deployment
from fedledger.node.chain.devnet import DEV_KEYS, Devnet
from fedledger.node.procs import pid_alive

pytestmark = pytest.mark.chain


def fedledger(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedledger.node.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_devnet_restart_from_its_state_file_keeps_members_tasks_and_rounds(tmp_path):
    run = tmp_path / "run"
    up = fedledger("devnet", "up", "--dir", str(run), "--json")
    assert up.returncode == 0, up.stderr
    try:
        dep_path = run / "deployment.json"
        out = fedledger("deploy", "--devnet", str(run), "--out", str(dep_path))
        assert out.returncode == 0, out.stderr
        dep = Deployment.load(dep_path)
        admin = dep.client(account=Account.from_key(DEV_KEYS[0]))
        member = dep.client(account=Account.from_key(DEV_KEYS[1]))
        admin.add_member(member.sender, "org1")
        task, _ = admin.create_task(TaskConfig("bafkspec", "bafkgen", "ab" * 32, "fedavg", max_rounds=4))
        member.submit_update(task, 1, "ab" * 32, "bafkupd", "cd" * 32, 42)
        pid_before = json.loads(up.stdout)["chain"]["pid"]

        down = fedledger("devnet", "down", "--dir", str(run))
        assert down.returncode == 0, down.stderr
        assert not pid_alive(pid_before)
        assert fedledger("devnet", "status", "--dir", str(run)).returncode == 3

        up2 = fedledger("devnet", "up", "--dir", str(run), "--json")
        assert up2.returncode == 0, up2.stderr
        assert json.loads(up2.stdout)["chain"]["pid"] != pid_before
        admin = Deployment.load(dep_path).client(rpc_url=json.loads(up2.stdout)["chain"]["rpc_url"],
                                                 account=Account.from_key(DEV_KEYS[0]))
        assert admin.is_member(member.sender) and admin.member_info(member.sender)[1] == "org1"
        assert admin.task_config(task).max_rounds == 4
        info = admin.round_info(task, 1)
        assert (info.phase, info.count, info.total_samples) == (Phase.SUBMISSION, 1, 42)
        assert [e.name for e in admin.events(task=task)] == ["TaskCreated", "RoundOpened", "UpdateSubmitted"]
    finally:
        Devnet.load(run).down()


def test_deploy_refuses_a_deployment_file_for_another_chain(tmp_path, anvil):
    dep = Deployment(chain_id=99, address="0x" + "11" * 20, abi_sha256=ChainClient(anvil.rpc_url).artifact.abi_sha256,
                     block=0, admin="0x" + "22" * 20, tx_hash="0x", solc_version="0.8.30", rpc_url=anvil.rpc_url)
    from fedledger.node.chain.deployment import DeploymentError

    with pytest.raises(DeploymentError, match="chain id 31337"):
        dep.client()
