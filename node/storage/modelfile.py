"""The model format: safetensors bytes with a small metadata header, written deterministically
and read strictly.

Writing: the same tensors and metadata always give the same bytes (so the same sha256 and the
same CID). The `safetensors` library cannot promise that: its Rust serializer writes the
`__metadata__` map in HashMap order, which changes from process to process. So the file is
written here, following the safetensors layout exactly:

    8 bytes   little-endian u64 N, the header length
    N bytes   JSON header, keys sorted, no whitespace, padded with spaces to a multiple of 8
    ...       tensor data, little-endian, C order, contiguous, ordered by (itemsize desc, name)

and every file written parses with the official `safetensors` library (tests check this).

Reading: nothing is parsed before the sha256 of the exact bytes equals the value the chain
recorded. Then the header is parsed here, strictly, before any library sees the bytes, and the
tensors are checked against the task's `ModelSpec`. Every rejection raises `ModelRejected` with
a stable `reason_code`, in this fixed order, so that every leader and verifier excludes an
invalid update for the same reason:

    too_large      the file is larger than the spec allows (checked before hashing)
    hash_mismatch  sha256 of the bytes differs from the expected (on-chain) value
    truncated      the file ends before its header or its tensor data does
    bad_header     header length, JSON, dtype codes, shapes or offsets are malformed or lie
    bad_meta       the metadata map is missing, malformed or has unknown keys
    wrong_meta     the metadata disagrees with what the caller expects (task, round, parent...)
    wrong_names    tensor names differ from the spec
    wrong_shape    a tensor's shape differs from the spec (all shapes first, in name order)
    wrong_dtype    a tensor's dtype differs from the spec (then all dtypes, in name order)
    non_finite     a floating-point tensor holds NaN or +-Inf (in name order)

Nothing here unpickles, imports torch, or executes anything found in a file.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EXIT_INPUT, StorageError
from .ipfs import normalize_sha256

FORMAT = "fedledger/1"
SPEC_FORMAT = "fedledger-model-spec/1"

KINDS = ("genesis", "update", "global")
META_KEYS = ("format", "task", "round", "parent", "rule", "member", "kind", "num_samples")
REQUIRED_META = {
    "genesis": ("format", "task", "round", "kind"),
    "update": ("format", "task", "round", "kind", "parent", "member"),
    "global": ("format", "task", "round", "kind", "parent", "rule"),
}
MAX_META_VALUE = 256
MAX_NAME = 256
MAX_RANK = 16

# safetensors dtype codes this format accepts, with their numpy dtype (always little-endian).
# bfloat16 and the float8 types have no numpy dtype; bool is left out on purpose (bytes other
# than 0/1 would be undefined). Those codes still parse as a header but fail a spec check.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
}
# Every code the safetensors format defines, with its size in bits, so a header naming one of
# them is well-formed (and then rejected by the spec as a wrong dtype, not as garbage).
ALL_CODES_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64,
}
_NAME_TO_CODE = {dt.name: code for code, dt in DTYPES.items()}  # "float32" -> "F32"
_CODE_TO_NAME = {code: dt.name for code, dt in DTYPES.items()}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/\-\[\]]+$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UINT = re.compile(r"^(0|[1-9][0-9]{0,19})$")
FINITE_CHUNK = 1 << 22  # elements per finiteness check, to bound temporary memory


class ModelRejected(StorageError):
    """A model file is not acceptable. `reason_code` is one of the codes in this module's
    docstring; the message says what exactly is wrong. Bad input, not an unreachable service."""

    exit_code = EXIT_INPUT

    def __init__(self, reason_code: str, message: str):
        super().__init__(f"{reason_code}: {message}", reason_code)
        self.detail = message


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str  # numpy name: "float32", "int64", ...

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class ModelSpec:
    """What every model of a task must look like: tensor names, shapes and dtypes, and a size
    cap. Its canonical JSON goes to IPFS and its CID on chain with the task."""

    tensors: Mapping[str, TensorSpec]
    max_bytes: int

    def __post_init__(self) -> None:
        if not self.tensors:
            raise ValueError("a model spec needs at least one tensor")
        for name, t in self.tensors.items():
            _check_name(name)
            if t.dtype not in _NAME_TO_CODE:
                raise ValueError(f"tensor {name!r}: unsupported dtype {t.dtype!r}; use one of {sorted(_NAME_TO_CODE)}")
            if len(t.shape) > MAX_RANK or not all(type(d) is int and d >= 0 for d in t.shape):
                raise ValueError(f"tensor {name!r}: bad shape {t.shape!r}")
        if type(self.max_bytes) is not int or self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {self.max_bytes!r}")
        if self.max_bytes < 8 + self.data_bytes:
            raise ValueError(f"max_bytes {self.max_bytes} is smaller than the tensor data ({self.data_bytes} bytes)")

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def max_header_bytes(self) -> int:
        """Cap on the JSON header: room for the metadata plus a generous entry per tensor."""
        return 16384 + 640 * len(self.tensors)

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray], max_bytes: int | None = None) -> ModelSpec:
        """The spec that `tensors` (typically the genesis model) satisfy. The default size cap
        is the tensor data plus the largest header this spec admits."""
        specs = {name: TensorSpec(tuple(int(d) for d in a.shape), np.dtype(a.dtype).newbyteorder("=").name)
                 for name, a in tensors.items()}
        spec = cls(tensors=specs, max_bytes=max_bytes or 1 << 62)
        if max_bytes is None:
            spec = cls(tensors=specs, max_bytes=8 + spec.max_header_bytes + spec.data_bytes)
        return spec

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no whitespace): same spec, same bytes, same CID."""
        doc = {
            "format": SPEC_FORMAT,
            "max_bytes": self.max_bytes,
            "tensors": {n: {"dtype": t.dtype, "shape": list(t.shape)} for n, t in sorted(self.tensors.items())},
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelSpec:
        try:
            doc = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"model spec is not valid JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != SPEC_FORMAT:
            raise ValueError(f"model spec must be a JSON object with format {SPEC_FORMAT!r}")
        if set(doc) != {"format", "max_bytes", "tensors"} or not isinstance(doc["tensors"], dict):
            raise ValueError("model spec must have exactly the keys format, max_bytes, tensors")
        tensors = {}
        for name, t in doc["tensors"].items():
            if not isinstance(t, dict) or set(t) != {"dtype", "shape"} or not isinstance(t["shape"], list):
                raise ValueError(f"model spec entry {name!r} must be {{dtype, shape}}")
            tensors[name] = TensorSpec(tuple(t["shape"]), t["dtype"])
        return cls(tensors=tensors, max_bytes=doc["max_bytes"])


# --------------------------------------------------------------------------- writing


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not (0 < len(name) <= MAX_NAME) or not _NAME_RE.match(name) or name.startswith("__"):
        raise ValueError(
            f"bad tensor name {name!r}: use 1-{MAX_NAME} characters from [A-Za-z0-9_.:/-[]], not starting with '__'"
        )


def validate_meta(meta: Mapping[str, Any]) -> dict[str, str]:
    """Check a metadata map; return it with `format` filled in. Raises ValueError."""
    out = {str(k): v for k, v in meta.items()}
    out.setdefault("format", FORMAT)
    problems = _meta_problems(out)
    if problems:
        raise ValueError("bad model metadata: " + "; ".join(problems))
    return out


def _meta_problems(meta: Mapping[str, Any]) -> list[str]:
    problems = []
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: {list(META_KEYS)})")
    for k, v in meta.items():
        if not isinstance(v, str):
            problems.append(f"{k!r} must be a string, got {type(v).__name__}")
        elif len(v) > MAX_META_VALUE or not v.isascii() or not v.isprintable():
            problems.append(f"{k!r} must be printable ASCII of at most {MAX_META_VALUE} characters")
    if problems:
        return problems
    if meta.get("format") != FORMAT:
        problems.append(f"format must be {FORMAT!r}, got {meta.get('format')!r}")
    kind = meta.get("kind")
    if kind not in KINDS:
        return problems + [f"kind must be one of {list(KINDS)}, got {kind!r}"]
    missing = [k for k in REQUIRED_META[kind] if not meta.get(k)]
    if missing:
        problems.append(f"a {kind} model needs {missing}")
    if "round" in meta and not _UINT.match(meta["round"]):
        problems.append(f"round must be a decimal integer, got {meta['round']!r}")
    if "num_samples" in meta and not _UINT.match(meta["num_samples"]):
        problems.append(f"num_samples must be a decimal integer, got {meta['num_samples']!r}")
    if meta.get("parent") and not _HEX64.match(meta["parent"]):
        problems.append(f"parent must be the parent model's sha256 as 64 lowercase hex digits, got {meta['parent']!r}")
    return problems


