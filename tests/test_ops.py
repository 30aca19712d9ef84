"""Operator commands (keys, init, member, task, ipfs): what they write, what they refuse, the exit
codes scripts rely on, and the "Run a consortium" guide (docs/consortium.md) run for real."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from safetensors.numpy import save_file
from typer.testing import CliRunner

from fedledger.node.peer.config import NodeConfig
from fedledger.node.chain.deployment import Deployment, deploy
from fedledger.node.chain.devnet import DEV_KEYS, Devnet
from fedledger.node.storage.ipfs import IpfsClient
from fedledger.node.chain.keys import create_keystore, load_account
from fedledger.node.storage.modelfile import ModelSpec
from fedledger.node.cli.app import app as fedledger_app
from fedledger.node.errors import EXIT_INPUT, EXIT_REFUSED, EXIT_UNREACHABLE
from fedledger.node.storage.orgnode import OrgIpfsDaemon

from .guides import run_guide

ROOT = Path(__file__).resolve().parent.parent
PW_ENV = "FL_OPS_TEST_PASSWORD"
PASSWORD = "correct horse battery staple"
FAST = ["--scrypt-n", "1024"]  # throwaway test keys: a cheap KDF


@pytest.fixture
def cli():
    """The real `fedledger` app, run in-process."""
    runner = CliRunner()

    def run(*args, env=None):
        return runner.invoke(fedledger_app, [str(a) for a in args], env={PW_ENV: PASSWORD, **(env or {})})

    return run


def as_json(result) -> dict:
    return json.loads(result.stdout)


# ============================================================================ keys


def test_keys_new_writes_an_owner_only_encrypted_keystore_and_never_shows_the_key(cli, tmp_path):
    path = tmp_path / "org1" / "keystore.json"
    result = cli("keys", "new", path, "--password", f"env:{PW_ENV}", *FAST, "--json")
    assert result.exit_code == 0, result.output
    address = as_json(result)["address"]
    account = load_account(path, PASSWORD)
    assert account.address == address
    key_hex = account.key.hex().removeprefix("0x")
    assert key_hex not in result.output and key_hex not in path.read_text()
    assert PASSWORD not in result.output and PASSWORD not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_new_refuses_a_password_typed_as_an_argument_without_echoing_it(cli, tmp_path):
    path = tmp_path / "keystore.json"
    result = cli("keys", "new", path, "--password", "hunter2hunter2", *FAST, "--json")
    assert result.exit_code == EXIT_INPUT
    assert "hunter2hunter2" not in result.output
    assert "env:VARIABLE" in as_json(result)["message"]
    assert not path.exists()


def test_keys_new_refuses_to_overwrite_a_keystore(cli, tmp_path):
    path = tmp_path / "keystore.json"
    assert cli("keys", "new", path, "--password", f"env:{PW_ENV}", *FAST).exit_code == 0
    before = path.read_bytes()
    result = cli("keys", "new", path, "--password", f"env:{PW_ENV}", *FAST)
    assert result.exit_code == EXIT_INPUT and "refusing to overwrite" in result.stderr
    assert path.read_bytes() == before


def test_keys_address_needs_no_password_and_check_rejects_a_wrong_one(cli, tmp_path):
    path = tmp_path / "keystore.json"
    address = create_keystore(path, PASSWORD, scrypt_n=1024)
    plain = cli("keys", "address", path)
    assert plain.exit_code == 0 and plain.stdout.strip() == address
    assert cli("keys", "address", path, "--check", "--password", f"env:{PW_ENV}").exit_code == 0
    wrong = cli("keys", "address", path, "--check", "--password", "env:WRONG_PW", "--json", env={"WRONG_PW": "nope"})
    assert wrong.exit_code == EXIT_INPUT and as_json(wrong)["error"] == "KeystoreError"


def test_keys_import_takes_the_key_from_a_file_and_keys_list_finds_every_keystore(cli, tmp_path):
    key_file = tmp_path / "admin.key"
    key_file.write_text(DEV_KEYS[0] + "\n")
    imported = cli("keys", "import", tmp_path / "admin" / "keystore.json", "--key-from", f"file:{key_file}",
                   "--password", f"env:{PW_ENV}", *FAST, "--json")
    assert imported.exit_code == 0, imported.output
    assert as_json(imported)["address"] == Account.from_key(DEV_KEYS[0]).address
    assert DEV_KEYS[0][2:] not in imported.output
    other = create_keystore(tmp_path / "org2" / "keystore.json", PASSWORD, scrypt_n=1024)
    (tmp_path / "org2" / "notes.json").write_text('{"not": "a keystore"}')
    listed = as_json(cli("keys", "list", tmp_path, "--json"))["keystores"]
    assert sorted(k["address"] for k in listed) == sorted([Account.from_key(DEV_KEYS[0]).address, other])


def test_keys_import_refuses_a_malformed_key(cli, tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_text("0x1234")
    result = cli("keys", "import", tmp_path / "k.json", "--key-from", f"file:{bad}", "--password",
                 f"env:{PW_ENV}", *FAST)
    assert result.exit_code == EXIT_INPUT and not (tmp_path / "k.json").exists()


# ============================================================================ init


def test_init_writes_a_commented_config_that_loads_back_as_given(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secrets").mkdir()
    pw = tmp_path / "secrets" / "org1.pw"
    pw.write_text(PASSWORD)
    pw.chmod(0o600)
    Deployment(chain_id=4242, address="0x" + "11" * 20, abi_sha256="x", block=7, admin="0x" + "22" * 20,
               tx_hash="0x", solc_version="0.8.30", rpc_url="http://10.0.0.5:8545").save(tmp_path / "dep.json")
    result = cli("init", "org1", "--dir", "orgs/org1", "--deployment", "dep.json", "--ipfs-api",
                 "http://127.0.0.1:5101", "--password", "file:secrets/org1.pw", "--poa", "--task", "3",
                 "--workload", "breast-cancer", "--partition", "dirichlet:0.3", "--org-index", "2", "--num-orgs", "5",
                 "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    path = tmp_path / "orgs" / "org1" / "node.toml"
    text = path.read_text()
    assert text.count("#") > 20 and "never another organisation's" in text
    cfg = NodeConfig.load(path)
    assert (cfg.name, cfg.chain.rpc_url, cfg.chain.chain_id, cfg.chain.poa) == ("org1", "http://10.0.0.5:8545", 4242,
                                                                                 True)
    assert cfg.chain.deployment.resolve() == (tmp_path / "dep.json").resolve()
    assert cfg.keystore.path.resolve() == (tmp_path / "orgs" / "org1" / "keystore.json").resolve()
    assert cfg.organisation.work_dir.resolve() == path.parent.resolve()
    # Written relative to the config (the directory can move), read back wherever `node run` starts.
    assert 'password = "file:../../secrets/org1.pw"' in text
    assert Path(cfg.keystore.password.removeprefix("file:")).resolve() == pw.resolve()
    assert (cfg.ipfs.api_url, cfg.task.id, cfg.workload.builtin, cfg.workload.partition) == (
        "http://127.0.0.1:5101", 3, "breast-cancer", "dirichlet:0.3")
    assert (cfg.workload.org_index, cfg.workload.num_orgs, cfg.training.epochs, cfg.training.lr) == (2, 5, 2, 0.01)
    assert PASSWORD not in text
    assert "no keystore" in result.stderr  # a warning, not a failure


def test_rendered_node_config_loads_back_every_field(tmp_path):
    from dataclasses import fields, replace

    from fedledger.node.peer.config import Chain, Ipfs, Keystore, Organisation, Task, WorkloadSettings
    from fedledger.node.training.config import TrainingConfig

    # Every setting a member's file holds changed (the dp_* ones are the task's: a file has none).
    training = TrainingConfig(**{f.name: (f.default + 1 if f.name in ("epochs", "batch_size", "seed") else
                                          f.default / 2 + 0.01) for f in fields(TrainingConfig)
                                 if f.metadata.get("cli", True)})
    cfg = NodeConfig(
        organisation=Organisation(name="org \"7\"", work_dir=tmp_path / "w", poll_seconds=0.5),
        chain=Chain(rpc_url="http://192.0.2.1:8545", deployment=tmp_path / "d.json", chain_id=99, poa=True,
                    ws_url="ws://192.0.2.1:8546"),
        ipfs=Ipfs(api_url="http://127.0.0.1:5002", keep_others_updates=True, prefetch_max_mb=2.5,
                  gateways={"0x" + "ab" * 20: "http://192.0.2.2:8080", "0x" + "CD" * 20: "https://gw.example:443"}),
        keystore=Keystore(path=tmp_path / "k.json", password="env:PW"),
        task=Task(id=4),
        workload=WorkloadSettings(builtin="breast-cancer", data="/data/x", partition="shards:2", org_index=1,
                                  num_orgs=3, partition_seed=5),
        training=training)
    path = tmp_path / "node.toml"
    path.write_text(cfg.to_toml())
    assert NodeConfig.load(path) == cfg
    assert NodeConfig.load(path).training == replace(training)


@pytest.mark.parametrize("table, what", [
    ('"0x12" = "http://192.0.2.2:8080"', "is not a member address"),
    ('"0x' + "ab" * 20 + '" = "192.0.2.2:8080"', "is not a gateway URL"),
    ('"0x' + "ab" * 20 + '" = "http://192.0.2.2:8080/ipfs/x"', "is not a gateway URL"),
])
def test_gateway_table_with_a_bad_address_or_url_is_refused_with_the_key_named(tmp_path, table, what):
    from fedledger.node.peer.config import ConfigError

    from fedledger.node.peer.config import Chain, Ipfs, Keystore, Organisation

    base = NodeConfig(organisation=Organisation(name="org1", work_dir=tmp_path),
                      chain=Chain(rpc_url="http://127.0.0.1:8545", deployment=tmp_path / "d.json"),
                      ipfs=Ipfs(api_url="http://127.0.0.1:5001"), keystore=Keystore(path=tmp_path / "k.json")).to_toml()
    path = tmp_path / "node.toml"
    path.write_text(base.replace("[keystore]", "[ipfs.gateways]\n" + table + "\n\n[keystore]"))
    with pytest.raises(ConfigError, match=what):
        NodeConfig.load(path)


def test_init_refuses_to_overwrite_and_refuses_bad_values(cli, tmp_path):
    base = tmp_path / "org1"
    assert cli("init", "org1", "--dir", base).exit_code == 0
    assert cli("init", "org1", "--dir", base).exit_code == EXIT_INPUT
    assert cli("init", "org1", "--dir", base, "--force").exit_code == 0
    for bad in (["--workload", "no-such-workload"], ["--partition", "zipf"], ["--org-index", "3", "--num-orgs", "2"],
                ["--password", "s3cret-in-clear"], ["--rpc", "localhost:8545"]):
        result = cli("init", "org9", "--dir", tmp_path / "org9", *bad)
        assert result.exit_code == EXIT_INPUT, (bad, result.output)
    assert not (tmp_path / "org9" / "node.toml").exists()


# ============================================================================ member and task on a chain


class Chain:
    """A fresh deployment on the session's Anvil, with the admin's and an outsider's keystores."""

    def __init__(self, rpc_url: str, tmp: Path):
        self.admin = Account.from_key(DEV_KEYS[0])
        self.deployment = tmp / "deployment.json"
        self.dep = deploy(rpc_url, self.admin, self.deployment)
        self.admin_ks = tmp / "admin.json"
        create_keystore(self.admin_ks, PASSWORD, private_key=DEV_KEYS[0], scrypt_n=1024)
        self.outsider_ks = tmp / "outsider.json"
        self.outsider = create_keystore(self.outsider_ks, PASSWORD, private_key=DEV_KEYS[7], scrypt_n=1024)

    def admin_args(self) -> list:
        return ["--deployment", self.deployment, "--keystore", self.admin_ks, "--password", f"env:{PW_ENV}"]

    def client(self):
        return self.dep.client()


