"""JSON-RPC transport for the chain client: web3's HTTP provider over keep-alive connections."""

from __future__ import annotations

import http.client
import threading
import urllib.parse

from web3 import Web3

from ..errors import ChainError


class LeanHTTPProvider(Web3.HTTPProvider):
    """web3's HTTP provider over one keep-alive `http.client` connection per thread instead of
    `requests`: a node asks for the block number ten times a second and reads the round on every
    block, and `requests` took a quarter of a node's CPU doing it (py-spy, ten organisations on two
    cores); `http.client` does the same POST for a fraction. Transport failures are `OSError`s
    (`ChainClient._rpc` turns them into `ChainError`); a connection the node closed while idle is
    reopened once."""

    def __init__(self, endpoint_uri: str, timeout: float = 60.0):
        super().__init__(endpoint_uri, request_kwargs={"timeout": timeout})
        url = urllib.parse.urlsplit(endpoint_uri)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ChainError(f"{endpoint_uri!r} is not an http:// or https:// JSON-RPC URL")
        self._conn_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        self._host, self._port, self._path = url.hostname, url.port, (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._timeout = timeout
        self._local = threading.local()

    def _make_request(self, method, request_data: bytes) -> bytes:  # type: ignore[override]
        headers = {"Content-Type": "application/json", "Content-Length": str(len(request_data))}
        for retry in (True, False):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if fresh:
                conn = self._local.conn = self._conn_class(self._host, self._port, timeout=self._timeout)
            try:
                conn.request("POST", self._path, body=request_data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                if retry and not fresh and not isinstance(exc, TimeoutError):
                    continue  # the node closed an idle keep-alive connection: reopen once
                if isinstance(exc, OSError):
                    raise
                raise ConnectionError(f"{method}: {exc!r}") from exc
            if resp.status != 200:
                raise ConnectionError(f"{method}: HTTP {resp.status} from the chain node: {body[:200]!r}")
            return body
        raise AssertionError("unreachable")