def _prepare(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> tuple[bytes, list[np.ndarray]]:
    """The header bytes and the arrays in file order."""
    if not tensors:
        raise ValueError("a model needs at least one tensor")
    arrays: dict[str, tuple[str, np.ndarray]] = {}
    for name, a in tensors.items():
        _check_name(name)
        a = np.asarray(a)
        code = _NAME_TO_CODE.get(a.dtype.newbyteorder("=").name) if a.dtype.kind in "fiu" else None
        if code is None:
            raise ValueError(f"tensor {name!r}: unsupported dtype {a.dtype}; use one of {sorted(_NAME_TO_CODE)}")
        if a.ndim > MAX_RANK:
            raise ValueError(f"tensor {name!r}: rank {a.ndim} exceeds {MAX_RANK}")
        # astype keeps 0-d arrays 0-d (ascontiguousarray would make them 1-d)
        arrays[name] = (code, a.astype(DTYPES[code], order="C", copy=False))
    meta = validate_meta(meta)
    order = sorted(arrays, key=lambda n: (-arrays[n][1].itemsize, n))
    header: dict[str, Any] = {"__metadata__": dict(sorted(meta.items()))}
    offset = 0
    for name in order:
        code, a = arrays[name]
        header[name] = {"data_offsets": [offset, offset + a.nbytes], "dtype": code, "shape": list(a.shape)}
        offset += a.nbytes
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)  # tensor data starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text, [arrays[n][1] for n in order]