@pytest.fixture
def chain(anvil, tmp_path) -> Chain:
    return Chain(anvil.rpc_url, tmp_path)


@pytest.mark.chain
def test_member_add_by_a_non_admin_is_refused_with_exit_4_naming_NotAdmin(cli, chain):
    result = cli("member", "add", "0x" + "ab" * 20, "--name", "mallory", "--deployment", chain.deployment,
                 "--keystore", chain.outsider_ks, "--password", f"env:{PW_ENV}", "--json")
    assert result.exit_code == EXIT_REFUSED
    err = as_json(result)
    assert err["error"] == "NotAdmin" and err["args"]["who"] == chain.outsider
    assert chain.client().member_count() == 0


@pytest.mark.chain
def test_member_add_twice_is_refused_with_AlreadyMember_and_list_shows_it_once(cli, chain, tmp_path):
    ks = tmp_path / "org1.json"
    address = create_keystore(ks, PASSWORD, scrypt_n=1024)
    added = cli("member", "add", ks, "--name", "org1", "--fund", "1", *chain.admin_args(), "--json")
    assert added.exit_code == 0, added.output
    assert as_json(added)["member"] == address and as_json(added)["funded_wei"] == 10**18
    assert chain.client().w3.eth.get_balance(address) == 10**18
    again = cli("member", "add", address, "--name", "org1", *chain.admin_args(), "--json")
    assert again.exit_code == EXIT_REFUSED and as_json(again)["error"] == "AlreadyMember"
    listed = as_json(cli("member", "list", "--deployment", chain.deployment, "--json"))
    assert [(m["address"], m["name"]) for m in listed["members"]] == [(address, "org1")]
    assert listed["admin"] == chain.admin.address


