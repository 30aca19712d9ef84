"""The `fedledger` command line as a user types it: the installed console script, in a child process.

Every command and subcommand is listed here by hand, so removing one's registration fails a test
(and adding one without a test here fails too). Each `--help` works; each `--json` prints one JSON
object on a cheap failing or succeeding input; exit codes follow the one table in node/errors.py
(1 wrong input, 2 wrong command line, 3 a service that did not answer, 4 the chain refused).
`fedledger status` reads a real Anvil; the sim refuses bad options before starting anything.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fedledger.node.errors import EXIT_INPUT, EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE

#: Every command path of `fedledger`, groups included ("" is `fedledger` itself).
COMMANDS = {
    "", "deploy", "status", "sim", "audit", "init",
    "devnet", "devnet up", "devnet down", "devnet status",
    "node", "node run",
    "keys", "keys new", "keys import", "keys list", "keys address",
    "member", "member add", "member fund", "member remove", "member list",
    "task", "task create", "task list", "task show", "task pull",
    "ipfs", "ipfs init", "ipfs up", "ipfs addr", "ipfs down", "ipfs status",
    "govern", "vote", "execute", "proposals",
    "propose", "propose add-member", "propose remove-member", "propose cancel-task", "propose update-task",
    "propose cancel-proposal", "propose rules",
}

#: The commands that take --json.
JSON_COMMANDS = {
    "deploy", "status", "audit", "init", "devnet up", "devnet status",
    "keys new", "keys import", "keys list", "keys address",
    "member add", "member fund", "member remove", "member list",
    "task create", "task list", "task show", "task pull",
    "ipfs init", "ipfs up", "ipfs down", "ipfs status",
    "govern", "vote", "execute", "proposals",
    "propose add-member", "propose remove-member", "propose cancel-task", "propose update-task", "propose rules",
    "propose cancel-proposal",
}

PW_ENV = "FEDLEDGER_TEST_PW"
FAST = ["--scrypt-n", "1024"]  # throwaway test keys only


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("fedledger")
    if not script.exists():
        pytest.fail(f"the `fedledger` console script is not installed beside {sys.executable}: run `make setup`",
                    pytrace=False)
    return [str(script)]


def fedledger(*args, cwd: Path | None = None, env: dict | None = None, timeout: float = 120,
              entry: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(entry or console_script()), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, PW_ENV: "a long passphrase", "COLUMNS": "200",
                                                **(env or {})})


def as_json(out: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(out.stdout)
    except ValueError:
        raise AssertionError(f"not one JSON object on stdout (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")


def registered() -> tuple[set[str], set[str]]:
    """The command paths the Typer app registers, and those among them that take --json."""
    import typer

    from fedledger.node.cli.app import app

    paths, with_json = set(), set()

    def walk(cmd, path: tuple[str, ...]) -> None:
        name = " ".join(path)
        paths.add(name)
        if any("--json" in getattr(p, "opts", ()) for p in cmd.params):
            with_json.add(name)
        for sub_name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, sub_name))

    walk(typer.main.get_command(app), ())
    return paths, with_json


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket closes


# --------------------------------------------------------------------------- the commands


def test_the_app_registers_exactly_the_listed_commands_and_json_options():
    paths, with_json = registered()
    assert paths == COMMANDS, f"missing: {sorted(COMMANDS - paths)}; not listed here: {sorted(paths - COMMANDS)}"
    assert with_json == JSON_COMMANDS, (f"lost --json: {sorted(JSON_COMMANDS - with_json)}; "
                                        f"not listed here: {sorted(with_json - JSON_COMMANDS)}")


def options_of() -> dict[str, list[str]]:
    """Every command path's visible option names (`--workload`, `--poa/--no-poa` as two)."""
    import typer

    from fedledger.node.cli.app import app

    out: dict[str, list[str]] = {}

    def walk(cmd, path: tuple[str, ...]) -> None:
        out[" ".join(path)] = [o for p in cmd.params if not getattr(p, "hidden", False)
                               for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
        for sub_name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, sub_name))

    walk(typer.main.get_command(app), ())
    return out


