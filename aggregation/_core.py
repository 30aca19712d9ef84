"""Shared plumbing for the rules: update sources, canonical order, weights, fixed-order reductions.

Nothing here knows about files, chains or networks. An *update source* is either a mapping of
tensor name to array, or any object with ``keys()`` and ``get_tensor(name)`` (what
``safetensors.safe_open(path, framework="numpy")`` returns); tensors are read one layer at a
time so the caller decides what lives in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, Union

import numpy as np

Model = dict[str, np.ndarray]

#: Length of the lane vector that every fixed-order sum of squares accumulates into. Element
#: ``p`` of a flattened tensor goes to lane ``p % LANES``; each lane sums its elements in order
#: (layer by layer, names sorted), and the lanes are combined with ``math.fsum`` (exactly
#: rounded). Changing it changes the last bits of geometric-median and Krum distances.
LANES = 256

#: Elements per chunk of a layer processed while it stays in cache. A multiple of LANES; results
#: do not depend on it (every chunked operation is elementwise or lane-aligned).
CHUNK = 65536

#: Budget in bytes for an (n, chunk) block of every update (the coordinate sorts, Krum distances,
#: geometric median), so the block stays in cache and the working set stays small for any n.
BLOCK_BYTES = 2**21

_MAX_EXACT_INT = 2**53


class TensorSource(Protocol):
    """What a lazily read update looks like (e.g. an open safetensors handle)."""

    def keys(self) -> Any: ...

    def get_tensor(self, name: str) -> np.ndarray: ...


UpdateSource = Union[Mapping[str, Any], TensorSource]


class AggregationError(ValueError):
    """An aggregation cannot run on these inputs; the message says which precondition broke."""


def hash_bytes(h: bytes | bytearray | str, index: int) -> bytes:
    """The 32 raw bytes of an update's sha256, given as bytes or hex (with or without 0x)."""
    if isinstance(h, (bytes, bytearray)):
        raw = bytes(h)
    elif isinstance(h, str):
        text = h[2:] if h[:2].lower() == "0x" else h
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise AggregationError(f"hash of update {index} is not hex: {h!r}") from None
    else:
        raise AggregationError(
            f"hash of update {index} must be 32 bytes or 64 hex characters; got {type(h).__name__}"
        )
    if len(raw) != 32:
        raise AggregationError(
            f"hash of update {index} must be a sha256 (32 bytes); got {len(raw)} bytes"
        )
    return raw


def canonical_order(hashes: Sequence[bytes | str] | None, n: int) -> list[int]:
    """Indices that sort the updates by hash (ascending bytes); the given order when no hashes."""
    if hashes is None:
        return list(range(n))
    hashes = list(hashes)
    if len(hashes) != n:
        raise AggregationError(f"got {n} updates but {len(hashes)} hashes; give one hash per update")
    raw = [hash_bytes(h, i) for i, h in enumerate(hashes)]
    order = sorted(range(n), key=raw.__getitem__)
    for a, b in zip(order, order[1:]):
        if raw[a] == raw[b]:
            raise AggregationError(
                f"updates {a} and {b} have the same hash {raw[a].hex()}: the same update was given twice"
            )
    return order


def check_weight(w: Any, index: int, rule: str) -> float:
    """One sample count as an exact float64: a finite number >= 0 (integers up to 2**53)."""
    if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, float, np.integer, np.floating)):
        raise AggregationError(f"{rule}: weight {index} must be a number of samples; got {w!r}")
    if isinstance(w, (int, np.integer)) and abs(int(w)) > _MAX_EXACT_INT:
        raise AggregationError(f"{rule}: weight {index} = {w} exceeds 2**53 and cannot be exact in float64")
    x = float(w)
    if not math.isfinite(x) or x < 0:
        raise AggregationError(f"{rule}: weight {index} must be finite and >= 0; got {w!r}")
    return x


def check_weights(weights: Sequence[Any] | None, n: int, rule: str) -> list[float]:
    """Sample counts as exact float64 values: finite, >= 0, not all zero, one per update."""
    if weights is None:
        return [1.0] * n
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise AggregationError(f"{rule}: weights must be a sequence of sample counts, one per update")
    weights = list(weights)
    if len(weights) != n:
        raise AggregationError(f"{rule}: got {n} updates but {len(weights)} weights; give one per update")
    out = [check_weight(w, i, rule) for i, w in enumerate(weights)]
    if not any(out):
        raise AggregationError(f"{rule}: all weights are zero; at least one update must carry samples")
    return out


def _names(source: Any, index: int) -> list[str]:
    try:
        names = list(source.keys())
    except AttributeError:
        raise AggregationError(
            f"update {index} is a {type(source).__name__}: give a dict of arrays or an object "
            "with keys() and get_tensor(name) (e.g. safetensors.safe_open(path, 'numpy'))"
        ) from None
    if not names:
        raise AggregationError(f"update {index} has no tensors")
    return names