@pytest.mark.chain
def test_a_removed_member_is_listed_only_with_all(cli, chain):
    address = Account.from_key(DEV_KEYS[5]).address
    assert cli("member", "add", address, "--name", "org5", *chain.admin_args()).exit_code == 0
    assert cli("member", "remove", address, *chain.admin_args()).exit_code == 0
    assert as_json(cli("member", "list", "--deployment", chain.deployment, "--json"))["members"] == []
    everyone = as_json(cli("member", "list", "--all", "--deployment", chain.deployment, "--json"))["members"]
    assert [(m["address"], m["active"]) for m in everyone] == [(address, False)]
    gone = cli("member", "remove", address, *chain.admin_args(), "--json")
    assert gone.exit_code == EXIT_REFUSED and as_json(gone)["error"] == "NotMember"


@pytest.mark.chain
def test_member_fund_sends_gas_money(cli, chain):
    target = Account.create().address
    result = cli("member", "fund", target, "--ether", "0.5", *chain.admin_args(), "--json")
    assert result.exit_code == 0, result.output
    assert as_json(result)["balance_wei"] == 5 * 10**17 == chain.client().w3.eth.get_balance(target)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket closes


@pytest.mark.chain
def test_an_unreachable_chain_node_gives_exit_3(cli, chain):
    for args in (["member", "list"], ["task", "list"], ["member", "add", "0x" + "ab" * 20, "--name", "x",
                                                          "--keystore", chain.admin_ks, "--password", f"env:{PW_ENV}"]):
        result = cli(*args, "--deployment", chain.deployment, "--rpc", closed_port_url(), "--json")
        assert result.exit_code == EXIT_UNREACHABLE, (args, result.output)
        assert as_json(result)["error"] == "ChainUnreachable"


