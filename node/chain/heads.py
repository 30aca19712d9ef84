"""New blocks pushed by the chain node (`eth_subscribe` to `newHeads` over WebSocket), so a node
wakes on each block instead of asking for the block number every few tens of milliseconds; and,
when told which events it acts on, only on blocks whose logs bloom may hold one of them."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse

from ..errors import ChainError

log = logging.getLogger("fedledger.chain")


def bloom_bits(item: bytes) -> tuple[int, int, int]:
    """The three bits `item` (an address or a topic) sets in a block's 2048-bit logs bloom: the low
    11 bits of each of the first three byte pairs of its keccak-256 (the yellow paper's M3:2048)."""
    from eth_utils import keccak

    h = keccak(item)
    return (((h[0] << 8) | h[1]) & 0x7FF, ((h[2] << 8) | h[3]) & 0x7FF, ((h[4] << 8) | h[5]) & 0x7FF)


def may_hold(bloom: int, bits: tuple[int, int, int]) -> bool:
    """Whether a bloom (as an integer) may hold the item with these bits (false positives happen;
    false negatives never)."""
    return all(bloom >> b & 1 for b in bits)


class HeadWatcher:
    """Wakes a node as soon as its chain node announces a block (`eth_subscribe` to `newHeads`
    over WebSocket), instead of it asking for the block number every few tens of milliseconds.

    `wait(timeout)` returns True when a block arrived since the last call. `connected` tells
    whether the subscription stands; while it does not (the chain node restarts, or does not
    serve WebSocket), callers poll as before, and the watcher reconnects by itself.

    `watch(topics)` narrows the wake-ups to blocks whose logs bloom may hold one of these event
    topics (a block without a bloom still wakes): on a busy consortium most blocks carry only
    other members' submissions, which a member that has submitted has nothing to do about. A
    caller that acts on deadlines ticks at least once a second anyway."""

    def __init__(self, ws_url: str, name: str = "chain"):
        url = urllib.parse.urlsplit(ws_url)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise ChainError(f"{ws_url!r} is not a ws:// or wss:// URL")
        self.ws_url = ws_url
        self.latest = -1
        self.connected = False
        self._event = threading.Event()
        self._stop = threading.Event()
        self._topic_bits: list[tuple[int, int, int]] | None = None  # None: every block wakes
        self._thread = threading.Thread(target=self._run, name=f"{name}-heads", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> bool:
        arrived = self._event.wait(timeout)
        self._event.clear()
        return arrived

    def watch(self, topics: list[bytes] | None) -> None:
        """Wake only for blocks that may carry one of these event topics (None: every block)."""
        self._topic_bits = None if topics is None else [bloom_bits(t) for t in topics]

    def _wakes_for(self, head: dict) -> bool:
        bits = self._topic_bits
        bloom = head.get("logsBloom")
        if bits is None or not isinstance(bloom, str):
            return True
        try:
            value = int(bloom, 16)
        except ValueError:
            return True
        return any(may_hold(value, b) for b in bits)

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
                            if self._wakes_for(head):
                                self._event.set()
            except Exception as exc:  # refused, closed, malformed: poll meanwhile and try again
                if self.connected:
                    log.info("new-block subscription at %s lost (%s); polling until it is back", self.ws_url, exc)
                self.connected = False
                self._event.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.connected = False
