"""Small helpers for local processes (Anvil, js-ipfs, node processes): ports, PIDs, node_modules, waiting."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it; racing processes may still collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int | None) -> bool:
    """Whether `pid` runs; an exited child not yet reaped (a zombie) does not."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def node_modules_dir() -> Path:
    """`$FEDLEDGER_NODE_MODULES`, else the checkout's `node_modules` (beside `node/`)."""
    env = os.environ.get("FEDLEDGER_NODE_MODULES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "node_modules"


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` seconds pass (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