@pytest.mark.chain
def test_task_create_with_an_unreachable_ipfs_node_gives_exit_3_and_creates_nothing(cli, chain, tmp_path):
    for i in (1, 2, 3, 4):  # enough members for the default verifiers: what is checked on chain passes
        assert cli("member", "add", Account.from_key(DEV_KEYS[i]).address, "--name", f"org{i}",
                   *chain.admin_args()).exit_code == 0
    result = cli("task", "create", "--workload", "digits-mlp", "--ipfs-api", closed_port_url(), "--out",
                 tmp_path / "tasks", *chain.admin_args(), "--json")
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert chain.client().task_count() == 0 and not (tmp_path / "tasks").exists()


def test_task_create_refuses_genesis_files_members_could_not_train(cli, tmp_path):
    digits = {"fc1.weight": np.zeros((64, 64), np.float32), "fc1.bias": np.zeros(64, np.float32),
              "fc2.weight": np.zeros((10, 64), np.float32), "fc2.bias": np.zeros(10, np.float32)}
    cases = {
        "wrong-shape": {**digits, "fc2.weight": np.zeros((3, 64), np.float32)},
        "non-finite": {**digits, "fc1.bias": np.full(64, np.nan, np.float32)},
        "missing": {k: v for k, v in digits.items() if k != "fc2.bias"},
    }
    for name, tensors in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        result = cli("task", "create", "--workload", "digits-mlp", "--genesis", path, "--deployment",
                     tmp_path / "none.json", "--json")
        assert result.exit_code == EXIT_INPUT, (name, result.output)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    assert cli("task", "create", "--genesis", tmp_path / "junk.safetensors").exit_code == EXIT_INPUT
    assert cli("task", "create").exit_code == EXIT_INPUT  # neither --workload nor --genesis


