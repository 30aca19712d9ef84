"""A thin client for the IPFS HTTP RPC subset that both Kubo and js-ipfs 0.66 serve.

Weights are the one thing peers exchange, so this module is deliberately small and strict:

- every add uses CIDv1, raw leaves, sha2-256 and base32, so the same bytes give the same CID
  on every node and implementation;
- every call has a deadline (an httpx timeout, and for content lookups also the RPC `timeout=`
  argument, without which js-ipfs waits forever for a CID nobody has);
- files stream from and to disk in 1 MiB chunks, so a 500 MB model never sits in memory twice;
- `cat_to_file` hashes while it streams and only renames the download into place when the
  sha256 matches the value the chain recorded.

Why not `ipfshttpclient`: see docs/storage.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from ..errors import StorageError
from .blocks import flatfs_block_path, is_flatfs, put_block
from .unixfs import RAW, SHA2_256, cid_string, file_cid

CHUNK = 1 << 20

# The add parameters that make CIDs reproducible across nodes and implementations.
ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "hash": "sha2-256",
    "cid-base": "base32",
    "pin": "true",
}


# --------------------------------------------------------------------------- errors


class IpfsError(StorageError):
    """The IPFS node answered with an error (bad CID, not pinned, ...)."""

    reason_code = "ipfs_error"

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class IpfsUnavailable(StorageError):
    """No IPFS node answers at the API address (not started, crashed, wrong port)."""

    reason_code = "unavailable"


class IpfsTimeout(StorageError):
    """The content was not obtained before the deadline: no reachable node has it, or it
    arrives too slowly."""

    reason_code = "unavailable"


class IntegrityError(StorageError):
    """The bytes behind a CID are not the bytes whose sha256 the chain recorded."""

    reason_code = "hash_mismatch"

    def __init__(self, message: str, expected: str = "", actual: str = ""):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class SizeLimitExceeded(StorageError):
    """The content is larger than the caller allows (the task's model spec caps it)."""

    reason_code = "too_large"


# --------------------------------------------------------------------------- helpers


def normalize_sha256(value: str | bytes) -> str:
    """Lowercase 64-hex form of a sha256 given as hex (with or without 0x) or 32 raw bytes."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 32:
            raise ValueError(f"a sha256 is 32 bytes, got {len(value)}")
        return bytes(value).hex()
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not a sha256 hex digest: {value!r}")
    return text


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def raw_cid(data: bytes) -> str:
    """The CIDv1 (raw codec, sha2-256, base32) of content that fits in one block (<= 256 KiB).

    This is what `add` returns for such content; it lets tests and auditors check CIDs without
    any IPFS implementation, and name content that no node has."""
    return cid_string(bytes([0x01, RAW]) + SHA2_256 + hashlib.sha256(data).digest())


def _duration(seconds: float) -> str:
    """An RPC duration both Kubo (Go time.ParseDuration) and js-ipfs (parse-duration) accept."""
    return f"{max(1, int(seconds * 1000))}ms"


class _Multipart:
    """A one-file multipart/form-data body that streams from a file object or bytes.

    Written by hand rather than with httpx's `files=` to control the part headers (js-ipfs
    ignores a part without Content-Type) and to read in 1 MiB chunks."""

    def __init__(self, source: bytes | BinaryIO, size: int, filename: str = "blob"):
        self.boundary = "fedledger-" + secrets.token_hex(16)
        self.head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.source = source
        self.size = size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        if isinstance(self.source, (bytes, bytearray, memoryview)):
            view = memoryview(self.source)
            for i in range(0, len(view), CHUNK):
                yield bytes(view[i : i + CHUNK])
        else:
            sent = 0
            while chunk := self.source.read(CHUNK):
                sent += len(chunk)
                yield chunk
            if sent != self.size:
                raise StorageError(f"file changed size while uploading ({sent} != {self.size} bytes)")
        yield self.tail


# --------------------------------------------------------------------------- client


def _until(chunks: Iterator[bytes], deadline: float, late: str) -> Iterator[bytes]:
    """`chunks`, raising `IpfsTimeout(late)` once the monotonic clock passes `deadline`."""
    for chunk in chunks:
        yield chunk
        if time.monotonic() > deadline:
            raise IpfsTimeout(late)


def write_verified(
    chunks: Iterator[bytes],
    path: str | os.PathLike[str],
    what: str,
    expected_sha256: str | bytes | None = None,
    max_bytes: int | None = None,
) -> str:
    """Stream `chunks` into a temporary file next to `path` while hashing them; rename it to `path`
    only if the sha256 equals `expected_sha256` (when given) and the size stays within
    `max_bytes`. Returns the sha256 hex. On any failure nothing is left at `path` or beside it."""
    expected = None if expected_sha256 is None else normalize_sha256(expected_sha256)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f, closing(chunks):
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise SizeLimitExceeded(f"{what}: content exceeds the limit of {max_bytes} bytes; refusing it")
                h.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise IntegrityError(
                f"{what}: content has sha256 {actual}, but {expected} was expected (recorded on chain): refusing it",
                expected=expected,
                actual=actual,
            )
        os.replace(tmp, target)
        return actual
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class IpfsClient:
    """Talks to one IPFS node's RPC API (`http://127.0.0.1:5001` style URL).

    `timeout` is the default deadline in seconds for a call. Content transfers (`cat`,
    `cat_to_file`, `pin_add`) take an explicit `timeout`: it is the deadline for the whole
    transfer, passed to the node too so that it gives up looking for content nobody has.
    When not given, `cat_to_file` allows `timeout + max_bytes / min_rate` seconds.
    """

    def __init__(self, api_url: str, timeout: float = 30.0, min_rate: float = 1_000_000.0, *, direct: bool = True):
        self.api_url = api_url.rstrip("/")
        self.timeout = float(timeout)
        self.min_rate = float(min_rate)
        #: Write added files' blocks straight into the node's block store when it is on this disk
        #: (`add_file`); None until probed, then the blocks directory or False.
        self._blocks: Path | bool | None = None if direct else False
        self._http = httpx.Client(
            base_url=self.api_url + "/api/v0",
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            # Never pick up HTTP(S)_PROXY from the environment for a loopback node.
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IpfsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IpfsClient({self.api_url!r})"

    # ------------------------------------------------------------------ plumbing

    def _timeouts(self, seconds: float) -> httpx.Timeout:
        # The node answers after its own RPC deadline; leave it room to say so.
        return httpx.Timeout(seconds + 5.0, connect=min(seconds, 10.0))

    @staticmethod
    def _raise_for(resp: httpx.Response, what: str) -> None:
        if resp.status_code == 200:
            return
        try:
            body = resp.read()
        except httpx.HTTPError:
            body = b""
        try:
            message = json.loads(body).get("Message") or body.decode(errors="replace")
        except (ValueError, AttributeError):
            message = body.decode(errors="replace")[:500]
        lowered = message.lower()
        if "timed out" in lowered or "timeout" in lowered or "deadline exceeded" in lowered:
            raise IpfsTimeout(f"{what}: the node gave up: {message}")
        raise IpfsError(f"{what}: HTTP {resp.status_code}: {message}", resp.status_code)

    def _call(
        self,
        endpoint: str,
        params: Iterable[tuple[str, str]] | dict[str, str] = (),
        *,
        timeout: float | None = None,
        rpc_timeout: bool = False,
    ) -> list[Any]:
        """POST an RPC call and return its JSON objects (the API streams newline-delimited JSON)."""
        seconds = self.timeout if timeout is None else float(timeout)
        query = list(params.items()) if isinstance(params, dict) else list(params)
        if rpc_timeout:
            query.append(("timeout", _duration(seconds)))
        try:
            resp = self._http.post(endpoint, params=query, timeout=self._timeouts(seconds))
        except httpx.TimeoutException as e:
            raise IpfsTimeout(f"{endpoint}: no answer from {self.api_url} within {seconds:g} s") from e
        except httpx.TransportError as e:
            raise IpfsUnavailable(f"{endpoint}: cannot reach the IPFS node at {self.api_url}: {e}; is it running?") from e
        self._raise_for(resp, endpoint)
        return [json.loads(line) for line in resp.text.splitlines() if line.strip()]

    # ------------------------------------------------------------------ node

    def id(self) -> dict[str, Any]:
        return self._call("id")[0]

    def version(self) -> dict[str, Any]:
        return self._call("version")[0]

    def swarm_connect(self, addr: str, timeout: float | None = None) -> None:
        self._call("swarm/connect", [("arg", addr)], timeout=timeout, rpc_timeout=True)

    def swarm_peers(self) -> list[str]:
        """Peer IDs this node is connected to."""
        out = self._call("swarm/peers")[0]
        return [p["Peer"] for p in (out.get("Peers") or [])]

    def swarm_addrs_local(self) -> list[str]:
        return list(self._call("swarm/addrs/local")[0].get("Strings") or [])

    # ------------------------------------------------------------------ content

    def _add(self, body: _Multipart) -> str:
        seconds = self.timeout + body.size / self.min_rate
        try:
            resp = self._http.post(
                "add",
                params=ADD_PARAMS,
                content=iter(body),
                headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
                timeout=self._timeouts(seconds),
            )
        except httpx.TimeoutException as e:
            raise IpfsTimeout(f"add: no answer from {self.api_url} within {seconds:g} s") from e
        except httpx.TransportError as e:
            raise IpfsUnavailable(f"add: cannot reach the IPFS node at {self.api_url}: {e}; is it running?") from e
        self._raise_for(resp, "add")
        entries = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
        hashes = [e["Hash"] for e in entries if "Hash" in e]
        if len(hashes) != 1:
            raise IpfsError(f"add: expected one CID in the answer, got {entries!r}")
        size = next(int(e["Size"]) for e in entries if "Hash" in e)
        if body.size and size < body.size:
            raise IpfsError(f"add: node stored {size} bytes of {body.size}")
        return hashes[0]

    def add_bytes(self, data: bytes) -> str:
        """Store `data`, pin it and return its CID (v1, base32)."""
        return self._add(_Multipart(bytes(data), len(data)))

    def add_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file streamed from disk, pin it and return its CID (v1, base32).

        When the node's block store is on this machine's disk (`local_blocks`), the blocks are
        written there directly and the root pinned (unixfs.py): the same CID and blocks as `add`,
        without the node's importer (0.3 s of CPU for 40 MB). Should that fail, the file is added."""
        blocks = self.local_blocks()
        if blocks is not None:
            try:
                cid = file_cid(path, sink=lambda mh, data: put_block(blocks, mh, data))
                self.pin_add(cid, timeout=self.timeout)
                return cid
            except (OSError, StorageError):
                pass  # the importer has the final word
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return self._add(_Multipart(f, size, filename=Path(path).name or "blob"))

    def local_blocks(self) -> Path | None:
        """The node's flatfs block directory if this process can write into it, else None.

        Probed once: the node names its repo (`repo/stat`), a random probe is added through the API
        and must then be found as a block file under that path, so a node elsewhere with a repo at
        the same path is never mistaken for this one. The probe is unpinned again."""
        if self._blocks is None:
            self._blocks = False
            try:
                repo = Path(str(self._call("repo/stat")[0].get("RepoPath") or ""))
                probe = secrets.token_bytes(32)
                cid = self.add_bytes(probe)
                found = flatfs_block_path(repo, cid)
                if is_flatfs(repo) and found is not None and found.is_file() and found.read_bytes() == probe \
                        and os.access(found.parent.parent, os.W_OK):
                    self._blocks = repo / "blocks"
                self.pin_rm(cid)
            except (StorageError, OSError, ValueError, KeyError, IndexError):
                pass
        return self._blocks or None

    def _cat_stream(self, cid: str, seconds: float, length: int | None) -> Iterator[bytes]:
        query = [("arg", cid), ("timeout", _duration(seconds))]
        if length is not None:
            query.append(("length", str(length)))
        deadline = time.monotonic() + seconds + 5.0
        try:
            with self._http.stream("POST", "cat", params=query, timeout=self._timeouts(seconds)) as resp:
                self._raise_for(resp, f"cat {cid}")
                yield from _until(resp.iter_raw(CHUNK), deadline, f"cat {cid}: not complete within {seconds:g} s")
        except httpx.TimeoutException as e:
            raise IpfsTimeout(f"cat {cid}: no data within {seconds:g} s: no reachable node seems to have it") from e
        except httpx.TransportError as e:
            raise IpfsUnavailable(f"cat {cid}: transfer from {self.api_url} failed: {e}") from e

    def cat(self, cid: str, timeout: float | None = None, max_bytes: int | None = None) -> bytes:
        """The bytes behind `cid`. Prefer `cat_to_file` for models: it verifies as it streams."""
        seconds = self.timeout if timeout is None else float(timeout)
        out = bytearray()
        limit = None if max_bytes is None else max_bytes + 1
        with closing(self._cat_stream(cid, seconds, limit)) as chunks:
            for chunk in chunks:
                out += chunk
                if max_bytes is not None and len(out) > max_bytes:
                    raise SizeLimitExceeded(f"cat {cid}: content exceeds the limit of {max_bytes} bytes")
        return bytes(out)

    def cat_to_file(
        self,
        cid: str,
        path: str | os.PathLike[str],
        expected_sha256: str | bytes | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> str:
        """Download `cid` to `path` and return the sha256 hex of what was written.

        The content streams into a temporary file next to `path` while it is hashed; the file is
        renamed to `path` only if the hash equals `expected_sha256` (when given) and the size
        stays within `max_bytes`. On any failure nothing is left at `path` or beside it.
        """
        if timeout is None:
            seconds = self.timeout + (max_bytes or 0) / self.min_rate
        else:
            seconds = float(timeout)
        limit = None if max_bytes is None else max_bytes + 1
        return write_verified(self._cat_stream(cid, seconds, limit), path, f"cat {cid}", expected_sha256, max_bytes)

    # ------------------------------------------------------------------ pins and gc

    def pin_add(self, cid: str, timeout: float | None = None) -> None:
        """Pin `cid` recursively (fetching it from peers first if needed, within `timeout`)."""
        self._call("pin/add", [("arg", cid), ("recursive", "true")], timeout=timeout, rpc_timeout=True)

    def pin_rm(self, cid: str, missing_ok: bool = True) -> bool:
        """Unpin `cid`. Returns False when it was not pinned (an error unless `missing_ok`)."""
        try:
            self._call("pin/rm", [("arg", cid), ("recursive", "true")])
        except IpfsError as e:
            if missing_ok and "not pinned" in str(e).lower():
                return False
            raise
        return True

    def pin_ls(self, cid: str | None = None, type: str = "recursive") -> dict[str, str]:
        """Pinned CIDs (base32) mapped to their pin type; `cid` narrows the answer to one CID
        (empty when it is not pinned)."""
        query = [("type", type), ("cid-base", "base32")]
        if cid is not None:
            query.append(("arg", cid))
        try:
            out = self._call("pin/ls", query)
        except IpfsError as e:
            if cid is not None and "not pinned" in str(e).lower():
                return {}
            raise
        pins: dict[str, str] = {}
        for obj in out:
            if "Keys" in obj:  # the default (non-stream) answer of both Kubo and js-ipfs
                for k, v in (obj["Keys"] or {}).items():
                    pins[k] = v.get("Type", "")
            elif "Cid" in obj:  # streamed answer
                pins[obj["Cid"]] = obj.get("Type", "")
        return pins

    def is_pinned(self, cid: str) -> bool:
        return bool(self.pin_ls(cid))

    def repo_gc(self, timeout: float | None = None) -> list[str]:
        """Run garbage collection; return the CIDs of the blocks it removed."""
        removed = []
        for obj in self._call("repo/gc", timeout=timeout if timeout is not None else max(self.timeout, 120.0)):
            if obj.get("Error"):
                raise IpfsError(f"repo/gc: {obj['Error']}")
            key = obj.get("Key")
            if isinstance(key, dict) and "/" in key:
                removed.append(key["/"])
            elif isinstance(key, str):
                removed.append(key)
        return removed


_CID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class GatewayClient:
    """Reads blobs from other organisations' IPFS HTTP gateways: `GET {gateway}/ipfs/{cid}`.

    The swarm (bitswap through this organisation's own node) finds content anywhere but pays for
    it: js-ipfs asks every connected node for every block, so a transfer of a small model costs
    50-90 ms and a round's fetches grow with the square of the members. The node that stored a
    blob serves it over HTTP in a few milliseconds. A gateway is as untrusted as the member behind
    it: what it sends streams through the same size limit and sha256 check as any download, and a
    caller falls back to the swarm when a gateway is down, slow or wrong.
    """

    def __init__(self, timeout: float = 30.0, min_rate: float = 1_000_000.0):
        self.timeout = float(timeout)
        self.min_rate = float(min_rate)
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                                  trust_env=False, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def _stream(self, gateway: str, cid: str, seconds: float) -> Iterator[bytes]:
        url = f"{gateway.rstrip('/')}/ipfs/{cid}"
        deadline = time.monotonic() + seconds
        try:
            # Model bytes barely compress: ask for them as stored (js-ipfs gzips by default). Should a
            # gateway compress anyway, the decoded bytes count against the size limit.
            with self._http.stream("GET", url, headers={"Accept-Encoding": "identity"},
                                   timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0))) as resp:
                if resp.status_code != 200:
                    raise IpfsError(f"GET {url}: HTTP {resp.status_code}", resp.status_code)
                yield from _until(resp.iter_bytes(CHUNK), deadline, f"GET {url}: not complete within {seconds:g} s")
        except httpx.TimeoutException as e:
            raise IpfsTimeout(f"GET {url}: no data within {seconds:g} s") from e
        except httpx.TransportError as e:
            raise IpfsUnavailable(f"GET {url}: {e}") from e

    def fetch_to_file(
        self,
        gateway: str,
        cid: str,
        path: str | os.PathLike[str],
        expected_sha256: str | bytes | None = None,
        max_bytes: int | None = None,
        timeout: float | None = None,
    ) -> str:
        """Download `cid` from `gateway` to `path` with `write_verified`'s guarantees; returns the sha256 hex."""
        if not cid or not set(cid) <= _CID_CHARS or len(cid) > 200:
            raise IpfsError(f"{cid!r} is not a CID")
        seconds = (self.timeout + (max_bytes or 0) / self.min_rate) if timeout is None else float(timeout)
        return write_verified(self._stream(gateway, cid, seconds), path, f"GET {gateway}/ipfs/{cid}",
                              expected_sha256, max_bytes)


