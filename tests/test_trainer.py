"""Local training and the built-in tasks: real torch, real scikit-learn data, synthetic CIFAR bytes."""

from __future__ import annotations

import tarfile
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedledger.node.training.workloads import (
    CIFAR_RECORD,
    CIFAR_TEST_FILE,
    CIFAR_TRAIN_FILES,
    WORKLOADS,
    centralized_baseline,
    get_workload,
    load_cifar10_data,
)
from fedledger.node.training.trainer import (
    FISHER_PREFIX,
    FISHER_X_THETA_PREFIX,
    TorchTrainer,
    add_fedcurv_zeros,
    diagonal_fisher,
    fedcurv_tensor_names,
    split_fedcurv,
)
from fedledger.aggregation.fedcurv import sum_fedcurv_terms
from fedledger.node.errors import WorkloadDataError
from fedledger.node.training.config import TrainingConfig

DIGITS = get_workload("digits-mlp")
PARAMS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


@pytest.fixture(scope="module")
def digits():
    return DIGITS.load_data(None)


@pytest.fixture
def trainer(digits):
    X_train, y_train, X_test, y_test = digits
    return DIGITS.trainer((X_train, y_train), (X_test, y_test))


@pytest.fixture
def small_trainer(digits):
    """300 training examples: enough to move the weights, cheap enough for many fits."""
    X_train, y_train, X_test, y_test = digits
    return DIGITS.trainer((X_train[:300], y_train[:300]), (X_test, y_test))


def distance(a: dict, b: dict, names=PARAMS) -> float:
    return float(np.sqrt(sum(((a[k].astype(np.float64) - b[k]) ** 2).sum() for k in names)))


# ------------------------------------------------------------------ training


def test_training_from_genesis_lifts_digits_accuracy_above_80_percent_in_3_epochs(trainer):
    genesis = DIGITS.genesis_weights(0)
    before = trainer.evaluate(genesis)
    result = trainer.fit(genesis, DIGITS.default_config.replace(epochs=3))
    after = trainer.evaluate(result.weights)
    assert before.accuracy < 0.3
    assert after.accuracy > 0.8
    assert after.loss < before.loss
    assert result.num_samples == 1437 and after.num_samples == 360
    assert result.metrics["steps"] == 3 * 45  # ceil(1437 / 32) batches per epoch
    assert 0.0 < result.metrics["train_loss"] < before.loss


def test_fit_is_bit_identical_for_the_same_seed_and_differs_for_another(digits):
    X_train, y_train, _, _ = digits
    cfg = DIGITS.default_config.replace(seed=7, epochs=2)
    genesis = DIGITS.genesis_weights(1)
    # Two independent trainers, with the global RNG disturbed between them.
    a = DIGITS.trainer((X_train, y_train)).fit(genesis, cfg).weights
    torch.rand(100)
    b = DIGITS.trainer((X_train, y_train)).fit(genesis, cfg).weights
    c = DIGITS.trainer((X_train, y_train)).fit(genesis, cfg.replace(seed=8)).weights
    assert all(np.array_equal(a[k], b[k]) for k in PARAMS)
    assert not all(np.array_equal(a[k], c[k]) for k in PARAMS)


def test_fit_leaves_the_callers_torch_rng_untouched(small_trainer):
    state = torch.get_rng_state()
    small_trainer.fit(DIGITS.genesis_weights(0), DIGITS.default_config.replace(seed=3))
    assert torch.equal(torch.get_rng_state(), state)


def test_weights_round_trip_with_state_dict_names_shapes_and_float32(small_trainer):
    model_state = DIGITS.model_fn().state_dict()
    genesis = DIGITS.genesis_weights(0)
    assert list(genesis) == list(model_state) == PARAMS
    for name, arr in genesis.items():
        assert arr.dtype == np.float32 and arr.shape == tuple(model_state[name].shape)

    # float64 and read-only inputs (as from an mmapped safetensors file) load without warnings.
    incoming = {k: v.astype(np.float64) for k, v in genesis.items()}
    for v in incoming.values():
        v.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_trainer.set_weights(incoming)
    back = small_trainer.get_weights()
    assert list(back) == PARAMS
    assert all(back[k].dtype == np.float32 and np.array_equal(back[k], genesis[k]) for k in PARAMS)

    fitted = small_trainer.fit(genesis, DIGITS.default_config).weights
    assert list(fitted) == PARAMS and all(fitted[k].dtype == np.float32 for k in PARAMS)
    # The returned arrays are copies: changing them does not change the model.
    fitted["fc1.bias"][:] = 123.0
    assert not np.any(small_trainer.get_weights()["fc1.bias"] == 123.0)