@pytest.mark.chain
@pytest.mark.ipfs
def test_task_create_from_a_genesis_file_publishes_its_bytes_and_spec_and_opens_round_1(cli, chain, ipfs_node,
                                                                                         tmp_path):
    rng = np.random.default_rng(5)
    tensors = {"fc1.weight": rng.normal(size=(64, 64)).astype(np.float32), "fc1.bias": np.zeros(64, np.float32),
               "fc2.weight": rng.normal(size=(10, 64)).astype(np.float32), "fc2.bias": np.ones(10, np.float32)}
    user_file = tmp_path / "pretrained.safetensors"
    save_file(tensors, str(user_file), metadata={"source": "our own pretraining"})
    for member in (DEV_KEYS[1], DEV_KEYS[2]):  # two members: the participant defaults count them
        assert cli("member", "add", Account.from_key(member).address, "--name", member[-4:],
                   *chain.admin_args()).exit_code == 0
    unknown_rule = cli("task", "create", "--workload", "digits-mlp", "--genesis", user_file, "--rule", "mean-ish",
                       "--ipfs-api", ipfs_node.api_url, "--out", tmp_path / "t0", *chain.admin_args())
    assert unknown_rule.exit_code == EXIT_INPUT
    result = cli("task", "create", "--workload", "digits-mlp", "--genesis", user_file, "--rule", "trimmed_mean",
                 "--rule-params", '{"beta": 0.2}', "--rounds", "3", "--verifiers", "1", "--ipfs-api",
                 ipfs_node.api_url, "--out", tmp_path / "tasks", *chain.admin_args(), "--json")
    assert result.exit_code == 0, result.output
    created = as_json(result)
    cfg = chain.client().task_config(created["task"])
    genesis_file = Path(created["genesis_file"])
    assert cfg.genesis_sha256 == hashlib.sha256(genesis_file.read_bytes()).hexdigest()
    with IpfsClient(ipfs_node.api_url) as ipfs:
        assert ipfs.cat(cfg.genesis_cid) == genesis_file.read_bytes()
        assert ipfs.cat(cfg.model_spec_cid) == ModelSpec.from_tensors(tensors).to_json()
        assert ipfs.is_pinned(cfg.genesis_cid) and ipfs.is_pinned(cfg.model_spec_cid)
    from fedledger.node.storage.modelfile import read_model

    loaded, meta = read_model(genesis_file, cfg.genesis_sha256, ModelSpec.from_tensors(tensors))
    assert all(np.array_equal(loaded[k], tensors[k]) for k in tensors) and meta["kind"] == "genesis"
    assert (cfg.rule_id, cfg.max_rounds, cfg.verifiers_per_round, cfg.quorum) == ("trimmed_mean", 3, 1, 1)
    assert (cfg.min_participants, cfg.max_participants) == (2, 2)  # from the 2 members, never below leader + verifier
    shown = as_json(cli("task", "show", created["task"], "--deployment", chain.deployment, "--json"))
    assert shown["config"]["rule_params"]["beta"] == 0.2
    assert (shown["round"], shown["phase"], shown["lineage"]) == (1, "submission", [])
    assert json.loads((genesis_file.parent / "task.json").read_text())["task"] == created["task"]
    missing = cli("task", "show", created["task"] + 1, "--deployment", chain.deployment, "--json")
    assert missing.exit_code == EXIT_INPUT, missing.output  # a wrong id is the user's input, not a refusal
    assert f"there is no task {created['task'] + 1} on this chain" in as_json(missing)["message"]


@pytest.mark.chain
@pytest.mark.ipfs
def test_task_create_by_a_non_admin_is_refused_with_NotAdmin(cli, chain, ipfs_node, tmp_path):
    result = cli("task", "create", "--workload", "digits-mlp", "--ipfs-api", ipfs_node.api_url, "--out",
                 tmp_path / "tasks", "--deployment", chain.deployment, "--keystore", chain.outsider_ks,
                 "--password", f"env:{PW_ENV}", "--verifiers", "1", "--json")
    assert result.exit_code == EXIT_REFUSED and as_json(result)["error"] == "NotAdmin"


# ============================================================================ ipfs


