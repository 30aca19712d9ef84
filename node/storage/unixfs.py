"""The blocks and CID that `add` gives a file, computed here: the same bytes as an IPFS node makes.

`ipfs.ADD_PARAMS` fix how a file becomes blocks: 256 KiB chunks stored as raw blocks (CIDv1,
codec raw), grouped by a balanced tree whose inner nodes are dag-pb UnixFS "file" nodes of at
most 174 links, sha2-256 everywhere, the root's CID in base32. A file of one chunk is that raw
block itself. Both js-ipfs and Kubo build exactly this tree from these parameters; tests compare
every shape (one block, several, two levels) with a real node's `add`.

Why here: adding a 40 MB model through js-ipfs's importer costs about 0.3 s of CPU per call, and
every member adds its update and pins each parent model every round. A member whose IPFS node
shares its disk writes the same blocks straight into the node's block store (flatfs: one file per
block) and then pins the root, which makes the node walk and keep the tree (`IpfsClient.add_file`).

The encodings are those of the dag-pb and UnixFS specifications: a PBNode is its links (field 2)
then its data (field 1); a PBLink is Hash (1), Name (2, empty) and Tsize (3, the bytes of the
whole sub-tree); UnixFS Data is Type (1, File = 2), filesize (3) and one blocksizes entry (4) per
child.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 262_144
MAX_LINKS = 174
RAW = 0x55
DAG_PB = 0x70
SHA2_256 = b"\x12\x20"

#: Called with (multihash, block bytes) for every block, leaves first, the root last.
BlockSink = Callable[[bytes, bytes], None]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _uint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


@dataclass(frozen=True)
class _Node:
    cid: bytes  # binary CID
    file_size: int  # bytes of file content below this node
    tree_size: int  # bytes of every block of the sub-tree (the link's Tsize)


def cid_string(cid: bytes) -> str:
    """A binary CIDv1 in base32 (multibase prefix "b", lower case, unpadded)."""
    return "b" + base64.b32encode(cid).decode().lower().rstrip("=")


def _leaf(data: bytes, sink: BlockSink | None) -> _Node:
    mh = SHA2_256 + hashlib.sha256(data).digest()
    if sink is not None:
        sink(mh, data)
    return _Node(bytes([0x01, RAW]) + mh, len(data), len(data))


def _parent(children: list[_Node], sink: BlockSink | None) -> _Node:
    links = b"".join(_field(2, _field(1, c.cid) + _field(2, b"") + _uint(3, c.tree_size)) for c in children)
    size = sum(c.file_size for c in children)
    data = _uint(1, 2) + _uint(3, size) + b"".join(_uint(4, c.file_size) for c in children)
    block = links + _field(1, data)
    mh = SHA2_256 + hashlib.sha256(block).digest()
    if sink is not None:
        sink(mh, block)
    return _Node(bytes([0x01, DAG_PB]) + mh, size, len(block) + sum(c.tree_size for c in children))


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        first = f.read(CHUNK)
        yield first
        while chunk := f.read(CHUNK):
            yield chunk


def file_cid(path: str | os.PathLike[str], sink: BlockSink | None = None) -> str:
    """The CID `add` gives the file at `path` (see the module); `sink` receives every block."""
    level = [_leaf(chunk, sink) for chunk in _chunks(Path(path))]
    if len(level) == 1:
        return cid_string(level[0].cid)
    while len(level) > 1:
        level = [_parent(level[i:i + MAX_LINKS], sink) for i in range(0, len(level), MAX_LINKS)]
    return cid_string(level[0].cid)