def test_every_command_answers_help_through_the_console_script_with_the_exit_code_table():
    """On an 80-column terminal, with every option's name whole."""
    options = options_of()

    def help_of(path: str) -> str | None:
        out = fedledger(*path.split(), "--help", env={"COLUMNS": "80"})
        text = " ".join(out.stdout.split())
        if out.returncode != EXIT_OK:
            return f"`fedledger {path} --help` exited {out.returncode}: {out.stderr.strip()[-300:]}"
        if f"Usage: fedledger {path}".strip() not in text:
            return f"`fedledger {path} --help` shows no usage line for it"
        if "Exit codes: 0 ok; 1 wrong input" not in text:
            return f"`fedledger {path} --help` does not show the exit codes"
        if max(map(len, out.stdout.splitlines())) > 80:
            return f"`fedledger {path} --help` is wider than the terminal's 80 columns"
        cut = [o for o in options[path] if not re.search(rf"(^|[\s,/]){re.escape(o)}([\s,/=]|$)", out.stdout, re.M)]
        if cut:
            return f"`fedledger {path} --help` does not show the option(s) {cut} whole"
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [p for p in pool.map(help_of, sorted(COMMANDS)) if p]
    assert problems == []


def test_python_dash_m_is_the_same_command_line():
    out = fedledger("keys", "--help", entry=[sys.executable, "-m", "fedledger.node.cli"])
    assert out.returncode == EXIT_OK and "fedledger.node.cli keys [OPTIONS] COMMAND" in " ".join(out.stdout.split())
    for name in ("new", "import", "list", "address"):
        assert re.search(rf"^\s+{name}\s", out.stdout, re.M), name


@pytest.mark.parametrize("args,fragment", [
    (["nosuch"], "No such command"),
    (["keys", "new"], "Missing argument"),
    (["keys", "new", "k.json", "--no-such-option"], "No such option"),
    (["ipfs", "up", "--repo", "r", "--api-port", "0"], "api-port"),
    (["audit"], "give --run DIR"),
])
def test_a_wrong_command_line_exits_2_saying_what_is_wrong(tmp_path, args, fragment):
    out = fedledger(*args, cwd=tmp_path)
    assert out.returncode == EXIT_USAGE, out.stderr
    assert fragment in out.stderr
    assert not (tmp_path / "k.json").exists() and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- --json, offline


