"""Where the audit gets its blobs: one live IPFS node, or the IPFS repos of a run directory served
by one throwaway node over the union of their blocks; and the fetcher that downloads each blob
once, in parallel, hash-checked against the chain."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import defaults
from ..errors import AuditError, StorageError
from ..storage.blocks import copy_repo, flatfs_block_path, is_flatfs, link_blocks
from ..storage.daemon import IpfsDaemon, connect_all, start_all
from ..storage.ipfs import IntegrityError, IpfsClient, raw_cid


class BlobSource:
    """Where the audit fetches blobs: one IPFS node (live), or the run's repos (run directory)."""

    def prepare(self, cids: list[str], say: Callable[[str], None]) -> None:
        pass

    def client_for(self, cid: str) -> IpfsClient:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LiveIpfs(BlobSource):
    def __init__(self, api_url: str, timeout: float = 30.0):
        self.client = IpfsClient(api_url, timeout=timeout)
        self.url = api_url

    def client_for(self, cid: str) -> IpfsClient:
        return self.client

    def close(self) -> None:
        self.client.close()


class RunIpfs(BlobSource):
    """The IPFS repos of a run directory, served by one throwaway IPFS node.

    Blocks are immutable, content-addressed files in each repo's flatfs blockstore, so the node's
    scratch repo is a copy of one repo with every other repo's blocks hard-linked in (copied across
    file systems): every blob of the run is local to it, one node starts instead of one per
    organisation, and the run directory is never written. A blockstore layout this does not
    recognise falls back to one node per repo, swarm-connected."""

    def __init__(self, run_dir: Path, scratch: Path):
        self._daemon_cls = IpfsDaemon
        self.scratch = scratch
        root = run_dir / "ipfs"
        self.repos = {d.name: d for d in sorted(root.iterdir()) if (d / "config").exists()} if root.is_dir() else {}
        if not self.repos:
            raise AuditError(f"{root} holds no IPFS repo: is {run_dir} a fedledger run directory?")
        self.daemons: dict = {}
        self.clients: dict[str, IpfsClient] = {}

    def prepare(self, cids: list[str], say: Callable[[str], None]) -> None:
        if all(is_flatfs(repo) for repo in self.repos.values()):
            held = {name: sum(1 for c in cids if (p := flatfs_block_path(repo, c)) is not None and p.exists())
                    for name, repo in self.repos.items()}
            base = max(self.repos, key=lambda n: held[n])  # fewest blocks to link in
            union = self.scratch / "ipfs" / "union"
            copy_repo(self.repos[base], union)
            linked = sum(link_blocks(repo, union) for name, repo in self.repos.items() if name != base)
            present = sum(1 for c in cids if (p := flatfs_block_path(union, c)) is not None and p.exists())
            say(f"starting one IPFS node over the blocks of {len(self.repos)} repos ({', '.join(self.repos)}; "
                f"{linked} blocks linked in): {present} of {len(cids)} blobs are there")
            daemons = [self._daemon_cls(union, name="union")]
        else:
            say(f"starting {len(self.repos)} IPFS nodes, one per repo (blockstore layout not flatfs)")
            daemons = []
            for name, repo in self.repos.items():
                copy_repo(repo, self.scratch / "ipfs" / name)
                daemons.append(self._daemon_cls(self.scratch / "ipfs" / name, name=name))
        start_all(daemons)
        self.daemons = {d.name: d for d in daemons}
        self.clients = {d.name: d.client() for d in daemons}
        if len(daemons) > 1:
            connect_all(daemons)

    def client_for(self, cid: str) -> IpfsClient:
        return next(iter(self.clients.values()))

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        for d in self.daemons.values():
            d.stop()


@dataclass
class Blob:
    cid: str
    sha256: str | None  # None: the model spec, whose only handle on chain is its CID
    path: Path | None = None
    error: StorageError | None = None
    size: int = 0


class Fetcher:
    def __init__(self, source: BlobSource, scratch: Path, timeout: float, say: Callable[[str], None]):
        self.source = source
        self.dir = scratch / "blobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.say = say
        self.blobs: dict[tuple[str, str | None], Blob] = {}

    def want(self, cid: str, sha: str | None) -> None:
        self.blobs.setdefault((cid, sha), Blob(cid, sha))

    def get(self, cid: str, sha: str | None) -> Blob:
        return self.blobs[(cid, sha)]

    def run(self, max_bytes: Callable[[Blob], int | None], only: Callable[[Blob], bool] = lambda b: True) -> None:
        pending = [b for b in self.blobs.values() if b.path is None and b.error is None and only(b)]
        with ThreadPoolExecutor(max_workers=defaults.AUDIT_FETCH_WORKERS) as pool:
            list(pool.map(lambda b: self._one(b, max_bytes(b)), pending))

    def _one(self, blob: Blob, max_bytes: int | None) -> None:
        client = self.source.client_for(blob.cid)
        try:
            if blob.sha256 is None:
                data = client.cat(blob.cid, timeout=self.timeout, max_bytes=max_bytes)
                if blob.cid.startswith("bafkrei") and raw_cid(data) != blob.cid:
                    raise IntegrityError(f"content of {blob.cid} does not hash to its CID")
                path = self.dir / f"cid-{blob.cid}"
                path.write_bytes(data)
                blob.size = len(data)
            else:
                path = self.dir / f"{blob.sha256}-{blob.cid}"
                client.cat_to_file(blob.cid, path, expected_sha256=blob.sha256, max_bytes=max_bytes,
                                   timeout=self.timeout)
                blob.size = path.stat().st_size
            blob.path = path
        except StorageError as exc:
            blob.error = exc

    @property
    def fetched_bytes(self) -> int:
        return sum(b.size for b in self.blobs.values())
