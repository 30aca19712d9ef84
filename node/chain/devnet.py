"""The embedded devnet: an Anvil chain (and, per organisation, a dev IPFS node) on loopback.

Everything lives in a run directory: the chain's state file, each IPFS repo and `devnet.json`
(ports and PIDs), so a devnet survives `down`/`up` and a finished simulation can be audited
later by restarting it from that directory. Processes are tracked by PID and stopped with
SIGTERM, which makes Anvil write its state file.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from ..errors import DevnetError
from ..procs import free_port, node_modules_dir, pid_alive

CHAIN_ID = 31337
# The well-known Anvil/Hardhat development keys (mnemonic "test test ... junk"): public, funded
# only on a local devnet. Never use them anywhere else.
DEV_KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
]




def node_modules() -> Path:
    return node_modules_dir()


def anvil_binary() -> Path:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    path = node_modules() / "@foundry-rs" / f"anvil-linux-{arch}" / "bin" / "anvil"
    if not path.exists():
        raise DevnetError(f"Anvil binary not found at {path}: run `make setup` (npm install) first")
    return path


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL: Anvil writes its state file on SIGTERM."""
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@dataclass
class AnvilNode:
    """One Anvil process whose state persists in `state_file` across restarts."""

    run_dir: Path
    port: int = 0
    chain_id: int = CHAIN_ID
    block_time: float | None = None
    pid: int | None = None
    state_interval: int = 1

    @property
    def state_file(self) -> Path:
        return Path(self.run_dir) / "chain" / "state.json"

    @property
    def log_file(self) -> Path:
        return Path(self.run_dir) / "chain" / "anvil.log"

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "AnvilNode":
        if self.pid and pid_alive(self.pid):
            return self
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        cmd = [
            str(anvil_binary()),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--state", str(self.state_file),
            "--state-interval", str(self.state_interval),
            "--accounts", "10",
        ]
        if self.block_time:
            cmd += ["--block-time", str(self.block_time)]
        log = open(self.log_file, "ab")
        # Anvil keeps old states on disk under $HOME/.foundry/anvil/tmp and never removes them (tens
        # of GB over a day of test runs): give it the chain's own directory as home, so they go with it.
        env = {**os.environ, "HOME": str(self.state_file.parent.resolve())}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        log.close()
        self.pid = proc.pid
        self._proc = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DevnetError(f"Anvil exited with code {proc.returncode}; see {self.log_file}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise DevnetError(f"Anvil did not answer on {self.rpc_url} within {timeout} s; see {self.log_file}")

    def ready(self) -> bool:
        try:
            r = httpx.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                           timeout=1.0)
            return r.status_code == 200 and "result" in r.json()
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self) -> None:
        if self.pid:
            stop_pid(self.pid)
            proc = getattr(self, "_proc", None)
            if proc is not None:
                proc.wait(timeout=5)
        self.pid = None

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Devnet:
    """The processes of one run directory, recorded in `devnet.json`."""

    run_dir: Path
    anvil: AnvilNode | None = None
    ipfs: dict[str, dict] = field(default_factory=dict)

    @property
    def record(self) -> Path:
        return Path(self.run_dir) / "devnet.json"

    def save(self) -> None:
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        data = {"anvil": self.anvil.to_dict() if self.anvil else None, "ipfs": self.ipfs}
        self.record.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> "Devnet":
        run_dir = Path(run_dir)
        record = run_dir / "devnet.json"
        if not record.exists():
            return cls(run_dir=run_dir)
        data = json.loads(record.read_text())
        anvil = None
        if data.get("anvil"):
            a = data["anvil"]
            anvil = AnvilNode(run_dir=run_dir, port=a["port"], chain_id=a["chain_id"],
                              block_time=a.get("block_time"), pid=a.get("pid"))
        return cls(run_dir=run_dir, anvil=anvil, ipfs=data.get("ipfs", {}))

    def up(self, block_time: float | None = None) -> "Devnet":
        """Start the chain (reusing its port and state if this run directory had one)."""
        if self.anvil is None:
            self.anvil = AnvilNode(run_dir=Path(self.run_dir), block_time=block_time)
        if not pid_alive(self.anvil.pid):
            self.anvil.pid = None
            try:
                self.anvil.start()
            except DevnetError:
                # The recorded port may be taken now: take a fresh one, keep the state.
                self.anvil.port = 0
                self.anvil.start()
        self.save()
        return self

    def down(self) -> None:
        if self.anvil:
            self.anvil.stop()
        self.save()

    def status(self) -> dict:
        out: dict = {"run_dir": str(self.run_dir)}
        if self.anvil:
            alive = pid_alive(self.anvil.pid)
            out["chain"] = {
                "rpc_url": self.anvil.rpc_url,
                "chain_id": self.anvil.chain_id,
                "pid": self.anvil.pid if alive else None,
                "running": alive and self.anvil.ready(),
                "state_file": str(self.anvil.state_file),
            }
        else:
            out["chain"] = None
        return out