def test_every_json_command_prints_one_json_object_offline(tmp_path):
    """Each --json command on an input that needs no service: success where that is cheap, else a
    refusal whose JSON carries the same exit code the process exits with."""
    ks = tmp_path / "k1.json"
    missing = tmp_path / "missing.json"
    key_file = tmp_path / "key"
    key_file.write_text("0x" + "5c" * 32 + "\n")
    runs = {
        "keys new": (["keys", "new", ks, "--password", f"env:{PW_ENV}", *FAST], EXIT_OK),
        "keys import": (["keys", "import", tmp_path / "k2.json", "--key-from", f"file:{key_file}",
                         "--password", f"env:{PW_ENV}", *FAST], EXIT_OK),
        "keys list": (["keys", "list", tmp_path], EXIT_OK),
        "keys address": (["keys", "address", ks, "--check", "--password", f"env:{PW_ENV}"], EXIT_OK),
        "init": (["init", "org1", "--dir", tmp_path / "org1", "--password", f"env:{PW_ENV}"], EXIT_OK),
        "ipfs down": (["ipfs", "down", "--repo", tmp_path / "no-ipfs"], EXIT_OK),
        "ipfs status": (["ipfs", "status", "--repo", tmp_path / "no-ipfs"], EXIT_INPUT),
        "ipfs init": (["ipfs", "init", "--repo", tmp_path / "ipfs", "--swarm-host", "not-an-ip"], EXIT_INPUT),
        "ipfs up": (["ipfs", "up", "--repo", tmp_path / "ipfs", "--swarm-host", "not-an-ip"], EXIT_INPUT),
        "deploy": (["deploy", "--out", tmp_path / "d.json"], EXIT_INPUT),
        "status": (["status", "--deployment", missing], EXIT_INPUT),
        "devnet up": (["devnet", "up", "--dir", key_file], EXIT_INPUT),  # a file, not a directory
        "devnet status": (["devnet", "status", "--dir", tmp_path / "no-devnet"], EXIT_UNREACHABLE),
        "member add": (["member", "add", "0xnot-an-address", "--name", "x", "--deployment", missing], EXIT_INPUT),
        "member fund": (["member", "fund", "0xnot-an-address", "--ether", "1", "--deployment", missing], EXIT_INPUT),
        "member remove": (["member", "remove", "0xnot-an-address", "--deployment", missing], EXIT_INPUT),
        "member list": (["member", "list", "--deployment", missing], EXIT_INPUT),
        "task create": (["task", "create", "--deployment", missing], EXIT_INPUT),
        "task list": (["task", "list", "--deployment", missing], EXIT_INPUT),
        "task show": (["task", "show", "0", "--deployment", missing], EXIT_INPUT),
        "task pull": (["task", "pull", "0", "--out", tmp_path / "m.safetensors", "--deployment", missing], EXIT_INPUT),
        "govern": (["govern", "--threshold", "1/2", "--deployment", missing], EXIT_INPUT),
        "vote": (["vote", "0", "maybe", "--deployment", missing], EXIT_INPUT),
        "execute": (["execute", "0", "--deployment", missing], EXIT_INPUT),
        "proposals": (["proposals", "--deployment", missing], EXIT_INPUT),
        "propose add-member": (["propose", "add-member", "0xnot-an-address", "--name", "x", "--deployment", missing],
                               EXIT_INPUT),
        "propose remove-member": (["propose", "remove-member", "0xnot-an-address", "--deployment", missing], EXIT_INPUT),
        "propose cancel-task": (["propose", "cancel-task", "0", "--deployment", missing], EXIT_INPUT),
        "propose update-task": (["propose", "update-task", "0", "--rounds", "9", "--deployment", missing], EXIT_INPUT),
        "propose rules": (["propose", "rules", "--threshold", "most", "--deployment", missing], EXIT_INPUT),
        "propose cancel-proposal": (["propose", "cancel-proposal", "0", "--deployment", missing], EXIT_INPUT),
    }
    # `audit --json` prints a lineage, which needs a chain and an IPFS node: see the test below.
    assert set(runs) == JSON_COMMANDS - {"audit"}
    order = ["keys new", "keys import", "keys list", "keys address"]  # these build on each other
    results = {}
    for name in order:
        results[name] = fedledger(*runs[name][0], "--json", cwd=tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(fedledger, *args, "--json", cwd=tmp_path)
                   for name, (args, _) in runs.items() if name not in order}
        results.update({name: f.result() for name, f in futures.items()})
    for name, out in results.items():
        data = as_json(out)
        assert out.returncode == runs[name][1], (name, out.stdout, out.stderr)
        if out.returncode != EXIT_OK and "ok" in data:
            assert data["ok"] is False and data["exit_code"] == out.returncode and data["error"], (name, data)
            assert data["message"] and data["message"] in out.stderr, name
    address = as_json(results["keys new"])["address"]
    assert as_json(results["keys address"]) == {"ok": True, "address": address, "keystore": str(ks), "checked": True}
    assert {k["address"] for k in as_json(results["keys list"])["keystores"]} == {
        address, as_json(results["keys import"])["address"]}
    assert as_json(results["init"])["config"] == str(tmp_path / "org1" / "node.toml")
    assert (tmp_path / "org1" / "node.toml").exists()
    assert as_json(results["devnet status"])["chain"] is None
    assert not (tmp_path / "d.json").exists() and not (tmp_path / "ipfs").exists()


# --------------------------------------------------------------------------- fedledger sim


@pytest.mark.parametrize("args,named", [
    (["--rule-params", "not json"], "--rule-params"),
    (["--partition", "bogus:1"], "bogus"),
    (["--orgs", "3", "--ipfs-nodes", "4"], "--ipfs-nodes"),
])
def test_sim_refuses_a_bad_option_with_exit_1_before_starting_anything(tmp_path, args, named):
    out = fedledger("sim", "--out", tmp_path / "run", *args, cwd=tmp_path, timeout=60)
    assert out.returncode == EXIT_INPUT, out.stderr
    assert named in out.stderr and "error:" in out.stderr
    assert not (tmp_path / "run").exists()  # no run directory: no devnet, no IPFS node, no process


