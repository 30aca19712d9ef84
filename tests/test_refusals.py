"""Operator mistakes get a message that says what to do, before anything is sent."""

import pytest
from eth_account import Account

from fedledger.node.errors import ContractRevert
from fedledger.node.peer.config import Chain, Ipfs, Keystore, NodeConfig, Organisation
from fedledger.node.chain.deployment import Deployment, DeploymentError
from fedledger.node.chain.keys import DEV_SCRYPT_N, create_keystore
from fedledger.node.peer.build import build_peer

pytestmark = pytest.mark.chain


def deployment_of(ledger, address=None) -> Deployment:
    return Deployment(chain_id=31337, address=address or ledger.address, abi_sha256=ledger.admin.artifact.abi_sha256,
                      block=0, admin=ledger.accounts[0].address, tx_hash="0x", solc_version="0.8.30",
                      rpc_url=ledger.rpc_url)


def test_a_deployment_file_naming_an_address_without_code_is_refused(ledger):
    with pytest.raises(DeploymentError, match="no contract at .* chain was reset"):
        deployment_of(ledger, address=Account.create().address).client()


def test_a_node_whose_key_is_not_a_member_refuses_to_start_and_names_the_fix(ledger, tmp_path, monkeypatch):
    dep_path = tmp_path / "deployment.json"
    deployment_of(ledger).save(dep_path)
    monkeypatch.setenv("ORG_PW", "pw")
    address = create_keystore(tmp_path / "key.json", "pw", scrypt_n=DEV_SCRYPT_N)
    cfg = NodeConfig(organisation=Organisation(name="orgX", work_dir=tmp_path / "work"),
                     chain=Chain(rpc_url=ledger.rpc_url, deployment=dep_path), ipfs=Ipfs(api_url="http://127.0.0.1:9"),
                     keystore=Keystore(path=tmp_path / "key.json", password="env:ORG_PW"))
    with pytest.raises(ValueError, match=rf"\({address}\) is not a member.*fedledger member add {address} --name orgX"):
        build_peer(cfg)


def test_removing_an_unknown_member_is_refused_with_NotMember(ledger):
    stranger = Account.create().address
    with pytest.raises(ContractRevert) as info:
        ledger.admin.remove_member(stranger)
    assert info.value.error == "NotMember" and info.value.args_["who"] == stranger