@pytest.mark.ipfs
def test_ipfs_nodes_with_each_other_as_bootstrap_connect_and_serve_each_others_content(cli, tmp_path):
    from tests.plugins.ipfs import require_jsipfs

    require_jsipfs()
    a, b = tmp_path / "a" / "ipfs", tmp_path / "b" / "ipfs"
    try:
        assert cli("ipfs", "init", "--repo", a).exit_code == 0
        assert cli("ipfs", "init", "--repo", b).exit_code == 0
        addr_a = cli("ipfs", "addr", "--repo", a).stdout.strip()
        addr_b = cli("ipfs", "addr", "--repo", b).stdout.strip()
        assert cli("ipfs", "status", "--repo", a).exit_code == EXIT_UNREACHABLE  # not running yet
        up_a = cli("ipfs", "up", "--repo", a, "--bootstrap", addr_b, "--json")
        assert up_a.exit_code == 0, up_a.output
        up_b = cli("ipfs", "up", "--repo", b, "--bootstrap", addr_a, "--json")
        assert as_json(up_b)["bootstrap_dialled"] == {addr_a: "connected"}
        assert as_json(up_b)["api_url"].startswith("http://127.0.0.1:")
        with IpfsClient(as_json(up_a)["api_url"]) as ca, IpfsClient(as_json(up_b)["api_url"]) as cb:
            cid = ca.add_bytes(b"update bytes of organisation a")
            assert cb.cat(cid, timeout=30) == b"update bytes of organisation a"
        status = as_json(cli("ipfs", "status", "--repo", b, "--json"))
        assert status["running"] and status["bootstrap"] == [addr_a]
        assert cli("ipfs", "up", "--repo", a, "--bootstrap", "/ip4/1.2.3.4/tcp/1").exit_code == EXIT_INPUT
    finally:
        for repo in (a, b):
            if repo.exists():
                OrgIpfsDaemon(repo).stop()
    assert not OrgIpfsDaemon(a).running and not OrgIpfsDaemon(b).running


# ============================================================================ the guide