# --------------------------------------------------------------------------- pin policy


@dataclass(frozen=True)
class PinPolicy:
    """What a member keeps after a round is finalized.

    A member always keeps its own updates (its evidence) and every global model (the lineage
    everyone must be able to audit and the parent of the next round). Other members' updates
    are needed only until the round is finalized; `keep_others_updates=True` keeps them too
    (an archival or auditing member). `collect_garbage` runs the node's GC afterwards so the
    unpinned blocks really leave the disk.
    """

    keep_others_updates: bool = False
    collect_garbage: bool = False

    def after_finalize(
        self,
        client: IpfsClient,
        own_cids: Iterable[str],
        global_cid: str,
        others_update_cids: Iterable[str],
        timeout: float | None = None,
    ) -> list[str]:
        """Apply the policy for one finalized round; return the CIDs it unpinned."""
        keep = set(own_cids) | {global_cid}
        for cid in sorted(keep):
            client.pin_add(cid, timeout=timeout)
        unpinned: list[str] = []
        if not self.keep_others_updates:
            # Identical bytes have identical CIDs: never drop what is also ours or the global model.
            for cid in sorted(set(others_update_cids) - keep):
                if client.pin_rm(cid, missing_ok=True):
                    unpinned.append(cid)
        if self.collect_garbage and unpinned:
            client.repo_gc()
        return unpinned
