"""A peer's downloads: every blob the chain vouches for, fetched once, hash-checked, on a small pool.

Downloads are keyed by destination file, so a prefetch started early and the role that needs the
file later share one transfer. A blob is fetched first from the IPFS gateway of the member who
stored it (the chain says who submitted each update and who led each round), then through the
member's own IPFS node and the swarm; both paths apply the same size limit and sha256 check.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

from .. import defaults
from ..errors import StorageError
from ..storage.ipfs import GatewayClient, IpfsClient

log = logging.getLogger("fedledger.node")


def link(src: Path, dst: Path) -> None:
    """Make `dst` hold the bytes of `src` (a hard link, else a copy) unless it exists already."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class Downloads:
    """The fetch pool of one member. `me` is the member's address; `gateways` maps other members'
    addresses to their IPFS gateways."""

    def __init__(self, name: str, me: str, ipfs: IpfsClient, max_bytes: int, *,
                 fetch_timeout: float = defaults.FETCH_TIMEOUT, workers: int = defaults.FETCH_WORKERS,
                 gateways: Mapping[str, str] | None = None):
        self.name = name
        self.me = me.lower()
        self.ipfs = ipfs
        self.max_bytes = max_bytes
        self.fetch_timeout = fetch_timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-fetch")
        # Pinning a parent in our own node is for the lineage, not for the round: it runs here, one
        # at a time, off the path from a model's arrival to training on it.
        self._pins = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-pin")
        self._pinned: set[str] = set()
        self._fetches: dict[Path, Future] = {}
        self._lock = threading.Lock()
        self.gateways = {a.lower(): url for a, url in (gateways or {}).items()}
        self._gateway = GatewayClient(timeout=fetch_timeout) if self.gateways else None
        self._source_of: dict[str, str] = {}  # cid -> member who stored it, when the chain says so
        self._not_in_own_node: set[str] = set()  # cids fetched from a gateway: our node lacks them
        self.counts = {"gateway": 0, "swarm": 0, "own": 0, "gateway_failed": 0}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pins.shutdown(wait=True, cancel_futures=False)  # a pin under way completes: the lineage stays held
        if self._gateway is not None:
            self._gateway.close()

    def get(self, cid: str, sha: str, path: Path, source: str | None = None) -> Future:
        """A future for `path` holding the blob `cid` with sha256 `sha`: done at once if the file
        is there, the transfer under way if one is, else a new one on the pool (a failed transfer
        is tried afresh). `source` is the member who stored the blob, if known: its gateway is
        tried first. Errors (`StorageError`) surface from `.result()`."""
        with self._lock:
            if source:
                self._source_of[cid] = source.lower()
            fut = self._fetches.get(path)
            if fut is not None and (not fut.done() or fut.exception() is None):
                return fut
            if path.exists():
                fut = Future()
                fut.set_result(path)
                return fut
            fut = self._pool.submit(self._fetch_to, cid, sha, path, self._source_of.get(cid))
            self._fetches[path] = fut
            for done in [p for p, f in self._fetches.items() if f.done() and p != path]:
                del self._fetches[done]
            return fut

    def knows_source(self, cid: str) -> bool:
        with self._lock:
            return cid in self._source_of

    def have_locally(self, cid: str, source: str | None) -> None:
        """Record that `cid` is on disk without our IPFS node holding it (a verifier's bit-identical
        recomputation of a leader's aggregate): pinning it later means adding it."""
        with self._lock:
            self._source_of[cid] = (source or "").lower()
            self._not_in_own_node.add(cid)

    def keep(self, cid: str, path: Path) -> None:
        """Pin a model we build on in our own node. One fetched from a gateway is added from the
        verified local file (the same bytes give the same CID, without a network transfer)."""
        if cid in self._not_in_own_node and self.ipfs.add_file(path) == cid:
            self._not_in_own_node.discard(cid)
            return
        self.ipfs.pin_add(cid, timeout=self.fetch_timeout)

    def keep_later(self, cid: str, path: Path) -> Future:
        """`keep` in the background, once per CID; a failure is logged and tried again next time."""
        with self._lock:
            if cid in self._pinned:
                done: Future = Future()
                done.set_result(None)
                return done
            self._pinned.add(cid)

        def pin() -> None:
            try:
                self.keep(cid, path)
            except (StorageError, OSError) as exc:
                with self._lock:
                    self._pinned.discard(cid)
                log.warning("%s: could not pin %s in its own IPFS node yet (%s); trying again when next needed",
                            self.name, cid, exc)

        return self._pins.submit(pin)

    def forget_old(self, keep: int = 256) -> None:
        """Drop the bookkeeping of older blobs: keep the newest `keep` entries only."""
        with self._lock:
            for cid in list(self._source_of)[:-keep]:
                del self._source_of[cid]
            if len(self._pinned) > 4 * keep:
                self._pinned.clear()  # pinning again what is pinned costs one call
            self._not_in_own_node &= set(self._source_of)

    def _fetch_to(self, cid: str, sha: str, path: Path, source: str | None = None) -> Path:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        gateway = self.gateways.get(source or "") if source != self.me else None
        if gateway and self._gateway is not None:
            try:
                self._gateway.fetch_to_file(gateway, cid, path, expected_sha256=sha, max_bytes=self.max_bytes,
                                            timeout=min(self.fetch_timeout, 10.0 + self.max_bytes / 1e6))
                with self._lock:
                    self._not_in_own_node.add(cid)
                self._count("gateway")
                return path
            except StorageError as exc:
                self._count("gateway_failed")
                # Down, slow or lying: the swarm has the final word (the size and hash checks are the same).
                log.info("%s: gateway of %s failed for %s (%s); fetching through the swarm", self.name,
                         source, cid, exc)
        self.ipfs.cat_to_file(cid, path, expected_sha256=sha, max_bytes=self.max_bytes, timeout=self.fetch_timeout)
        self._count("own" if source == self.me else "swarm")
        return path

    def _count(self, how: str) -> None:
        with self._lock:
            self.counts[how] += 1