def guide_commands(doc: Path) -> list[str]:
    """Every `fedledger ...` command in the shell blocks of a doc, continuation lines joined."""
    blocks = re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```$", doc.read_text(), flags=re.S | re.M)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip().startswith("fedledger ")]


@pytest.mark.parametrize("doc", ["docs/consortium.md", "docs/deploy.md"])
def test_every_fedledger_command_in_the_docs_parses_with_the_real_cli(doc):
    """The docs name only commands and options that exist, with every required argument."""
    from typer import _click
    from typer.main import get_command

    root = get_command(fedledger_app)
    commands = guide_commands(ROOT / doc)
    assert len(commands) >= 5
    for line in commands:
        line = re.sub(r'"?\$\([^)]*\)"?', "0", line)  # command substitutions
        line = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "0", line)  # variables
        line = re.split(r"\s(?:>|2>|&|\||#)", line)[0]  # redirections, background, comments
        args = shlex.split(line)[1:]
        cmd, name = root, "fedledger"
        while hasattr(cmd, "get_command"):  # a group: descend to the subcommand
            sub = args.pop(0)
            cmd, name = cmd.get_command(_click.Context(cmd), sub), sub
            assert cmd is not None, f"{doc}: no command {sub!r} in: {line}"
        try:
            cmd.make_context(name, args)
        except _click.exceptions.ClickException as exc:
            pytest.fail(f"{doc}: `{line}` does not parse: {exc.format_message()}")


GUIDE_WINDOW = 20  # the paced copy's round-1 submission window (the guide keeps the 60 s default)
GUIDE_PAUSE = GUIDE_WINDOW + 5  # longer than it


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_consortium_guide_takes_two_organisations_to_a_completed_task(tmp_path, request):
    """docs/consortium.md, run as written (scripts/run_guide.sh): real Anvil, two IPFS daemons, two
    node processes, only operator commands; at a human pace, with the nodes started after the
    task's round 1 submission window has passed (the copy shortens that window to 20 s and waits
    25 s, rather than waiting out the guide's 60 s)."""
    run_dir = tmp_path / "consortium"
    guide = (ROOT / "docs" / "consortium.md").read_text()
    create = guide.index("fedledger task create")
    after = guide.index("```\n", create) + len("```\n")
    paced = tmp_path / "consortium-paced.md"
    head = guide[:after].replace("fedledger task create", f"fedledger task create --submission-window {GUIDE_WINDOW}", 1)
    paced.write_text(head + f"\n```sh\nsleep {GUIDE_PAUSE}\n```\n" + guide[after:])
    out = run_guide(paced, run_dir, tmp_path, request, timeout=360 + GUIDE_PAUSE)
    assert "completed after 2 rounds" in out

    # Audit afterwards: the chain restarts from its state file and holds the whole lineage.
    net = Devnet.load(run_dir / "devnet").up()
    try:
        dep = Deployment.load(run_dir / "deployment.json")
        client = dep.client(rpc_url=net.anvil.rpc_url)
        state = client.task_state(0)
        assert state.completed and state.current_round == 2
        finalized = client.events(from_block=dep.block, names=["RoundFinalized"], task=0)
        submitted = client.events(from_block=dep.block, names=["UpdateSubmitted"], task=0)
        attested = client.events(from_block=dep.block, names=["Attested"], task=0)
        asked = client.task_config(0)
    finally:
        net.down()
    genesis_sha = hashlib.sha256((run_dir / "tasks" / "task0" / "genesis.safetensors").read_bytes()).hexdigest()
    assert [e["parent"] for e in finalized] == [genesis_sha, finalized[0]["sha256"]]
    assert finalized[-1]["sha256"] == state.global_sha256
    names = {load_addr(run_dir / org / "keystore.json"): org for org in ("org1", "org2")}
    for r in (1, 2):  # both organisations in every round, each verified as the task asked
        assert sorted(names[e["member"]] for e in submitted if e["round"] == r) == ["org1", "org2"]
        fin = next(e for e in finalized if e["round"] == r)
        agreed = [e for e in attested if e["round"] == r and e["attempt"] == fin["attempt"] and e["agree"]]
        assert asked.verifiers_per_round == 1 and len(agreed) >= asked.quorum == 1, (r, agreed)

    # Each organisation ran from its own directory: own keystore, password, IPFS node and work dir.
    for org in ("org1", "org2"):
        cfg = NodeConfig.load(run_dir / org / "node.toml")
        own = (run_dir / org).resolve()
        assert cfg.keystore.path.resolve().parent == own and cfg.organisation.work_dir.resolve() == own
        assert Path(cfg.keystore.password.removeprefix("file:")).parent == own
        assert stat.S_IMODE((run_dir / org / "password").stat().st_mode) == 0o600
        assert cfg.ipfs.api_url == OrgIpfsDaemon(run_dir / org / "ipfs").api_url
        log = (run_dir / org / "node.log").read_text()
        assert "joins task 0" in log and "task 0 completed" in log
        assert (run_dir / org / "password").read_text().strip() not in out + log
    assert (NodeConfig.load(run_dir / "org1" / "node.toml").ipfs.api_url
            != NodeConfig.load(run_dir / "org2" / "node.toml").ipfs.api_url)


def load_addr(path: Path) -> str:
    from fedledger.node.chain.keys import keystore_address

    return keystore_address(path)


@pytest.mark.chain
def test_admit_members_script_admits_the_consortium_file_once(chain, tmp_path):
    members = {f"org{i}": Account.from_key(DEV_KEYS[i]).address for i in (1, 2)}
    spec = tmp_path / "consortium.toml"
    spec.write_text("chain_id = 47110\n" + "".join(
        f'[[organisation]]\nname = "{n}"\nhost = "192.0.2.{i}"\nmember_address = "{a}"\n'
        for i, (n, a) in enumerate(members.items(), start=1)))
    argv = [sys.executable, str(ROOT / "scripts" / "admit_members.py"), str(spec), "--deployment",
            str(chain.deployment), "--keystore", str(chain.admin_ks), "--password", f"env:{PW_ENV}", "--json"]
    env = {**os.environ, PW_ENV: PASSWORD}
    first = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert all(v.startswith("admitted") for v in json.loads(first.stdout)["members"].values())
    again = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert json.loads(again.stdout)["members"] == {n: "already a member" for n in members}
    client = chain.client()
    assert client.member_count() == 2 and all(client.is_member(a) for a in members.values())
    outsider = subprocess.run(argv[:-5] + ["--keystore", str(chain.outsider_ks), "--password", f"env:{PW_ENV}"],
                              capture_output=True, text=True, env=env)
    assert outsider.returncode == 0  # nothing left to admit: the chain is not asked
    spec.write_text(spec.read_text() + f'[[organisation]]\nname = "org3"\nhost = "192.0.2.3"\n'
                                       f'member_address = "{Account.from_key(DEV_KEYS[3]).address}"\n')
    refused = subprocess.run(argv[:-5] + ["--keystore", str(chain.outsider_ks), "--password", f"env:{PW_ENV}",
                                          "--json"], capture_output=True, text=True, env=env)
    assert refused.returncode == EXIT_REFUSED and json.loads(refused.stdout)["error"] == "NotAdmin"