def test_weights_with_wrong_names_shapes_or_values_are_refused_with_the_reason(small_trainer):
    genesis = DIGITS.genesis_weights(0)
    with pytest.raises(ValueError, match=r"missing \['fc2.bias'\]"):
        small_trainer.set_weights({k: v for k, v in genesis.items() if k != "fc2.bias"})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        small_trainer.set_weights({**genesis, "extra": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="'fc1.bias' has shape"):
        small_trainer.set_weights({**genesis, "fc1.bias": np.zeros(3, np.float32)})
    bad = genesis["fc2.weight"].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        small_trainer.set_weights({**genesis, "fc2.weight": bad})


def test_a_model_with_integer_buffers_is_refused(digits):
    X_train, y_train, _, _ = digits
    with pytest.raises(ValueError, match="num_batches_tracked"):
        TorchTrainer(lambda: nn.Sequential(nn.Linear(64, 10), nn.BatchNorm1d(10)), (X_train, y_train))


def test_trainer_runs_with_its_thread_count_and_restores_the_callers(digits):
    X_train, y_train, _, _ = digits
    seen: list[int] = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return self.fc(x)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        t = TorchTrainer(Spy, (X_train[:64], y_train[:64]), num_threads=1)
        t.fit(t.get_weights(), TrainingConfig())
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_fit_config_rejects_out_of_range_values_and_unknown_fields():
    for bad in ({"lr": 0}, {"lr": float("nan")}, {"momentum": 1.0}, {"batch_size": 0}, {"batch_size": 2.5},
                {"epochs": 0}, {"seed": -1}, {"mu": -0.1}, {"fedcurv_lambda": float("inf")}, {"lr_decay": 0.0},
                {"lr_decay": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainingConfig(**bad)
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainingConfig.from_dict({"lr": 0.1, "learning_rate": 0.1})
    assert TrainingConfig.from_dict(TrainingConfig(mu=0.5).to_dict()) == TrainingConfig(mu=0.5)


# ------------------------------------------------------------------ FedProx


def test_fedprox_with_large_mu_keeps_the_update_closer_to_the_global_model(small_trainer):
    genesis = DIGITS.genesis_weights(0)
    cfg = DIGITS.default_config.replace(epochs=3, seed=1)
    plain = small_trainer.fit(genesis, cfg)
    prox = small_trainer.fit(genesis, cfg.replace(mu=5.0))
    assert distance(prox.weights, genesis) < 0.5 * distance(plain.weights, genesis)
    assert "fedprox_distance_sq" in prox.metrics and "fedprox_distance_sq" not in plain.metrics


# ------------------------------------------------------------------ FedCurv


def test_fedcurv_update_carries_fisher_terms_for_every_parameter(small_trainer):
    genesis = DIGITS.genesis_weights(0)
    result = small_trainer.fit(genesis, DIGITS.default_config.replace(fedcurv_lambda=0.1))
    model, terms = split_fedcurv(result.weights)
    assert list(model) == PARAMS
    assert sorted(terms) == sorted(fedcurv_tensor_names(PARAMS))
    for p in PARAMS:
        fisher = terms[FISHER_PREFIX + p]
        assert fisher.shape == model[p].shape and fisher.dtype == np.float32
        assert (fisher >= 0).all() and fisher.max() > 0
        assert np.array_equal(terms[FISHER_X_THETA_PREFIX + p], fisher * model[p])
    # Without FedCurv, no extra tensors.
    assert list(small_trainer.fit(genesis, DIGITS.default_config).weights) == PARAMS


def test_diagonal_fisher_is_the_mean_squared_per_sample_gradient(digits):
    X_train, y_train, _, _ = digits
    torch.manual_seed(0)
    model = DIGITS.model_fn()
    x = torch.from_numpy(X_train[:24])
    y = torch.from_numpy(y_train[:24])
    expected = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(len(y)):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            expected[k] += p.grad**2 / len(y)
    got = diagonal_fisher(model, x, y, batch_size=10)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=1e-9)


def test_fedcurv_penalty_pulls_the_update_towards_the_other_members_models(small_trainer):
    genesis = DIGITS.genesis_weights(0)
    anchor = DIGITS.genesis_weights(1)  # "the other members' models"
    others = {}
    for p in PARAMS:
        others[FISHER_PREFIX + p] = np.ones_like(anchor[p])
        others[FISHER_X_THETA_PREFIX + p] = anchor[p].copy()
    cfg = DIGITS.default_config.replace(epochs=2, seed=2)
    plain = small_trainer.fit({**genesis, **others}, cfg).weights
    curved = small_trainer.fit({**genesis, **others}, cfg.replace(fedcurv_lambda=1.0)).weights
    assert distance(curved, anchor) < 0.5 * distance(plain, anchor)


def test_fedcurv_penalty_excludes_the_members_own_terms(small_trainer):
    cfg = DIGITS.default_config.replace(fedcurv_lambda=1.0, epochs=2, seed=4)
    first = small_trainer.fit(add_fedcurv_zeros(DIGITS.genesis_weights(0)), cfg).weights
    # A federation of one: the global sums are this member's own terms, so no one else is there
    # to pull towards and the fit equals a fit without FedCurv, bit for bit.
    model, own = split_fedcurv(first)
    global_model = {**model, **sum_fedcurv_terms([own])}
    alone = small_trainer.fit(global_model, cfg).weights
    plain = small_trainer.fit(global_model, cfg.replace(fedcurv_lambda=0.0)).weights
    assert all(np.array_equal(alone[k], plain[k]) for k in PARAMS)
    # Had its update not been part of the global model, the same sums are someone else's: they pull.
    small_trainer.set_own_fedcurv_terms(None)
    pulled = small_trainer.fit(global_model, cfg).weights
    assert distance(pulled, model) < distance(plain, model)


def test_own_fedcurv_terms_restored_after_a_restart_match_the_remembered_ones(digits):
    X_train, y_train, _, _ = digits
    cfg = DIGITS.default_config.replace(fedcurv_lambda=0.5)
    a = DIGITS.trainer((X_train[:200], y_train[:200]))
    update = a.fit(add_fedcurv_zeros(DIGITS.genesis_weights(0)), cfg).weights
    b = DIGITS.trainer((X_train[:200], y_train[:200]))
    assert b.own_fedcurv_terms is None
    b.set_own_fedcurv_terms(split_fedcurv(update)[1])
    assert all(np.array_equal(a.own_fedcurv_terms[k], b.own_fedcurv_terms[k]) for k in a.own_fedcurv_terms)
    with pytest.raises(ValueError, match="fedcurv.fisher_x_theta.fc1.bias is missing"):
        b.set_own_fedcurv_terms({k: v for k, v in split_fedcurv(update)[1].items() if k != FISHER_X_THETA_PREFIX + "fc1.bias"})


def test_fedcurv_terms_aggregate_by_summation_in_float64():
    a = {FISHER_PREFIX + "w": np.array([1.0, 2.0**-30], np.float32), FISHER_X_THETA_PREFIX + "w": np.array([3.0, 0.0], np.float32)}
    b = {FISHER_PREFIX + "w": np.array([0.5, 1.0], np.float32), FISHER_X_THETA_PREFIX + "w": np.array([-1.0, 4.0], np.float32)}
    c = {FISHER_PREFIX + "w": np.array([0.25, -1.0], np.float32), FISHER_X_THETA_PREFIX + "w": np.array([0.0, 1.0], np.float32)}
    total = sum_fedcurv_terms([a, b, c])
    assert np.array_equal(total[FISHER_PREFIX + "w"], np.array([1.75, 2.0**-30], np.float32))  # float32 adds would lose 2^-30
    assert np.array_equal(total[FISHER_X_THETA_PREFIX + "w"], np.array([2.0, 5.0], np.float32))
    with pytest.raises(ValueError, match="member 1 carries"):
        sum_fedcurv_terms([a, {FISHER_PREFIX + "w": b[FISHER_PREFIX + "w"]}])


def test_split_fedcurv_separates_model_and_terms_and_rejects_malformed_terms():
    w = {"w": np.ones(2, np.float32)}
    full = add_fedcurv_zeros(w)
    model, terms = split_fedcurv(full)
    assert list(model) == ["w"] and sorted(terms) == [FISHER_PREFIX + "w", FISHER_X_THETA_PREFIX + "w"]
    assert {**model, **terms}.keys() == full.keys()
    with pytest.raises(ValueError, match="unknown FedCurv tensor"):
        split_fedcurv({**full, "fedcurv.hessian.w": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="not a tensor of the model"):
        split_fedcurv({**w, FISHER_PREFIX + "v": np.ones(2, np.float32), FISHER_X_THETA_PREFIX + "v": np.ones(2, np.float32)})
    with pytest.raises(ValueError, match="has shape"):
        split_fedcurv({**full, FISHER_PREFIX + "w": np.ones(3, np.float32)})


# ------------------------------------------------------------------ tasks


def test_registry_lists_the_built_in_workloads_and_unknown_names_say_which_exist():
    assert set(WORKLOADS) == {"digits-mlp", "digits-wide", "breast-cancer", "cifar10-cnn"}
    with pytest.raises(ValueError, match="digits-mlp, digits-wide, breast-cancer, cifar10-cnn"):
        get_workload("mnist")


def test_genesis_weights_depend_only_on_the_seed():
    a = DIGITS.genesis_weights(5)
    torch.manual_seed(999)
    b = DIGITS.genesis_weights(5)
    c = DIGITS.genesis_weights(6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["fc1.weight"], c["fc1.weight"])


def test_digits_split_is_80_20_stratified_with_pixels_in_unit_range(digits):
    X_train, y_train, X_test, y_test = digits
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert X_train.dtype == np.float32 and 0.0 <= X_train.min() and X_train.max() == 1.0
    share_train = np.bincount(y_train, minlength=10) / len(y_train)
    share_test = np.bincount(y_test, minlength=10) / len(y_test)
    assert np.abs(share_train - share_test).max() < 0.01
    again = DIGITS.load_data(None)
    assert np.array_equal(again[3], y_test)


def test_breast_cancer_is_standardized_with_training_statistics_only():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X_train, y_train, X_test, y_test = get_workload("breast-cancer").load_data(None)
    X, y = load_breast_cancer(return_X_y=True)
    raw_train, raw_test, _, raw_y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    assert np.array_equal(raw_y_test, y_test)
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    np.testing.assert_allclose(X_test, (raw_test - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(X_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(X_train.std(axis=0), 1.0, atol=1e-4)
    # Scaled with its own statistics, the test split would be centred exactly; it is not.
    assert np.abs(X_test.mean(axis=0)).max() > 0.05


def test_sklearn_tasks_refuse_a_data_path_they_would_ignore(tmp_path):
    with pytest.raises(WorkloadDataError, match="bundled with scikit-learn"):
        get_workload("breast-cancer").load_data(str(tmp_path))


def test_centralized_baseline_trains_the_pooled_data_to_a_useful_accuracy():
    assert centralized_baseline("breast-cancer", epochs=3, seed=0) > 0.9


# ------------------------------------------------------------------ CIFAR-10 binary files


def fake_cifar(directory, records_per_file=3, seed=0):
    """Random records in the official binary layout; returns the bytes written per file."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE):
        rec = rng.integers(0, 256, size=(records_per_file, CIFAR_RECORD), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, size=records_per_file)
        (directory / name).write_bytes(rec.tobytes())
        written[name] = rec
    return written


def test_cifar_binary_reader_decodes_labels_and_channel_major_pixels(tmp_path):
    written = fake_cifar(tmp_path / "cifar-10-batches-bin")
    # The directory itself and its parent both work.
    X_train, y_train, X_test, y_test = load_cifar10_data(str(tmp_path))
    assert X_train.shape == (15, 3, 32, 32) and X_train.dtype == np.uint8
    assert X_test.shape == (3, 3, 32, 32) and y_train.dtype == np.int64
    first = written["data_batch_1.bin"][0]
    assert y_train[0] == first[0]
    assert X_train[0, 0, 0, 0] == first[1] and X_train[0, 0, 0, 1] == first[2]  # red, row 0
    assert X_train[0, 0, 1, 0] == first[1 + 32]  # red, row 1
    assert X_train[0, 1, 0, 0] == first[1 + 1024]  # green plane
    assert X_train[0, 2, 31, 31] == first[-1]  # last blue pixel
    assert np.array_equal(y_train[12:], written["data_batch_5.bin"][:, 0])
    assert np.array_equal(y_test, written[CIFAR_TEST_FILE][:, 0])
    same = load_cifar10_data(str(tmp_path / "cifar-10-batches-bin"))
    assert all(np.array_equal(a, b) for a, b in zip(same, (X_train, y_train, X_test, y_test)))


def test_cifar_reader_accepts_the_binary_tarball(tmp_path):
    fake_cifar(tmp_path / "cifar-10-batches-bin")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    from_tar = load_cifar10_data(str(archive))
    from_dir = load_cifar10_data(str(tmp_path / "cifar-10-batches-bin"))
    assert all(np.array_equal(a, b) for a, b in zip(from_tar, from_dir))


def test_cifar_cnn_trains_on_the_decoded_bytes(tmp_path):
    fake_cifar(tmp_path, records_per_file=8)
    task = get_workload("cifar10-cnn")
    X_train, y_train, X_test, y_test = task.load_data(str(tmp_path))
    trainer = task.trainer((X_train, y_train), (X_test, y_test))
    genesis = task.genesis_weights(0)
    assert sorted(genesis) == sorted(
        f"{layer}.{kind}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3") for kind in ("weight", "bias")
    )
    assert genesis["fc1.weight"].shape == (120, 400)
    result = trainer.fit(genesis, task.default_config.replace(batch_size=16))
    assert not np.array_equal(result.weights["conv1.weight"], genesis["conv1.weight"])
    assert 0.0 <= trainer.evaluate(result.weights).accuracy <= 1.0


def test_truncated_cifar_file_is_a_clear_error_naming_the_file_and_record_size(tmp_path):
    fake_cifar(tmp_path)
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(WorkloadDataError, match=r"data_batch_3\.bin is 9214 bytes, not a positive multiple of the 3073-byte"):
        load_cifar10_data(str(tmp_path))


def test_cifar_file_with_an_out_of_range_label_is_refused(tmp_path):
    written = fake_cifar(tmp_path)
    rec = written[CIFAR_TEST_FILE].copy()
    rec[1, 0] = 42
    (tmp_path / CIFAR_TEST_FILE).write_bytes(rec.tobytes())
    with pytest.raises(WorkloadDataError, match="record 1 has label 42"):
        load_cifar10_data(str(tmp_path))


def test_cifar_python_pickle_version_is_refused(tmp_path):
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (py / name).write_bytes(b"\x80\x04not really a pickle")
    for where in (py, tmp_path):
        with pytest.raises(WorkloadDataError, match="pickle"):
            load_cifar10_data(str(where))


def test_missing_cifar_data_is_a_clear_error(tmp_path):
    with pytest.raises(WorkloadDataError, match="needs a data path"):
        load_cifar10_data(None)
    with pytest.raises(WorkloadDataError, match="does not exist"):
        load_cifar10_data(str(tmp_path / "nowhere"))
    fake_cifar(tmp_path)
    (tmp_path / "data_batch_4.bin").unlink()
    with pytest.raises(WorkloadDataError, match=r"lacks the CIFAR-10 binary file\(s\) \['data_batch_4.bin'\]"):
        load_cifar10_data(str(tmp_path))


def test_round_config_decays_the_learning_rate_and_varies_the_seed_per_round():
    base = TrainingConfig(lr=0.1, epochs=5, seed=0, lr_decay=0.9)
    r1, r3 = base.for_round(7, 1), base.for_round(7, 3)
    assert r1.lr == pytest.approx(0.1) and r3.lr == pytest.approx(0.1 * 0.81)
    assert r1.seed != r3.seed and base.for_round(8, 3).seed != r3.seed
    assert base.replace(lr_decay=1.0).for_round(7, 3).lr == 0.1  # no decay: constant
    assert (r3.epochs, base.lr) == (5, 0.1)  # the rest kept, the caller's config untouched
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="lr_decay must be"):
            TrainingConfig(lr_decay=bad)
