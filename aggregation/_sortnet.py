"""Coordinate-wise sorting of a chunk of n updates, exact and independent of input order.

For small n a sorting network sorts every coordinate at once with elementwise np.minimum and
np.maximum (vectorised across the chunk, no per-coordinate Python or strided sort); for large n
np.sort along the update axis is faster. Both return the same sorted multiset bit for bit: the
values are finite and their zeros are made positive first, so equal values are identical bits.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Above this many updates np.sort beats the network (measured on the bench machine).
NETWORK_MAX_N = 24


@lru_cache(maxsize=None)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for n wires (comparators (i, j), i < j: min to i, max to j).

    Built for the next power of two; comparators touching a wire >= n are dropped, which is
    exact because those wires would only ever hold +inf.
    """
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        a, b = i + j, i + j + k
                        if b < n:
                            pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


@lru_cache(maxsize=None)
def pruned_network(n: int, outputs: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The comparators of sorting_network(n) that can influence the wanted output positions."""
    needed = set(outputs)
    kept: list[tuple[int, int]] = []
    for a, b in reversed(sorting_network(n)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.add(a)
            needed.add(b)
    kept.reverse()
    return tuple(kept)


def sort_rows(buf: np.ndarray, m: int, outputs: tuple[int, ...]) -> list[np.ndarray]:
    """Sort columns [:m] of buf (n x chunk) ascending; return the n sorted rows (views, length m).

    Only the rows listed in ``outputs`` are guaranteed sorted into place; the others may be
    partially sorted. ``buf`` is overwritten.
    """
    n = buf.shape[0]
    if n > NETWORK_MAX_N:
        block = buf[:, :m]
        block.sort(axis=0)
        return [block[i] for i in range(n)]
    rows = [buf[i, :m] for i in range(n)]
    spare = np.empty(m, dtype=buf.dtype)
    for a, b in pruned_network(n, outputs):
        lo = spare
        np.minimum(rows[a], rows[b], out=lo)
        np.maximum(rows[a], rows[b], out=rows[b])
        spare = rows[a]
        rows[a] = lo
    return rows
