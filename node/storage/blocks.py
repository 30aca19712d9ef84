"""IPFS repos on disk: the CID inside a block key, where a flatfs blockstore keeps a block (and
putting one there), and copying a repo (blocks hard-linked) for a throwaway node. Both js-ipfs and
Kubo lay blocks out the same way (flatfs, next-to-last/2 sharding), so a run directory's repos can
be read without a daemon and merged into one."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
from pathlib import Path


def cid_multihash(cid: str) -> bytes | None:
    """The multihash inside a CID (v0 base58btc, or v1 base32/base58btc), or None if unparseable."""
    try:
        if cid.startswith("Qm"):
            return _b58decode(cid)
        if cid[0] in "bB":
            raw = base64.b32decode(cid[1:].upper() + "=" * (-len(cid[1:]) % 8))
        elif cid[0] == "z":
            raw = _b58decode(cid[1:])
        else:
            return None
        pos = 0
        for _ in range(2):  # version, codec (unsigned varints)
            while raw[pos] & 0x80:
                pos += 1
            pos += 1
        return raw[pos:]
    except (ValueError, IndexError):
        return None


def _b58decode(text: str) -> bytes:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = 0
    for ch in text:
        n = n * 58 + alphabet.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def flatfs_block_path(repo: Path, cid: str) -> Path | None:
    """Where a flatfs blockstore (js-ipfs and Kubo, next-to-last/2 sharding) keeps a CID's block."""
    mh = cid_multihash(cid)
    return block_file(repo / "blocks", mh) if mh else None


def block_file(blocks: Path, multihash: bytes) -> Path:
    """The file of the block with this multihash in a flatfs store's `blocks` directory."""
    key = base64.b32encode(multihash).decode().rstrip("=")
    return blocks / key[-3:-1] / f"{key}.data"


FLATFS_SHARDING = "/repo/flatfs/shard/v1/next-to-last/2"


def put_block(blocks: Path, multihash: bytes, data: bytes) -> None:
    """Put one block into a flatfs store (`blocks`, next-to-last/2 sharding): written aside, then
    renamed in, so the node never reads a partial block; a block already there is left alone."""
    path = block_file(blocks, multihash)
    if path.exists():
        return
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_flatfs(repo: Path) -> bool:
    for name in ("SHARDING", "SHARDING.data"):  # Kubo, js-ipfs
        try:
            return (repo / "blocks" / name).read_text().strip() == FLATFS_SHARDING
        except OSError:
            continue
    return False


def link_blocks(src_repo: Path, dst_repo: Path) -> int:
    """Hard-link (or copy) every block of one flatfs blockstore into another; returns how many were new."""
    added = 0
    for shard in os.scandir(src_repo / "blocks"):
        if not shard.is_dir():
            continue
        target = dst_repo / "blocks" / shard.name
        target.mkdir(exist_ok=True)
        for entry in os.scandir(shard.path):
            dst = target / entry.name
            if not entry.name.endswith(".data") or dst.exists():
                continue
            try:
                os.link(entry.path, dst)
            except OSError:
                shutil.copy2(entry.path, dst)
            added += 1
    return added


_REPO_SKIP = {"repo.lock", "api", "daemon.pid", "daemon.log"}


def copy_repo(src: Path, dst: Path) -> None:
    """Copy an IPFS repo for a throwaway daemon: blocks are immutable files (hard-linked when the
    file system allows), everything else is copied; fresh ports are picked on start."""

    def copy(s: str, d: str) -> str:
        if f"{os.sep}blocks{os.sep}" in s:
            try:
                os.link(s, d)
                return d
            except OSError:
                pass
        return shutil.copy2(s, d)

    shutil.copytree(src, dst, ignore=lambda _dir, names: [n for n in names if n in _REPO_SKIP], copy_function=copy)
    meta_path = dst / "fedledger-ipfs.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta_path.write_text(json.dumps({"name": meta.get("name", src.name)}) + "\n")