def test_sim_help_lists_every_fault_option():
    out = fedledger("sim", "--help")
    for option in ("--kill-leader-at", "--byzantine-leader-at", "--attackers", "--attack", "--drop-org",
                   "--restart-org", "--restart-chain-at", "--restart-ipfs", "--rule-params", "--verifiers"):
        assert option in out.stdout, option


# --------------------------------------------------------------------------- against a real chain


@pytest.fixture
def chain_files(ledger, tmp_path):
    """A deployment file for the `ledger` fixture's contract, and keystores for dev keys 0 (the
    admin) and 1 (a member, not the admin)."""
    from fedledger.node.chain.deployment import Deployment
    from fedledger.node.chain.devnet import DEV_KEYS
    from fedledger.node.chain.keys import create_keystore

    dep = tmp_path / "deployment.json"
    Deployment(chain_id=31337, address=ledger.address, abi_sha256=ledger.admin.artifact.abi_sha256, block=0,
               admin=ledger.accounts[0].address, tx_hash="0x", solc_version="0.8.30", rpc_url=ledger.rpc_url).save(dep)
    keys = []
    for i in (0, 1):
        path = tmp_path / f"dev{i}.json"
        create_keystore(path, "a long passphrase", private_key=DEV_KEYS[i], scrypt_n=1024)
        keys.append(path)
    return dep, keys


def two_member_task(ledger, verifiers: int, rounds: int) -> tuple[int, str]:
    """org1 and org2 admitted and a task of theirs with 600 s windows: (task id, genesis sha256)."""
    from fedledger.node.protocol import TaskConfig

    for i in (1, 2):
        ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")
    genesis = "ab" * 32
    task, _ = ledger.admin.create_task(TaskConfig("bafkspec", "bafkgenesis", genesis, "fedavg", b"{}", 2, 2,
                                                  600, 600, 600, verifiers, verifiers, rounds))
    return task, genesis


@pytest.mark.chain
def test_status_shows_members_and_where_the_round_stands(ledger, chain_files):
    dep, _ = chain_files
    task, genesis = two_member_task(ledger, verifiers=1, rounds=3)
    ledger.client(1).submit_update(task, 1, genesis, "bafkupdate", "cd" * 32, 10)

    data = as_json(fedledger("status", "--deployment", dep, "--json"))
    assert data["contract"] == ledger.address and data["chain_id"] == 31337
    assert sorted(data["members"].values()) == ["org1", "org2"]
    (t,) = data["tasks"]
    assert (t["task"], t["rule"], t["round"], t["max_rounds"], t["phase"], t["updates"], t["completed"]) == \
        (task, "fedavg", 1, 3, "submission", 1, False)
    text = fedledger("status", "--deployment", dep)
    assert text.returncode == EXIT_OK
    assert f"FedLedger {ledger.address} on chain 31337: 2 members (org1, org2)" in text.stdout
    assert f"task {task} [fedavg]: round 1/3 submission, 1 updates" in text.stdout


@pytest.mark.chain
def test_status_and_task_show_say_what_each_member_has_spent_of_a_private_tasks_budget(ledger, chain_files):
    from fedledger.aggregation.registry import encode_params
    from fedledger.node.protocol import TaskConfig
    from fedledger.node.training.privacy import Privacy

    dep, _ = chain_files
    for i in (1, 2):
        ledger.admin.add_member(ledger.accounts[i].address, f"org{i}")
    promise = {"dp_clip": 6.0, "dp_noise": 1.6, "dp_epsilon": 8.0}
    task, _ = ledger.admin.create_task(TaskConfig("bafkspec", "bafkgenesis", "ab" * 32, "fedavg",
                                                  encode_params("fedavg", promise), 2, 2, 600, 600, 600, 1, 1, 3))
    ledger.client(1).submit_update(task, 1, "ab" * 32, "bafkupdate", "cd" * 32, 10)
    p = Privacy.from_params(promise)

    # One JSON and one text call (each command starts the accountant's libraries: seconds apiece).
    shown = as_json(fedledger("task", "show", str(task), "--deployment", dep, "--json"))["privacy"]
    assert (shown["level"], shown["budget"], shown["rounds_within_budget"]) == ("example", 8.0, p.rounds_within(8.0))
    assert shown["members"] == {"org1": {"updates": 1, "epsilon": round(p.spent(1), 4)}}
    line = fedledger("status", "--deployment", dep).stdout
    assert f"example-level DP, epsilon spent up to {round(p.spent(1), 4):.3f} of 8" in line


