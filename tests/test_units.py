"""Pure parts without a chain or an IPFS node: the simulation's options, the shared aggregate
function on local files, the node config's old spellings, and the error tree's exit codes."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.node import errors
from fedledger.node.errors import InputError
from fedledger.node.peer.config import NodeConfig
from fedledger.node.peer.recompute import NoValidUpdate, UpdateRecord, build_aggregate
from fedledger.node.sim.options import SimOptions
from fedledger.node.storage.modelfile import ModelSpec, read_model, write_model_file

# --------------------------------------------------------------------------- sim options


@pytest.mark.parametrize("change, named", [
    ({"rule_params": "not json"}, "--rule-params is not valid JSON"),
    ({"rule_params": "[1]"}, "--rule-params must be a JSON object"),
    ({"rule": "trimmed_mean", "rule_params": '{"beta": 0.9}'}, "--rule-params"),
    ({"rule": "mean-ish"}, "--rule 'mean-ish' is not a rule"),
    ({"workload": "mnist"}, "--workload 'mnist' is not a built-in workload"),
    ({"partition": "zipf"}, "partition scheme"),
    ({"orgs": 0}, "--orgs must be between 1 and 200"),
    ({"verifiers": 17}, "--verifiers must be between 0 and 16"),
    ({"ipfs_nodes": 5}, "--ipfs-nodes must be between 1 and --orgs"),
    ({"training": {"lr_decay": 0.0}}, "lr_decay must be"),
    ({"training": {"learning_rate": 0.1}}, "unknown training setting"),
])
def test_sim_options_refuse_what_cannot_run_naming_the_option(change, named):
    with pytest.raises(ValueError, match=named):
        SimOptions(**change).check()


def test_sim_training_is_the_workloads_defaults_with_the_settings_given_and_the_run_seed():
    t = SimOptions(workload="breast-cancer", seed=7, training={"epochs": 3, "lr": None}).resolved_training()
    assert (t.epochs, t.lr, t.batch_size, t.seed) == (3, 0.01, 16, 7)


# --------------------------------------------------------------------------- the aggregate function


def _update(tmp_path, name: str, value: float, member: str, parent: str) -> tuple[UpdateRecord, dict]:
    tensors = {"w": np.full((2, 3), value, dtype=np.float32), "b": np.full((3,), value, dtype=np.float32)}
    path = tmp_path / f"{name}.safetensors"
    sha = write_model_file(path, tensors, {"kind": "update", "task": "0", "round": "1", "parent": parent,
                                           "rule": "fedavg", "member": member, "num_samples": "10"})
    return UpdateRecord(member, f"cid-{name}", sha, 10), {sha: path}


def test_build_aggregate_averages_in_canonical_order_and_excludes_by_reason_code(tmp_path):
    base = {"w": np.zeros((2, 3), np.float32), "b": np.zeros((3,), np.float32)}
    parent_file = tmp_path / "parent.safetensors"
    parent = write_model_file(parent_file, base, {"kind": "genesis", "task": "0", "round": "0", "rule": "fedavg"})
    spec = ModelSpec.from_tensors(base)
    a, pa = _update(tmp_path, "a", 1.0, "0x" + "01" * 20, parent)
    b, pb = _update(tmp_path, "b", 3.0, "0x" + "02" * 20, parent)
    liar, pl = _update(tmp_path, "c", 9.0, "0x" + "03" * 20, "cd" * 32)  # says it was trained from another parent
    files = {**pa, **pb, **pl}
    out = tmp_path / "agg.safetensors"
    result = build_aggregate(task=0, rnd=1, parent_sha=parent, rule_id="fedavg", rule_params=b"{}", spec=spec,
                             updates=[liar, b, a], fetch=lambda u: files[u.sha256], out=out, parent=parent_file)
    tensors, meta = read_model(out, result.sha256, spec)
    assert np.all(tensors["w"] == 2.0) and meta["kind"] == "global" and meta["parent"] == parent
    assert [u.member for u in result.included] == [b.member, a.member]
    assert [(u.member, why) for u, why in result.excluded] == [(liar.member, "wrong_meta")]
    # The same inputs in another order: the same bytes.
    again = build_aggregate(task=0, rnd=1, parent_sha=parent, rule_id="fedavg", rule_params=b"{}", spec=spec,
                            updates=[a, b, liar], fetch=lambda u: files[u.sha256], out=tmp_path / "again.safetensors",
                            parent=parent_file)
    assert again.sha256 == result.sha256
    with pytest.raises(NoValidUpdate, match="no valid update"):
        build_aggregate(task=0, rnd=1, parent_sha=parent, rule_id="fedavg", rule_params=b"{}", spec=spec,
                        updates=[liar], fetch=lambda u: files[u.sha256], out=tmp_path / "none.safetensors",
                        parent=parent_file)


# --------------------------------------------------------------------------- node config: old spellings


def test_a_config_with_the_workload_under_task_still_loads_and_says_what_to_write(tmp_path, capsys):
    path = tmp_path / "node.toml"
    path.write_text('[organisation]\nname = "org1"\n[chain]\nrpc_url = "http://127.0.0.1:8545"\n'
                    'deployment = "d.json"\n[ipfs]\napi_url = "http://127.0.0.1:5001"\n[keystore]\npath = "k.json"\n'
                    '[task]\nid = 2\nbuiltin = "breast-cancer"\norg_index = 1\nnum_orgs = 3\n')
    cfg = NodeConfig.load(path)
    assert (cfg.task.id, cfg.workload.builtin, cfg.workload.org_index, cfg.workload.num_orgs) == (
        2, "breast-cancer", 1, 3)
    assert "[task] builtin is deprecated; write it as [workload] builtin" in capsys.readouterr().err
    rewritten = tmp_path / "new.toml"
    rewritten.write_text(cfg.to_toml())
    assert "[workload]" in rewritten.read_text() and NodeConfig.load(rewritten) == cfg


def test_a_typo_in_training_is_a_config_error_naming_the_file_and_the_known_settings(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[organisation]\nname = "org1"\n[chain]\nrpc_url = "http://x:1"\ndeployment = "d.json"\n'
                    '[ipfs]\napi_url = "http://x:2"\n[keystore]\npath = "k.json"\n[training]\nepoch = 2\n')
    with pytest.raises(errors.ConfigError, match=r"node.toml:11: \[training\] unknown key epoch; did you mean epochs\?"):
        NodeConfig.load(path)


# --------------------------------------------------------------------------- the error tree


def test_every_error_carries_its_exit_code_and_one_root():
    assert errors.ConfigError("x").exit_code == errors.EXIT_INPUT
    assert errors.ChainError("x").exit_code == errors.EXIT_UNREACHABLE and errors.ChainError("x").kind == "ChainUnreachable"
    revert = errors.ContractRevert("NotAdmin", {"who": "0x1"}, "addMember")
    assert revert.exit_code == errors.EXIT_REFUSED and revert.kind == "NotAdmin"
    assert errors.TransactionRejected("x").exit_code == errors.EXIT_REFUSED
    assert errors.exit_code_of(ValueError("x")) == errors.EXIT_INPUT
    assert errors.exit_code_of(ConnectionRefusedError()) == errors.EXIT_UNREACHABLE
    from fedledger.node.storage.modelfile import ModelRejected
    from fedledger.node.storage.ipfs import IpfsTimeout

    assert ModelRejected("bad_header", "x").exit_code == errors.EXIT_INPUT
    assert IpfsTimeout("x").exit_code == errors.EXIT_UNREACHABLE
    for cls in (InputError, errors.ChainError, errors.StorageError, errors.AuditError, errors.SimError):
        assert issubclass(cls, errors.FedledgerError)


# --------------------------------------------------------------------------- old command-line spellings


def test_old_spellings_of_the_workload_option_still_work_and_say_what_to_write(tmp_path):
    from typer.testing import CliRunner

    from fedledger.node.cli.app import app

    runner = CliRunner()
    old_sim = runner.invoke(app, ["sim", "--task", "mnist", "--out", str(tmp_path / "run")])
    assert old_sim.exit_code == errors.EXIT_INPUT
    assert "--task NAME (the built-in model and data) is deprecated; use --workload NAME" in old_sim.stderr
    assert "--workload 'mnist' is not a built-in workload" in old_sim.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was created
    old_init = runner.invoke(app, ["init", "org1", "--dir", str(tmp_path / "org1"), "--builtin", "breast-cancer"])
    assert old_init.exit_code == 0, old_init.output
    assert "--builtin NAME is deprecated; use --workload NAME" in old_init.stderr
    assert NodeConfig.load(tmp_path / "org1" / "node.toml").workload.builtin == "breast-cancer"


def test_status_says_what_a_passed_deadline_allows_in_words():
    from fedledger.node.cli.node import deadline_words

    def words(phase, left, updates=0, need=2):
        return deadline_words({"phase": phase, "seconds_left": left, "updates": updates, "min_participants": need})

    assert words("submission", 12.4) == "deadline in 12 s"
    assert words("submission", -207, updates=1) == ("submission window passed 207 s ago; the round closes once 1 more "
                                                     "member submits (it needs 2)")
    assert words("submission", -5, updates=0, need=3).endswith("once 3 more members submit (it needs 3)")
    assert words("submission", -207, updates=2) == "submission window passed 207 s ago; any member may now close the round"
    assert "next candidate leads" in words("aggregation", -3) and "time the attempt out" in words("verification", -1)
    assert "-" not in words("reveal", -9)