def write_model(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Serialize `tensors` and `meta` to model bytes; deterministic."""
    head, arrays = _prepare(tensors, meta)
    out = bytearray(len(head) + sum(a.nbytes for a in arrays))
    out[: len(head)] = head
    pos = len(head)
    for a in arrays:
        out[pos : pos + a.nbytes] = memoryview(a).cast("B")
        pos += a.nbytes
    return bytes(out)


def write_model_file(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    """Write the model to `path` (atomically, without building it in memory); return its sha256."""
    head, arrays = _prepare(tensors, meta)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    h = hashlib.sha256(head)
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            for a in arrays:
                view = memoryview(a).cast("B")
                h.update(view)
                f.write(view)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return h.hexdigest()


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- reading


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True)
class _Entry:
    name: str
    code: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _parse_header(buf: memoryview | bytes | mmap.mmap, size: int, max_header: int) -> tuple[dict[str, str], list[_Entry], int]:
    """Strictly parse the header of a safetensors buffer of `size` bytes.
    Returns (metadata, entries, data_start)."""
    if size < 8:
        raise ModelRejected("truncated", f"file has {size} bytes, fewer than the 8-byte header length")
    n = int.from_bytes(bytes(buf[:8]), "little")
    if n == 0 or n > max_header:
        raise ModelRejected("bad_header", f"header length {n} is outside 1..{max_header} bytes")
    if 8 + n > size:
        raise ModelRejected("truncated", f"header claims {n} bytes but the file ends after {size - 8}")
    raw = bytes(buf[8 : 8 + n])
    try:
        text = raw.decode("utf-8")
        if not text.startswith("{"):
            raise ValueError("header does not start with '{'")
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelRejected("bad_header", f"header is not a valid JSON object: {e}") from None
    if not isinstance(header, dict):
        raise ModelRejected("bad_header", "header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is None:
        raise ModelRejected("bad_meta", "no __metadata__ in the header")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelRejected("bad_meta", "__metadata__ must map strings to strings")
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelRejected("bad_header", f"entry {name!r} must have exactly dtype, shape, data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if name.startswith("__"):
            raise ModelRejected("bad_header", f"unexpected reserved entry {name!r}")
        if code not in ALL_CODES_BITS:
            raise ModelRejected("bad_header", f"entry {name!r}: unknown dtype code {code!r}")
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(type(d) is int and d >= 0 for d in shape)):
            raise ModelRejected("bad_header", f"entry {name!r}: shape must be a list of at most {MAX_RANK} non-negative ints")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
            raise ModelRejected("bad_header", f"entry {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
        expected = math.prod(shape) * ALL_CODES_BITS[code] // 8
        if offsets[1] - offsets[0] != expected:
            raise ModelRejected(
                "bad_header",
                f"entry {name!r}: data_offsets span {offsets[1] - offsets[0]} bytes but {code} {shape} needs {expected}",
            )
        entries.append(_Entry(name, code, tuple(shape), offsets[0], offsets[1]))
    data_start = 8 + n
    available = size - data_start
    pos = 0
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin != pos:
            what = "overlaps the previous tensor" if e.begin < pos else f"leaves a gap at byte {pos}"
            raise ModelRejected("bad_header", f"entry {e.name!r} starts at {e.begin} and {what}")
        pos = e.end
    if pos > available:
        raise ModelRejected("truncated", f"tensor data needs {pos} bytes but the file holds {available}")
    if pos < available:
        raise ModelRejected("bad_header", f"{available - pos} bytes after the last tensor")
    return meta, entries, data_start


def _check_against_spec(meta: dict[str, str], entries: list[_Entry], spec: ModelSpec,
                        expected_meta: Mapping[str, str] | None) -> None:
    problems = _meta_problems(meta)
    if problems:
        raise ModelRejected("bad_meta", "; ".join(problems))
    for k, v in sorted((expected_meta or {}).items()):
        if meta.get(k) != v:
            raise ModelRejected("wrong_meta", f"metadata {k!r} is {meta.get(k)!r}, expected {v!r}")
    names = {e.name for e in entries}
    if names != set(spec.tensors):
        missing = sorted(set(spec.tensors) - names)
        extra = sorted(names - set(spec.tensors))
        raise ModelRejected("wrong_names", f"missing tensors {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                                           f"unexpected tensors {extra[:5]}{'...' if len(extra) > 5 else ''}")
    by_name = sorted(entries, key=lambda e: e.name)
    for e in by_name:
        want = spec.tensors[e.name]
        if e.shape != want.shape:
            raise ModelRejected("wrong_shape", f"tensor {e.name!r} has shape {list(e.shape)}, the spec says {list(want.shape)}")
    for e in by_name:
        want = spec.tensors[e.name]
        if _CODE_TO_NAME.get(e.code) != want.dtype:
            raise ModelRejected("wrong_dtype", f"tensor {e.name!r} has dtype {e.code}, the spec says {want.dtype}")


def _view(buf: Any, e: _Entry, data_start: int) -> np.ndarray:
    dt = DTYPES[e.code]
    count = (e.end - e.begin) // dt.itemsize
    return np.frombuffer(buf, dtype=dt, count=count, offset=data_start + e.begin).reshape(e.shape)


def _non_finite_count(buf: Any, e: _Entry, data_start: int) -> int:
    flat = _view(buf, e, data_start).reshape(-1)
    for i in range(0, flat.size, FINITE_CHUNK):
        if not np.isfinite(flat[i : i + FINITE_CHUNK]).all():
            return sum(int(np.count_nonzero(~np.isfinite(flat[j : j + FINITE_CHUNK])))
                       for j in range(0, flat.size, FINITE_CHUNK))
    return 0


def _check_finite(buf: Any, entries: list[_Entry], data_start: int) -> None:
    # The views live only inside _non_finite_count, so no exception traceback pins the buffer
    # (an mmap with live views cannot be closed).
    for e in sorted(entries, key=lambda e: e.name):
        if DTYPES[e.code].kind == "f":
            bad = _non_finite_count(buf, e, data_start)
            if bad:
                raise ModelRejected("non_finite", f"tensor {e.name!r} holds {bad} NaN/Inf values")


def _validate(buf: Any, size: int, expected_sha256: str | bytes, spec: ModelSpec,
              expected_meta: Mapping[str, str] | None) -> tuple[dict[str, str], list[_Entry], int]:
    if size > spec.max_bytes:
        raise ModelRejected("too_large", f"file has {size} bytes, the task allows at most {spec.max_bytes}")
    expected = normalize_sha256(expected_sha256)
    actual = hashlib.sha256(buf).hexdigest()
    if actual != expected:
        raise ModelRejected("hash_mismatch", f"sha256 is {actual}, expected {expected} (recorded on chain)")
    meta, entries, data_start = _parse_header(buf, size, spec.max_header_bytes)
    _check_against_spec(meta, entries, spec, expected_meta)
    _check_finite(buf, entries, data_start)
    return meta, entries, data_start


def read_model(
    data_or_path: bytes | bytearray | str | os.PathLike[str],
    expected_sha256: str | bytes,
    spec: ModelSpec,
    expected_meta: Mapping[str, str] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Verify and load a model. Returns (tensors, metadata); arrays are read-only views over
    one buffer (`.copy()` one to modify it). Raises `ModelRejected`."""
    if isinstance(data_or_path, (bytes, bytearray, memoryview)):
        buf: Any = bytes(data_or_path) if isinstance(data_or_path, memoryview) else data_or_path
        size = len(buf)
        if size > spec.max_bytes:  # before touching the bytes
            raise ModelRejected("too_large", f"file has {size} bytes, the task allows at most {spec.max_bytes}")
    else:
        with open(data_or_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > spec.max_bytes:  # before reading a byte
                raise ModelRejected("too_large", f"file has {size} bytes, the task allows at most {spec.max_bytes}")
            buf = bytearray(size)
            got = f.readinto(buf)
            if got != size:
                raise ModelRejected("truncated", f"file shrank while reading ({got} of {size} bytes)")
    meta, entries, data_start = _validate(buf, size, expected_sha256, spec, expected_meta)
    tensors = {}
    for e in sorted(entries, key=lambda e: e.name):
        a = _view(buf, e, data_start)
        a.flags.writeable = False
        tensors[e.name] = a
    return tensors, dict(meta)


class ModelReader:
    """A verified model file opened for layer-by-layer reading (memory-mapped): `keys()`,
    `get_tensor(name)` (a fresh array), `metadata`. Use as a context manager."""

    def __init__(self, path: str | os.PathLike[str], expected_sha256: str | bytes, spec: ModelSpec,
                 expected_meta: Mapping[str, str] | None = None):
        self.path = Path(path)
        self._file = open(self.path, "rb")
        try:
            size = os.fstat(self._file.fileno()).st_size
            if size > spec.max_bytes:
                raise ModelRejected("too_large", f"file has {size} bytes, the task allows at most {spec.max_bytes}")
            if size == 0:  # mmap cannot map an empty file; same verdict, same order
                _validate(b"", 0, expected_sha256, spec, expected_meta)
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                meta, entries, self._data_start = _validate(self._map, size, expected_sha256, spec, expected_meta)
            except BaseException:
                self._map.close()
                raise
        except BaseException:
            self._file.close()
            raise
        self.metadata: dict[str, str] = dict(meta)
        self._entries = {e.name: e for e in entries}

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get_tensor(self, name: str) -> np.ndarray:
        return _view(self._map, self._entries[name], self._data_start).copy()

    def close(self) -> None:
        if not self._map.closed:
            try:
                self._map.close()
            except BufferError:  # a caller still holds a view; the mapping goes with it
                pass
        self._file.close()

    def __enter__(self) -> ModelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_model(path: str | os.PathLike[str], expected_sha256: str | bytes, spec: ModelSpec,
               expected_meta: Mapping[str, str] | None = None) -> ModelReader:
    """Verify a model file and open it for layer-by-layer reading. Raises `ModelRejected`."""
    return ModelReader(path, expected_sha256, spec, expected_meta)