@pytest.mark.chain
def test_exit_3_when_the_chain_node_does_not_answer_and_4_when_the_chain_refuses(ledger, chain_files):
    dep, (admin_ks, member_ks) = chain_files
    down = fedledger("status", "--deployment", dep, "--rpc", closed_port_url(), "--json")
    assert down.returncode == EXIT_UNREACHABLE and as_json(down)["exit_code"] == EXIT_UNREACHABLE

    unknown = fedledger("status", "--deployment", dep, "--task", "7", "--json")
    assert unknown.returncode == EXIT_INPUT and "there is no task 7" in as_json(unknown)["message"]

    stranger = "0x" + "ab" * 20
    not_admin = fedledger("member", "add", stranger, "--name", "x", "--deployment", dep, "--keystore", member_ks,
                          "--password", f"env:{PW_ENV}", "--json")
    assert not_admin.returncode == EXIT_REFUSED and as_json(not_admin)["error"] == "NotAdmin", not_admin.stderr
    not_member = fedledger("member", "remove", stranger, "--deployment", dep, "--keystore", admin_ks,
                           "--password", f"env:{PW_ENV}", "--json")
    assert not_member.returncode == EXIT_REFUSED and as_json(not_member)["error"] == "NotMember", not_member.stderr
    assert "NotMember" in not_member.stderr
    assert as_json(fedledger("member", "list", "--all", "--deployment", dep, "--json"))["members"] == []


@pytest.mark.chain
@pytest.mark.ipfs
def test_audit_json_of_a_live_contract_parses_and_an_unreachable_chain_exits_3(ledger, ipfs_node):
    out = fedledger("audit", "--rpc", ledger.rpc_url, "--contract", ledger.address, "--ipfs", ipfs_node.api_url,
                    "--json", "--quiet")
    assert out.returncode == EXIT_OK, out.stderr
    lineage = as_json(out)
    assert lineage["ok"] is True and lineage["tasks"] == [] and lineage["source"]["contract"] == ledger.address
    down = fedledger("audit", "--rpc", closed_port_url(), "--contract", ledger.address, "--ipfs", ipfs_node.api_url,
                     "--quiet")
    assert down.returncode == EXIT_UNREACHABLE, down.stderr
    no_ipfs = fedledger("audit", "--rpc", ledger.rpc_url, "--contract", ledger.address, "--ipfs", closed_port_url(),
                        "--quiet")
    assert no_ipfs.returncode == EXIT_UNREACHABLE and "Traceback" not in no_ipfs.stderr, no_ipfs.stderr
    assert len(no_ipfs.stderr.strip().splitlines()) == 1 and "IPFS" in no_ipfs.stderr, no_ipfs.stderr


def test_audit_of_a_deployment_file_with_a_tampered_block_is_a_one_line_error_not_a_traceback(ledger, ipfs_node,
                                                                                               tmp_path):
    from fedledger.node.chain.deployment import Deployment

    dep = Deployment(chain_id=ledger.admin.chain_id, address=ledger.address, abi_sha256=ledger.admin.artifact.abi_sha256,
                     block=ledger.admin.block_number() + 10**9, admin=ledger.accounts[0].address, tx_hash="0x",
                     solc_version="0.8.30", rpc_url=ledger.rpc_url)
    dep.save(tmp_path / "deployment.json")
    for args in (["--deployment", tmp_path / "deployment.json"], ["--rpc", ledger.rpc_url, "--contract", ledger.address,
                                                                  "--from-block", str(2**63)]):
        out = fedledger("audit", *args, "--ipfs", ipfs_node.api_url, "--quiet")
        assert out.returncode == EXIT_UNREACHABLE, out.stderr  # docs/audit.md: RPC failures are exit 3
        assert "Traceback" not in out.stderr and out.stderr.strip().startswith("error:"), out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