class Inputs:
    """The updates of one aggregation in canonical order, read one layer at a time."""

    def __init__(
        self,
        updates: Sequence[UpdateSource],
        rule: str,
        *,
        weights: Sequence[Any] | None = None,
        hashes: Sequence[bytes | str] | None = None,
    ) -> None:
        updates = list(updates)
        n = len(updates)
        if n == 0:
            raise AggregationError(f"{rule} needs at least one update; got none")
        self.rule = rule
        self.order = canonical_order(hashes, n)
        w = check_weights(weights, n, rule)
        self.sources = [updates[i] for i in self.order]
        self.weights = [w[i] for i in self.order]
        self.n = n
        first = _names(self.sources[0], self.order[0])
        wanted = set(first)
        for pos, src in enumerate(self.sources[1:], start=1):
            got = set(_names(src, self.order[pos]))
            if got != wanted:
                missing = sorted(wanted - got)[:3]
                extra = sorted(got - wanted)[:3]
                raise AggregationError(
                    f"{rule}: update {self.order[pos]} has different tensor names than update "
                    f"{self.order[0]} (missing {missing}, extra {extra}); all updates must share one schema"
                )
        self.names = sorted(first)
        self._meta: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def largest_layer(self) -> int | None:
        """Elements in the largest tensor, when the first source tells it without reading data."""
        src = self.sources[0]
        try:
            if hasattr(src, "get_tensor"):
                if not hasattr(src, "get_slice"):
                    return None
                return max(math.prod(src.get_slice(name).get_shape()) for name in self.names)
            return max(int(np.size(src[name])) for name in self.names)
        except Exception:  # a source that cannot tell: size buffers for the worst case
            return None

    def chunk_for(self, limit: int) -> int:
        """A chunk length no larger than limit nor than the largest layer (in whole lanes)."""
        largest = self.largest_layer()
        return limit if largest is None else max(LANES, min(limit, padded(largest)))

    def subset(self, positions: Sequence[int]) -> "Inputs":
        """The same inputs restricted to some canonical positions (kept in canonical order)."""
        sub = object.__new__(Inputs)
        sub.rule = self.rule
        positions = sorted(positions)
        sub.order = [self.order[p] for p in positions]
        sub.sources = [self.sources[p] for p in positions]
        sub.weights = [self.weights[p] for p in positions]
        sub.n = len(positions)
        sub.names = self.names
        sub._meta = self._meta
        return sub

    def _read(self, pos: int, name: str) -> np.ndarray:
        src = self.sources[pos]
        t = src.get_tensor(name) if hasattr(src, "get_tensor") else src[name]
        return np.asarray(t)

    def layer(self, name: str) -> tuple[tuple[int, ...], np.dtype, list[np.ndarray]]:
        """Shape, dtype and the flattened tensor of every update for one layer, validated."""
        flats = []
        shape: tuple[int, ...] | None = None
        dtype: np.dtype | None = None
        for pos in range(self.n):
            t = self._read(pos, name)
            if shape is None:
                shape, dtype = t.shape, t.dtype
                if not np.issubdtype(dtype, np.floating):
                    raise AggregationError(
                        f"{self.rule}: tensor {name!r} has dtype {dtype}; aggregation needs floating "
                        "tensors (float16/32/64): leave integer buffers out of the model"
                    )
                known = self._meta.get(name)
                if known is not None and known != (shape, dtype):
                    raise AggregationError(f"{self.rule}: tensor {name!r} changed between reads")
                self._meta[name] = (shape, dtype)
            elif t.shape != shape or t.dtype != dtype:
                raise AggregationError(
                    f"{self.rule}: tensor {name!r} of update {self.order[pos]} is {t.dtype}{list(t.shape)}, "
                    f"update {self.order[0]} has {dtype}{list(shape)}; all updates must share one schema"
                )
            flats.append(np.ascontiguousarray(t).reshape(-1))
        assert shape is not None and dtype is not None
        return shape, dtype, flats

    def layers(self) -> Iterator[tuple[str, tuple[int, ...], np.dtype, list[np.ndarray]]]:
        # No local keeps a layer alive after it is yielded; consumers `del` theirs at the end of
        # each iteration, so at most one layer of every update is held at a time.
        for name in self.names:
            yield (name, *self.layer(name))

    def single(self, pos: int) -> Model:
        """An independent copy of one update (the Krum choice)."""
        out = {}
        for name in self.names:
            t = self._read(pos, name)
            shape, dtype = self._meta.get(name, (t.shape, t.dtype))
            if t.shape != shape or t.dtype != dtype:
                raise AggregationError(f"{self.rule}: tensor {name!r} changed between reads")
            out[name] = np.array(t, copy=True)
        return out

    def describe(self, pos: int) -> str:
        return f"update {self.order[pos]}"


def work_dtype(dtype: np.dtype) -> np.dtype:
    """Dtype in which values are compared: exact for the model's dtype (float16 widens to float32)."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def chunks(length: int, size: int | None = None) -> Iterator[tuple[int, int]]:
    size = size or CHUNK
    for start in range(0, length, size):
        yield start, min(length, start + size)


def block_chunk(n: int, itemsize: int = 8) -> int:
    """Chunk length for an (n, chunk) block: whole lanes, at most CHUNK."""
    return max(LANES, min(CHUNK, (BLOCK_BYTES // (max(n, 1) * itemsize)) // LANES * LANES))


def padded(m: int) -> int:
    """Length m rounded up to whole lanes."""
    return -(-m // LANES) * LANES


def lane_sum(lanes: np.ndarray) -> float:
    """Exactly rounded sum of one lane vector (the last step of every fixed-order reduction)."""
    return math.fsum(lanes.tolist())


def raise_non_finite(inputs: Inputs, name: str, flats: Sequence[np.ndarray], what: str = "") -> None:
    """Name the first update whose tensor holds NaN or infinity (called only on the error path)."""
    for pos, flat in enumerate(flats):
        if not np.isfinite(flat).all():
            raise AggregationError(
                f"{inputs.rule}: {inputs.describe(pos)} has non-finite values in {name!r}; "
                "filter non-finite updates before aggregating"
            )
    raise AggregationError(
        f"{inputs.rule}: the result for {name!r} is not finite{what} (values overflow the dtype)"
    )
