"""The model format: deterministic writing, strict reading, and every hostile input rejected
with its reason code (by all three readers: bytes, file, memory-mapped layer-by-layer)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

from fedledger.node.storage.modelfile import (
    FORMAT,
    ModelRejected,
    ModelSpec,
    TensorSpec,
    open_model,
    read_model,
    write_model,
    write_model_file,
)

PARENT = "ab" * 32
META = {"task": "digits-mlp", "round": "3", "kind": "update", "parent": PARENT,
        "member": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "num_samples": "180"}


def make_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "fc1.weight": rng.standard_normal((16, 64)).astype(np.float32),
        "fc1.bias": rng.standard_normal(16).astype(np.float32),
        "fc2.weight": rng.standard_normal((10, 16)).astype(np.float32),
        "fc2.bias": np.zeros(10, np.float32),
        "bn.num_batches_tracked": np.array(7, np.int64),
    }


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    return make_tensors()


@pytest.fixture
def spec(tensors) -> ModelSpec:
    return ModelSpec.from_tensors(tensors)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_safetensors(header: dict, data: bytes, header_len: int | None = None) -> bytes:
    """Hand-made safetensors bytes, for headers our writer would never produce."""
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    n = len(text) if header_len is None else header_len
    return n.to_bytes(8, "little") + text + data


def good_header(tensors: dict[str, np.ndarray]) -> tuple[dict, bytes]:
    header: dict = {"__metadata__": {**META, "format": FORMAT}}
    blob = b""
    for name, a in sorted(tensors.items()):
        code = {"float32": "F32", "int64": "I64", "float64": "F64", "float16": "F16"}[a.dtype.name]
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [len(blob), len(blob) + a.nbytes]}
        blob += a.tobytes()
    return header, blob


@pytest.fixture(params=["bytes", "file", "lazy"])
def read(request, tmp_path):
    """Read model bytes the way a peer would: from memory, from a file, or memory-mapped."""

    def _read(data: bytes, expected_sha256: str, spec: ModelSpec, expected_meta=None):
        if request.param == "bytes":
            return read_model(data, expected_sha256, spec, expected_meta)
        path = tmp_path / "model.safetensors"
        path.write_bytes(data)
        if request.param == "file":
            return read_model(path, expected_sha256, spec, expected_meta)
        with open_model(path, expected_sha256, spec, expected_meta) as reader:
            return {k: reader.get_tensor(k) for k in reader.keys()}, reader.metadata

    return _read


def assert_rejected(read, data: bytes, spec: ModelSpec, reason: str, expected_sha256: str | None = None, **kw):
    with pytest.raises(ModelRejected) as info:
        read(data, expected_sha256 or sha(data), spec, **kw)
    assert info.value.reason_code == reason, str(info.value)
    assert str(info.value).startswith(reason)
    return info.value


# --------------------------------------------------------------------------- writing


def test_same_tensors_give_same_bytes_whatever_the_dict_order(tensors):
    reordered = dict(reversed(list(tensors.items())))
    meta_reordered = dict(reversed(list(META.items())))
    assert write_model(tensors, META) == write_model(reordered, meta_reordered)


def test_same_tensors_give_same_sha256_in_fresh_processes(tensors):
    code = (
        "import hashlib, sys; sys.path.insert(0, %r); from tests.test_modelfile import make_tensors, META;"
        "from fedledger.node.storage.modelfile import write_model;"
        "print(hashlib.sha256(write_model(make_tensors(), META)).hexdigest())"
    ) % str(Path(__file__).resolve().parent.parent)
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert digests == {sha(write_model(tensors, META))}


def test_written_model_parses_with_official_safetensors(tensors, tmp_path):
    data = write_model(tensors, META)
    loaded = safetensors.numpy.load(data)
    assert set(loaded) == set(tensors)
    for name, a in tensors.items():
        assert loaded[name].dtype == a.dtype and loaded[name].shape == a.shape
        np.testing.assert_array_equal(loaded[name], a)
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {**META, "format": FORMAT}


def test_write_model_file_writes_the_same_bytes_and_returns_their_sha256(tensors, tmp_path):
    path = tmp_path / "m.safetensors"
    digest = write_model_file(path, tensors, META)
    assert path.read_bytes() == write_model(tensors, META)
    assert digest == sha(path.read_bytes())
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_tensor_data_is_aligned_for_zero_copy_reads(tensors):
    data = write_model(tensors, META)
    n = int.from_bytes(data[:8], "little")
    assert (8 + n) % 8 == 0
    header = json.loads(data[8 : 8 + n])
    for name, info in header.items():
        if name != "__metadata__":
            assert info["data_offsets"][0] % tensors[name].itemsize == 0


def test_scalar_and_non_contiguous_and_big_endian_tensors_round_trip(tmp_path):
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    tensors = {"scalar": np.array(2.5, np.float32), "transposed": base.T, "be": base.astype(">f8")}
    data = write_model(tensors, {"task": "t", "round": "0", "kind": "genesis"})
    out, _ = read_model(data, sha(data), ModelSpec.from_tensors(tensors))
    assert out["scalar"].shape == ()
    np.testing.assert_array_equal(out["transposed"], base.T)
    np.testing.assert_array_equal(out["be"], base)
    assert out["be"].dtype == np.dtype("<f8")


@pytest.mark.parametrize("dtype", [np.bool_, np.complex64, object, "U3"])
def test_write_model_refuses_unsupported_dtypes(dtype):
    with pytest.raises(ValueError, match="unsupported dtype"):
        write_model({"x": np.zeros(3, dtype=dtype)}, {"task": "t", "round": "0", "kind": "genesis"})


@pytest.mark.parametrize(
    "meta, problem",
    [
        ({"task": "t", "round": "0", "kind": "genesis", "extra": "x"}, "unknown keys"),
        ({"task": "t", "round": "0", "kind": "update", "member": "m"}, "needs ['parent']"),
        ({"task": "t", "round": "1", "kind": "global", "parent": "XYZ", "rule": "fedavg"}, "parent must be"),
        ({"task": "t", "round": "01", "kind": "genesis"}, "round must be"),
        ({"task": "t", "round": 0, "kind": "genesis"}, "must be a string"),
        ({"task": "t", "round": "0", "kind": "checkpoint"}, "kind must be"),
    ],
)
def test_write_model_refuses_bad_metadata(tensors, meta, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        write_model(tensors, meta)


def test_write_model_refuses_reserved_tensor_names():
    with pytest.raises(ValueError, match="bad tensor name"):
        write_model({"__metadata__": np.zeros(1, np.float32)}, {"task": "t", "round": "0", "kind": "genesis"})


# --------------------------------------------------------------------------- spec


def test_spec_json_is_canonical_and_round_trips(spec):
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert b" " not in spec.to_json()
    shuffled = json.dumps(json.loads(spec.to_json()), indent=2)  # same content, other bytes
    assert ModelSpec.from_json(shuffled).to_json() == spec.to_json()


@pytest.mark.parametrize(
    "doc",
    [
        '{"format":"fedledger-model-spec/1","max_bytes":100,"tensors":{"w":{"dtype":"float32","shape":[2]}},"x":1}',
        '{"format":"fedledger-model-spec/1","max_bytes":100,"tensors":{"w":{"dtype":"pickle","shape":[2]}}}',
        '{"format":"fedledger-model-spec/1","max_bytes":100,"tensors":{"w":{"dtype":"float32","shape":[-2]}}}',
        '{"format":"fedledger-model-spec/1","max_bytes":4,"tensors":{"w":{"dtype":"float32","shape":[2]}}}',
        '{"format":"other","max_bytes":100,"tensors":{"w":{"dtype":"float32","shape":[2]}}}',
        '{"format":"fedledger-model-spec/1","max_bytes":100,"tensors":{"w":{"dtype":"float32","shape":[2]},'
        '"w":{"dtype":"float32","shape":[3]}}}',
        "not json",
    ],
    ids=["unknown-key", "bad-dtype", "negative-dim", "max-below-data", "wrong-format", "duplicate-key", "not-json"],
)
def test_spec_from_json_refuses_malformed_specs(doc):
    with pytest.raises(ValueError):
        ModelSpec.from_json(doc)


# --------------------------------------------------------------------------- reading good files


def test_round_trip_returns_the_same_tensors_and_metadata(read, tensors, spec):
    data = write_model(tensors, META)
    out, meta = read(data, sha(data), spec)
    assert meta == {**META, "format": FORMAT}
    assert set(out) == set(tensors)
    for name, a in tensors.items():
        assert out[name].dtype == a.dtype and out[name].shape == a.shape
        np.testing.assert_array_equal(out[name], a)


def test_expected_sha256_may_be_given_as_0x_hex_or_raw_bytes(tensors, spec):
    data = write_model(tensors, META)
    for good in ("0x" + sha(data).upper(), hashlib.sha256(data).digest()):
        out, meta = read_model(data, good, spec)
        assert meta == {**META, "format": FORMAT}
        np.testing.assert_array_equal(out["fc1.weight"], tensors["fc1.weight"])
    # ... and the check is made in every spelling: one flipped digit is refused in each.
    wrong = hashlib.sha256(data + b"x").digest()
    for bad in ("0x" + wrong.hex().upper(), wrong):
        assert_rejected(read_model, data, spec, "hash_mismatch", expected_sha256=bad)


def test_files_written_by_official_safetensors_are_accepted(read, tensors, spec):
    data = safetensors.numpy.save(tensors, metadata={**META, "format": FORMAT})
    out, _ = read(data, sha(data), spec)
    np.testing.assert_array_equal(out["fc1.weight"], tensors["fc1.weight"])


def test_read_model_returns_read_only_arrays(tensors, spec):
    data = bytearray(write_model(tensors, META))
    out, _ = read_model(data, sha(bytes(data)), spec)
    with pytest.raises(ValueError):
        out["fc1.bias"][0] = 1.0


def test_model_reader_reads_layer_by_layer(tensors, spec, tmp_path):
    path = tmp_path / "m.safetensors"
    digest = write_model_file(path, tensors, META)
    with open_model(path, digest, spec, expected_meta={"round": "3"}) as reader:
        assert reader.keys() == sorted(tensors)
        assert reader.metadata["member"] == META["member"]
        layer = reader.get_tensor("fc2.weight")
        np.testing.assert_array_equal(layer, tensors["fc2.weight"])
    layer[0, 0] = 42.0  # a fresh array, usable after close


# --------------------------------------------------------------------------- hostile inputs


def test_random_bytes_are_rejected_as_bad_header(read, spec):
    data = np.random.default_rng(1).bytes(4096)
    assert_rejected(read, data, spec, "bad_header")


def test_bytes_not_matching_the_chain_sha256_are_rejected_before_parsing(read, tensors, spec):
    data = write_model(tensors, META)
    assert_rejected(read, data, spec, "hash_mismatch", expected_sha256=sha(data + b"x"))
    garbage = b"\xff" * 100  # would be bad_header, but the hash is checked first
    assert_rejected(read, garbage, spec, "hash_mismatch", expected_sha256=sha(data))


def test_file_truncated_in_tensor_data_is_rejected_as_truncated(read, tensors, spec):
    data = write_model(tensors, META)
    assert_rejected(read, data[: len(data) - 100], spec, "truncated")


def test_file_truncated_inside_header_is_rejected_as_truncated(read, tensors, spec):
    data = write_model(tensors, META)
    assert_rejected(read, data[:50], spec, "truncated")
    assert_rejected(read, data[:5], spec, "truncated")
    assert_rejected(read, b"", spec, "truncated")


def test_header_length_beyond_end_of_file_is_rejected_as_truncated(read, tensors, spec):
    header, blob = good_header(tensors)
    data = raw_safetensors(header, blob)
    n = int.from_bytes(data[:8], "little")
    lying = (n + len(blob) + 64).to_bytes(8, "little") + data[8:]
    assert_rejected(read, lying, spec, "truncated")


def test_huge_header_length_is_rejected_as_bad_header(read, tensors, spec):
    data = write_model(tensors, META)
    assert_rejected(read, (2**63).to_bytes(8, "little") + data[8:], spec, "bad_header")


def test_header_that_lies_about_a_tensor_size_is_rejected_as_bad_header(read, tensors, spec):
    header, blob = good_header(tensors)
    header["fc1.bias"]["shape"] = [8]  # 32 bytes of shape, 64 bytes of offsets
    e = assert_rejected(read, raw_safetensors(header, blob), spec, "bad_header")
    assert "fc1.bias" in str(e)


def test_overlapping_tensor_offsets_are_rejected_as_bad_header(read, spec):
    a = np.ones(4, np.float32)
    header = {"__metadata__": {**META, "format": FORMAT},
              "x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "y": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    assert_rejected(read, raw_safetensors(header, a.tobytes() * 2), spec, "bad_header")


def test_gap_between_tensors_is_rejected_as_bad_header(read, spec):
    header = {"__metadata__": {**META, "format": FORMAT},
              "x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "y": {"dtype": "F32", "shape": [4], "data_offsets": [24, 40]}}
    assert_rejected(read, raw_safetensors(header, bytes(40)), spec, "bad_header")


def test_trailing_bytes_after_the_last_tensor_are_rejected_as_bad_header(read, tensors, spec):
    header, blob = good_header(tensors)
    assert_rejected(read, raw_safetensors(header, blob + b"EXTRA"), spec, "bad_header")


def test_duplicate_keys_in_header_are_rejected_as_bad_header(read, tensors, spec):
    header, blob = good_header(tensors)
    text = json.dumps(header)
    entry = '"fc2.bias": ' + json.dumps(header["fc2.bias"])
    text = text.replace(entry, entry + ", " + entry)
    assert text.count('"fc2.bias"') == 2
    raw = text.encode() + b" " * (-len(text) % 8)
    data = len(raw).to_bytes(8, "little") + raw + blob
    assert_rejected(read, data, spec, "bad_header")


@pytest.mark.parametrize("text", [b"[1, 2, 3]  ", b"{not json}", b'{"a": NaN}', b"\xff\xfe{}    "])
def test_header_that_is_not_a_json_object_is_rejected_as_bad_header(read, spec, text):
    text += b" " * (-len(text) % 8)
    assert_rejected(read, len(text).to_bytes(8, "little") + text, spec, "bad_header")


def test_unknown_dtype_code_is_rejected_as_bad_header(read, tensors, spec):
    header, blob = good_header(tensors)
    header["fc1.bias"]["dtype"] = "PICKLE"
    assert_rejected(read, raw_safetensors(header, blob), spec, "bad_header")


def test_missing_metadata_is_rejected_as_bad_meta(read, tensors, spec):
    header, blob = good_header(tensors)
    del header["__metadata__"]
    assert_rejected(read, raw_safetensors(header, blob), spec, "bad_meta")


def test_unknown_metadata_key_is_rejected_as_bad_meta(read, tensors, spec):
    header, blob = good_header(tensors)
    header["__metadata__"]["torch_version"] = "2.13"
    assert_rejected(read, raw_safetensors(header, blob), spec, "bad_meta")


def test_metadata_for_another_round_is_rejected_as_wrong_meta(read, tensors, spec):
    data = write_model(tensors, META)
    e = assert_rejected(read, data, spec, "wrong_meta", expected_meta={"task": "digits-mlp", "round": "4"})
    assert "'round'" in str(e)


def test_missing_tensor_is_rejected_as_wrong_names(read, tensors, spec):
    del tensors["fc2.bias"]
    e = assert_rejected(read, write_model(tensors, META), spec, "wrong_names")
    assert "fc2.bias" in str(e)


def test_extra_tensor_is_rejected_as_wrong_names(read, tensors, spec):
    tensors["backdoor.weight"] = np.zeros(3, np.float32)
    assert_rejected(read, write_model(tensors, META), spec, "wrong_names")


def test_renamed_tensor_is_rejected_as_wrong_names(read, tensors, spec):
    tensors["fc3.weight"] = tensors.pop("fc2.weight")
    assert_rejected(read, write_model(tensors, META), spec, "wrong_names")


def test_wrong_shape_is_rejected_as_wrong_shape(read, tensors, spec):
    tensors["fc1.weight"] = tensors["fc1.weight"].reshape(64, 16)  # same size, other shape
    e = assert_rejected(read, write_model(tensors, META), spec, "wrong_shape")
    assert "fc1.weight" in str(e)


def test_wrong_dtype_is_rejected_as_wrong_dtype(read, tensors, spec):
    tensors["fc1.bias"] = tensors["fc1.bias"].astype(np.float64)
    e = assert_rejected(read, write_model(tensors, META), spec, "wrong_dtype")
    assert "F64" in str(e)


def test_dtype_numpy_cannot_represent_is_rejected_as_wrong_dtype(read, tensors, spec):
    tensors["fc1.bias"] = tensors["fc1.bias"].astype(np.float16)  # 2-byte values, like bfloat16
    header, blob = good_header(tensors)
    header["fc1.bias"]["dtype"] = "BF16"
    assert_rejected(read, raw_safetensors(header, blob), spec, "wrong_dtype")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_as_non_finite(read, tensors, spec, bad):
    tensors["fc2.weight"][3, 7] = bad
    e = assert_rejected(read, write_model(tensors, META), spec, "non_finite")
    assert "fc2.weight" in str(e) and "1 NaN/Inf" in str(e)


def test_oversized_file_is_rejected_before_hashing(read, tensors, spec):
    small = ModelSpec(tensors=spec.tensors, max_bytes=spec.data_bytes + 64)
    data = write_model(tensors, META)
    assert len(data) > small.max_bytes
    # too_large wins even over a wrong hash: the size is checked before reading the bytes
    assert_rejected(read, data, small, "too_large", expected_sha256="00" * 32)


class _Payload:
    """Unpickling this creates a directory: proof that code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickle_payload_is_rejected_without_running_it(read, spec, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    assert_rejected(read, payload, spec, "bad_header")
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: had anything unpickled it, the marker would exist
    assert marker.exists()


def test_torch_style_zip_archive_is_rejected_as_bad_header(read, spec, tmp_path):
    archive = tmp_path / "model.pt"
    with zipfile.ZipFile(archive, "w") as z:  # the layout torch.save writes: a zip of pickles
        z.writestr("archive/data.pkl", pickle.dumps({"fc1.weight": [1.0]}))
    assert_rejected(read, archive.read_bytes(), spec, "bad_header")


def test_rejections_follow_the_documented_order(tensors, spec):
    """Several defects at once: the first in the fixed order decides, for every reader alike."""
    tensors["fc1.bias"] = tensors["fc1.bias"].astype(np.float64)  # wrong_dtype
    tensors["fc1.weight"] = tensors["fc1.weight"].reshape(64, 16)  # wrong_shape
    tensors["fc2.weight"][0, 0] = np.nan  # non_finite
    data = write_model(tensors, META)
    with pytest.raises(ModelRejected) as info:
        read_model(data, sha(data), spec)
    assert info.value.reason_code == "wrong_shape"


def test_spec_rejects_non_spec_dtype_in_tensor_spec():
    with pytest.raises(ValueError):
        ModelSpec(tensors={"w": TensorSpec((2,), "bool")}, max_bytes=100)