WRONG_MODEL = """
import fedledger
from fedledger.node.training.workloads import load_digits_data


def model():
    from torch import nn

    class Narrow(nn.Module):  # the digits MLP with 32 hidden units where the task has 64
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

    return Narrow()


workload = fedledger.TorchWorkload(name="narrow", model_fn=model, load_data=load_digits_data)
"""


@pytest.mark.chain
@pytest.mark.ipfs
def test_a_node_whose_own_workload_does_not_build_the_tasks_model_refuses_to_start_naming_the_tensors(
        ledger, ipfs_node, chain_files, tmp_path):
    dep, (admin_ks, member_ks) = chain_files
    ledger.admin.add_member(ledger.accounts[1].address, "org1")
    created = fedledger("task", "create", "--workload", "digits-mlp", "--verifiers", "0", "--rounds", "1",
                        "--deployment", dep, "--keystore", admin_ks, "--password", f"env:{PW_ENV}",
                        "--ipfs-api", ipfs_node.api_url, "--out", tmp_path / "tasks", "--json")
    assert created.returncode == EXIT_OK, created.stderr
    org = tmp_path / "org1"
    org.mkdir()
    (org / "narrow.py").write_text(WRONG_MODEL)
    common = ["--dir", org, "--deployment", dep, "--keystore", member_ks, "--password", f"env:{PW_ENV}",
              "--ipfs-api", ipfs_node.api_url, "--rpc", ledger.rpc_url, "--task", "0"]
    missing = fedledger("init", "org1", *common, "--workload", "nosuch:workload")
    assert missing.returncode == EXIT_INPUT and "no module 'nosuch'" in missing.stderr, missing.stderr
    sliced = fedledger("init", "org1", *common, "--workload", "narrow:workload", "--num-orgs", "2")
    assert sliced.returncode == EXIT_INPUT and "--num-orgs" in sliced.stderr, sliced.stderr
    written = fedledger("init", "org1", *common, "--workload", "narrow:workload")
    assert written.returncode == EXIT_OK, written.stderr
    run = fedledger("node", "run", "--config", org / "node.toml", timeout=120)
    assert run.returncode == EXIT_INPUT, run.stderr
    assert "workload 'narrow:workload' does not build the model task 0 trains" in run.stderr
    assert "fc1.weight: shape [32, 64] float32, expected [64, 64] float32" in run.stderr
    assert "fc2.weight: shape [10, 32] float32, expected [10, 64] float32" in run.stderr
    assert not ledger.admin.has_submitted(0, 1, ledger.accounts[1].address)  # nothing was sent


@pytest.mark.chain
def test_status_watch_follows_a_round_to_the_end_of_the_task_one_json_line_per_change(ledger, chain_files):
    dep, _ = chain_files
    task, genesis = two_member_task(ledger, verifiers=0, rounds=1)
    proc = subprocess.Popen([*console_script(), "status", "--deployment", str(dep), "--watch", "0.2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        first = json.loads(proc.stdout.readline())  # the federation as it stands
        assert first["tasks"][0]["phase"] == "submission" and first["tasks"][0]["updates"] == 0
        ledger.client(1).submit_update(task, 1, genesis, "bafk1", "cd" * 32, 10)
        assert json.loads(proc.stdout.readline())["updates"] == 1
        ledger.client(2).submit_update(task, 1, genesis, "bafk2", "ce" * 32, 10)  # fills the round: reveals
        assert json.loads(proc.stdout.readline())["phase"] == "reveal"
        for i in (1, 2):
            last = ledger.client(i).reveal(task, 1)
        leader = last.event("LeaderElected")["leader"]
        elected = json.loads(proc.stdout.readline())
        assert elected["phase"] == "aggregation" and elected["leader"] in ("org1", "org2")
        ledger.client([a.address for a in ledger.accounts].index(leader)).publish_aggregate(task, 1, 0, "bafkg",
                                                                                             "ef" * 32)
        done = json.loads(proc.stdout.readline())
        assert done["completed"] is True and done["global_sha256"] == "ef" * 32
        assert proc.wait(timeout=30) == EXIT_OK  # every task shown has completed: it stops by itself
    finally:
        proc.kill()
