"""Workloads as user code (training/api.py): the torch hooks, the numpy level, loading a user's
module, and what the node config and the client library accept. Real torch, real data."""

from __future__ import annotations

import numpy as np
import pytest

import fedledger
from fedledger.node.errors import ConfigError, InputError, WorkloadDataError
from fedledger.node.library.federation import Round
from fedledger.node.peer.config import NodeConfig
from fedledger.node.training.api import LocalData, load_workload, tensor_differences
from fedledger.node.training.workloads import get_workload, load_digits_data

DIGITS = get_workload("digits-mlp")


def test_a_torch_workloads_own_loop_and_evaluation_replace_the_built_in_ones():
    calls = []

    def train(model, data, config):
        import torch

        X, y = data
        calls.append(float(next(model.parameters()).detach().abs().sum()))  # the global weights are loaded
        opt = torch.optim.SGD(model.parameters(), lr=config.lr)
        for _ in range(config.epochs):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(torch.from_numpy(X)), torch.from_numpy(y)).backward()
            opt.step()
        return {"steps": config.epochs}

    def evaluate(model, data):
        import torch

        X, y = data
        return {"loss": 0.5, "accuracy": float((model(torch.from_numpy(X)).argmax(1).numpy() == y).mean())}

    w = fedledger.TorchWorkload(name="own-loop", model_fn=DIGITS.model_fn, load_data=load_digits_data,
                                train_fn=train, evaluate_fn=evaluate)
    t = w.trainer_for(w.local_data(None))
    genesis = w.initial_weights(0)
    result = t.fit(genesis, w.default_config.replace(epochs=3, lr=0.5))
    assert calls == [pytest.approx(float(np.abs(genesis["fc1.weight"]).sum()), rel=1e-6)]
    assert result.metrics == {"steps": 3.0} and result.num_samples == 1437
    assert not np.array_equal(result.weights["fc1.weight"], genesis["fc1.weight"])
    ev = t.evaluate(result.weights)
    assert ev.loss == 0.5 and ev.accuracy > t.evaluate(genesis).accuracy


def numpy_workload(fit):
    return fedledger.ArrayWorkload(
        name="np", init_fn=lambda seed: {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)},
        load_data=lambda path: LocalData(train=(np.ones((5, 2)), np.zeros(5, np.int64)), test=None),
        fit_fn=fit, evaluate_fn=lambda w, test: {"loss": 1.0, "accuracy": 0.5})


def test_a_numpy_workload_trains_and_every_model_it_returns_is_checked():
    t = numpy_workload(lambda w, train, cfg: ({k: v + 1 for k, v in w.items()}, {"n": len(train[1])})) \
        .trainer_for(LocalData(train=(np.ones((5, 2)), np.zeros(5, np.int64))))
    r = t.fit({"w": np.zeros((3, 2)), "b": np.zeros(3)}, fedledger.TrainingConfig())
    assert r.num_samples == 5 and r.metrics == {"n": 5.0}
    assert r.weights["w"].dtype == np.float32 and (r.weights["w"] == 1).all()
    for bad, named in [({"w": np.zeros((2, 3)), "b": np.zeros(3)}, "w: shape [2, 3] float32, expected [3, 2] float32"),
                       ({"w": np.zeros((3, 2))}, "missing b"),
                       ({"w": np.full((3, 2), np.nan), "b": np.zeros(3)}, "'w' holds NaN or Inf"),
                       ({"w": np.zeros((3, 2), np.int64), "b": np.zeros(3)}, "must be a float array")]:
        t = numpy_workload(lambda w, train, cfg, bad=bad: bad).trainer_for(LocalData(train=(np.ones((5, 2)),
                                                                                           np.zeros(5, np.int64))))
        with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
            t.fit({"w": np.zeros((3, 2)), "b": np.zeros(3)}, fedledger.TrainingConfig())


def test_a_users_workload_loads_from_its_module_and_every_mistake_is_named(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import fedledger\n"
        "from fedledger.node.training.workloads import get_workload\n"
        "workload = get_workload('digits-mlp')\n"
        "def make():\n    return workload\n"
        "not_one = 42\n")
    assert load_workload("mine:workload", [tmp_path]) is DIGITS
    assert load_workload("mine:make", [tmp_path]) is DIGITS  # a function returning one
    for spec, said in [("mine", "expected MODULE:ATTRIBUTE"), ("nosuch_module:w", "no module 'nosuch_module'"),
                       ("mine:missing", "has no attribute 'missing'"), ("mine:not_one", "is a int, not a fedledger")]:
        with pytest.raises(InputError, match=said):
            load_workload(spec, [tmp_path])
    bad = fedledger.TorchWorkload(name="bad", model_fn=DIGITS.model_fn, load_data=lambda p: [1, 2, 3])
    with pytest.raises(WorkloadDataError, match="return a fedledger LocalData"):
        bad.local_data(None)
    needs = fedledger.TorchWorkload(name="needs", model_fn=DIGITS.model_fn, load_data=load_digits_data,
                                    needs_data_path=True)
    with pytest.raises(WorkloadDataError, match="needs a data path"):
        needs.local_data(None)


def test_tensor_differences_name_every_tensor_that_differs():
    want = {"a": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    have = {"a": np.zeros((2, 3), np.float32), "c": np.zeros(1, np.float32)}
    assert tensor_differences(have, want) == ["missing b", "unexpected c", "a: shape [2, 3] float32, expected [2, 2] float32"]
    assert tensor_differences(want, want) == []


def test_the_loop_cannot_submit_a_model_unlike_the_global_one_nor_submit_twice():
    rnd = Round(3, {"w": np.zeros((2, 2), np.float32)}, fedledger.TrainingConfig())
    w = rnd.global_weights()
    w["w"] += 1
    assert (rnd.global_weights()["w"] == 0).all()  # a copy: the loop cannot alter the parent
    with pytest.raises(ValueError, match=r"w: shape \[3\] float32, expected \[2, 2\] float32"):
        rnd.submit({"w": np.zeros(3)}, num_samples=4)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        rnd.submit(w, num_samples=0)
    rnd.submit(w, num_samples=4, metrics={"accuracy": 0.9})
    assert rnd._result.num_samples == 4 and rnd._result.metrics == {"accuracy": 0.9}
    with pytest.raises(ValueError, match="already submitted"):
        rnd.submit(w, num_samples=4)


BASE = """
[organisation]
name = "org1"
[chain]
rpc_url = "http://127.0.0.1:8545"
deployment = "deployment.json"
[ipfs]
api_url = "http://127.0.0.1:5001"
[keystore]
path = "keystore.json"
"""


def test_a_node_config_names_a_builtin_or_its_own_workload_never_both(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(BASE + '[workload]\nobject = "mine:workload"\ndata = "data"\n')
    cfg = NodeConfig.load(path)
    assert (cfg.workload.object, cfg.workload.builtin, cfg.workload.path) == ("mine:workload", None, tmp_path)
    written = cfg.to_toml()
    assert "org_index" not in written and "\nbuiltin" not in written and 'object = "mine:workload"' in written
    path.write_text(BASE + '[workload]\nobject = "mine:workload"\nbuiltin = "digits-mlp"\n')
    with pytest.raises(ConfigError, match="both builtin and object"):
        NodeConfig.load(path)
