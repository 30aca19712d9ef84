"""New blocks pushed by the chain node (`eth_subscribe` to `newHeads` over WebSocket), so a node
wakes on each block instead of asking for the block number every few tens of milliseconds."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse

from ..errors import ChainError

log = logging.getLogger("fedledger.chain")


class HeadWatcher:
    """Wakes a node as soon as its chain node announces a block (`eth_subscribe` to `newHeads`
    over WebSocket), instead of it asking for the block number every few tens of milliseconds.

    `wait(timeout)` returns True when a block arrived since the last call. `connected` tells
    whether the subscription stands; while it does not (the chain node restarts, or does not
    serve WebSocket), callers poll as before, and the watcher reconnects by itself."""

    def __init__(self, ws_url: str, name: str = "chain"):
        url = urllib.parse.urlsplit(ws_url)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise ChainError(f"{ws_url!r} is not a ws:// or wss:// URL")
        self.ws_url = ws_url
        self.latest = -1
        self.connected = False
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-heads", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        arrived = self._event.wait(timeout)
        self._event.clear()
        return arrived

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        from websockets.sync.client import connect

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with connect(self.ws_url, open_timeout=5, close_timeout=1, compression=None, proxy=None,
                             max_size=1 << 20) as ws:
                    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
                    answer = json.loads(ws.recv(timeout=5))
                    if "error" in answer:
                        log.info("%s does not push new blocks (%s): polling", self.ws_url, answer["error"])
                        return
                    self.connected, backoff = True, 0.5
                    log.info("new blocks pushed by %s", self.ws_url)
                    self._event.set()  # whatever happened while we were away: look now
                    while not self._stop.is_set():
                        try:
                            msg = json.loads(ws.recv(timeout=1.0))
                        except TimeoutError:
                            continue
                        head = (msg.get("params") or {}).get("result") or {}
                        if "number" in head:
                            self.latest = int(head["number"], 16)
                            self._event.set()
            except Exception as exc:  # refused, closed, malformed: poll meanwhile and try again
                if self.connected:
                    log.info("new-block subscription at %s lost (%s); polling until it is back", self.ws_url, exc)
                self.connected = False
                self._event.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.connected = False
