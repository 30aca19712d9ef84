"""The dev IPFS node: js-ipfs 0.66 (npm `ipfs`, installed by `make setup`) on loopback only.

One `IpfsDaemon` per simulated organisation. Each owns a repo directory that holds the js-ipfs
repo plus three files of ours: `fedledger-ipfs.json` (name and ports chosen at init),
`daemon.pid` and `daemon.log`. The config is stripped so the node talks to nothing but
127.0.0.1: no bootstrap peers, no delegate routers, no MDNS, no webRTCStar, no NAT port
mapping, no DHT, no preload nodes, no npm update check. Nodes of one devnet find each other only
through `connect_all`, as organisations of a private swarm would through configured peers.

The daemon is the `node` process running `ipfs/src/cli.js` directly (not the `.bin/jsipfs`
shim), so the PID we record is the daemon's and SIGTERM reaches it: js-ipfs then releases its
repo lock and removes its `api` file. After a SIGKILL the lock directory `repo.lock` stays
behind (proper-lockfile treats it as stale only after 20 s); `start()` removes it when the PID
in `daemon.pid` is dead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from ..errors import StorageError
from ..procs import free_port, node_modules_dir, pid_alive
from .ipfs import IpfsClient, IpfsError

LOCK_DIR = "repo.lock"  # proper-lockfile's lock (a directory) in ipfs-repo's fs lock
API_FILE = "api"  # written by the daemon with its API multiaddr; removed on clean exit
META_FILE = "fedledger-ipfs.json"
PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
LOCK_STALE_S = 20.0  # ipfs-repo's STALE_TIME


class IpfsDaemonError(StorageError):
    """The dev IPFS node could not be set up, started or stopped; the message says what to do."""

    reason_code = "daemon_error"


#: Preloaded into each daemon: TCP_NODELAY on its sockets (see the file for the measurement).
TCP_NODELAY = Path(__file__).with_name("tcp_nodelay.cjs")
GATEWAY_LOCAL = Path(__file__).with_name("gateway_local.cjs")


def jsipfs_cli() -> Path:
    path = node_modules_dir() / "ipfs" / "src" / "cli.js"
    if not path.exists():
        raise IpfsDaemonError(
            f"js-ipfs not found at {path}: run `make setup` (npm install) in the repository, "
            f"or set FEDLEDGER_NODE_MODULES to a node_modules directory that contains `ipfs`"
        )
    return path


def node_binary() -> str:
    found = os.environ.get("FEDLEDGER_NODE_BIN") or shutil.which("node")
    if not found:
        raise IpfsDaemonError("Node.js (`node`) not found on PATH: install Node.js 20, or set FEDLEDGER_NODE_BIN")
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [p.decode(errors="replace") for p in fh.read().split(b"\0") if p]
    except OSError:
        return []


def _env_of(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            pairs = [p.split(b"=", 1) for p in fh.read().split(b"\0") if b"=" in p]
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
    except OSError:
        return {}


def loopback_config(config: dict[str, Any], swarm_port: int, api_port: int, gateway_port: int) -> dict[str, Any]:
    """Rewrite a js-ipfs 0.66 config (keys as in ipfs-core-config/src/config.js) so the node
    listens and dials on 127.0.0.1 only and never contacts a public service."""
    cfg = dict(config)
    addresses = dict(cfg.get("Addresses") or {})
    addresses.update(
        Swarm=[f"/ip4/127.0.0.1/tcp/{swarm_port}"],
        API=f"/ip4/127.0.0.1/tcp/{api_port}",
        Gateway=f"/ip4/127.0.0.1/tcp/{gateway_port}",
        RPC="/ip4/127.0.0.1/tcp/0",  # js-ipfs' gRPC-over-websocket API: unused, any free port
        Delegates=[],
        Announce=[],
        NoAnnounce=[],
    )
    cfg["Addresses"] = addresses
    cfg["Bootstrap"] = []
    cfg["Discovery"] = {"MDNS": {"Enabled": False, "Interval": 10}, "webRTCStar": {"Enabled": False}}
    swarm = dict(cfg.get("Swarm") or {})
    swarm["DisableNatPortMap"] = True  # no UPnP/NAT-PMP traffic to the router
    swarm.setdefault("ConnMgr", {"LowWater": 50, "HighWater": 200})
    cfg["Swarm"] = swarm
    # Peers are connected explicitly; bitswap asks connected peers, so no DHT is needed.
    cfg["Routing"] = {"Type": "none"}
    cfg["Pubsub"] = {"Router": "gossipsub", "Enabled": False}
    return cfg


class IpfsDaemon:
    """One js-ipfs daemon with its repo in `repo_dir`, on free loopback ports."""

    def __init__(self, repo_dir: Path | str, name: str = "ipfs"):
        self.repo_dir = Path(repo_dir).resolve()
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"IpfsDaemon({self.name!r}, {str(self.repo_dir)!r}, pid={self.pid})"

    def __enter__(self) -> IpfsDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ files

    @property
    def config_path(self) -> Path:
        return self.repo_dir / "config"

    @property
    def pid_file(self) -> Path:
        return self.repo_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.repo_dir / LOG_FILE

    def _meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.repo_dir / META_FILE).read_text())
        except FileNotFoundError:
            raise IpfsDaemonError(f"{self.name}: repo {self.repo_dir} is not initialized: call init() first") from None

    def _config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)

    # ------------------------------------------------------------------ init

    def init(self) -> IpfsDaemon:
        """Create the repo if needed and (re)apply the loopback-only config. Idempotent: ports
        chosen the first time are kept, so swarm addresses stay stable across restarts."""
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            env = self._env()
            try:
                out = subprocess.run(
                    [node_binary(), str(jsipfs_cli()), "init", "--empty-repo"],
                    env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                )
            except subprocess.TimeoutExpired as e:
                raise IpfsDaemonError(f"{self.name}: `jsipfs init` did not finish within 120 s") from e
            if out.returncode != 0 or not self.config_path.exists():
                raise IpfsDaemonError(
                    f"{self.name}: `jsipfs init` failed in {self.repo_dir} (exit {out.returncode}): "
                    f"{(out.stderr or out.stdout).decode(errors='replace')[-2000:]}"
                )
        meta_path = self.repo_dir / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if not all(isinstance(meta.get(k), int) for k in ("swarm_port", "api_port", "gateway_port")):
            meta.update(self._pick_ports())
        meta["name"] = self.name
        self._write_json(meta_path, meta)
        self._apply_config(meta)
        return self

    @staticmethod
    def _pick_ports() -> dict[str, int]:
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        swarm, api, gateway = sorted(ports)
        return {"swarm_port": swarm, "api_port": api, "gateway_port": gateway}

    def _apply_config(self, meta: dict[str, Any]) -> None:
        cfg = loopback_config(self._config(), meta["swarm_port"], meta["api_port"], meta["gateway_port"])
        self._write_json(self.config_path, cfg)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IPFS_PATH"] = str(self.repo_dir)
        env["NO_UPDATE_NOTIFIER"] = "1"  # js-ipfs' CLI would otherwise ask the npm registry
        env.pop("DEBUG", None)
        # The gateway serves only blocks of this repo (gateway_local.cjs): never fetches for callers.
        env["FEDLEDGER_IPFS_BLOCKS"] = str(self.repo_dir / "blocks")
        preload = f'--require "{TCP_NODELAY}" --require "{GATEWAY_LOCAL}"'
        env["NODE_OPTIONS"] = f"{env['NODE_OPTIONS']} {preload}" if env.get("NODE_OPTIONS") else preload
        return env

    # ------------------------------------------------------------------ addresses

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._meta()['api_port']}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self._meta()['gateway_port']}"

    @property
    def peer_id(self) -> str:
        return self._config()["Identity"]["PeerID"]

    def swarm_addrs(self) -> list[str]:
        """Dialable multiaddrs of this node, with its peer ID."""
        return [f"/ip4/127.0.0.1/tcp/{self._meta()['swarm_port']}/p2p/{self.peer_id}"]

    def client(self, timeout: float = 30.0) -> IpfsClient:
        return IpfsClient(self.api_url, timeout=timeout)

    # ------------------------------------------------------------------ process

    @property
    def pid(self) -> int | None:
        if self._pid is not None:
            return self._pid
        return self._read_pid()

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and self._is_our_daemon(pid)

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _is_our_daemon(self, pid: int) -> bool:
        """A live js-ipfs daemon process serving this repo (not a recycled PID)."""
        if not pid_alive(pid):
            return False
        if self._proc is not None and self._proc.pid == pid:
            return True
        # js-ipfs sets process.title = "ipfs", which overwrites /proc/PID/cmdline; the
        # environment keeps IPFS_PATH.
        cmd = _cmdline(pid)
        if not cmd or not (cmd[0] == "ipfs" or any(part.endswith("cli.js") for part in cmd)):
            return False
        env = _env_of(pid)
        return bool(env) and Path(env.get("IPFS_PATH", "/nonexistent")).resolve() == self.repo_dir

    def _answers(self, timeout: float = 2.0) -> bool:
        try:
            r = httpx.post(f"{self.api_url}/api/v0/id", timeout=timeout, trust_env=False)
            return r.status_code == 200 and r.json().get("ID") == self.peer_id
        except (httpx.HTTPError, ValueError):
            return False

    def _clear_stale_state(self, deadline: float) -> None:
        """Remove what a killed daemon left behind: its pid file, lock and api file."""
        pid = self._read_pid()
        if pid is not None and not self._is_our_daemon(pid):
            self.pid_file.unlink(missing_ok=True)
            self._remove_lock()
            return
        lock = self.repo_dir / LOCK_DIR
        # A lock without a pid file of ours: someone else (a hand-started jsipfs?) holds the
        # repo, or a daemon died before we recorded it. proper-lockfile refreshes the lock's
        # mtime every 10 s; past its stale time nobody holds it.
        while lock.exists():
            try:
                age = time.time() - lock.stat().st_mtime
            except FileNotFoundError:
                break
            if age > LOCK_STALE_S + 2:
                self._remove_lock()
                break
            if time.monotonic() > deadline:
                raise IpfsDaemonError(
                    f"{self.name}: repo {self.repo_dir} is locked by another process ({lock} was refreshed "
                    f"{age:.0f} s ago); stop that IPFS daemon, or wait {LOCK_STALE_S:.0f} s if it was killed"
                )
            time.sleep(0.25)

    def _remove_lock(self) -> None:
        lock = self.repo_dir / LOCK_DIR
        if lock.is_dir():
            shutil.rmtree(lock, ignore_errors=True)
        else:
            lock.unlink(missing_ok=True)
        (self.repo_dir / API_FILE).unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> IpfsDaemon:
        """Start the daemon (initializing the repo if needed) and wait until its API answers.
        A daemon of this repo that is already running is adopted, not started twice."""
        deadline = time.monotonic() + timeout
        self.init()
        pid = self._read_pid()
        if pid is not None and self._is_our_daemon(pid):
            if self._wait_ready(pid, deadline, proc=None):
                self._pid = pid
                return self
        if self._answers():
            raise IpfsDaemonError(
                f"{self.name}: an IPFS daemon fedledger did not start already serves {self.repo_dir} on "
                f"{self.api_url}; stop it (jsipfs shutdown) and start again"
            )
        self._clear_stale_state(deadline)
        for attempt in range(3):
            proc = self._spawn()
            try:
                ready = self._wait_ready(proc.pid, deadline, proc=proc)
            except _PortInUse:
                self._reap(proc)
                if attempt == 2:
                    raise IpfsDaemonError(f"{self.name}: no free loopback ports after 3 attempts; see {self.log_file}")
                meta = self._meta()
                meta.update(self._pick_ports())
                self._write_json(self.repo_dir / META_FILE, meta)
                self._apply_config(meta)
                continue
            if not ready:
                self._reap(proc, kill=True)
                raise IpfsDaemonError(
                    f"{self.name}: IPFS API did not answer on {self.api_url} within {timeout:g} s; "
                    f"last log lines:\n{self._log_tail()}"
                )
            self._proc, self._pid = proc, proc.pid
            self.pid_file.write_text(f"{proc.pid}\n")
            return self
        raise AssertionError("unreachable")

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [node_binary(), str(jsipfs_cli()), "daemon", "--enable-preload=false"]
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            return subprocess.Popen(
                cmd, env=self._env(), cwd=self.repo_dir, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def _log_tail(self, n: int = 20) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(getattr(self, "_log_offset", 0))
                text = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.strip().splitlines()[-n:])

    def _wait_ready(self, pid: int, deadline: float, proc: subprocess.Popen[bytes] | None) -> bool:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = self._log_tail()
                if "EADDRINUSE" in tail:
                    raise _PortInUse(tail)
                raise IpfsDaemonError(
                    f"{self.name}: IPFS daemon exited with code {proc.returncode}; last log lines:\n{tail}"
                )
            if proc is not None and "EADDRINUSE" in self._log_tail():
                # js-ipfs may log the failed listen (its API or gateway port, taken since it was
                # picked) and keep running without it: retry on fresh ports, not wait for the deadline.
                raise _PortInUse(self._log_tail())
            if proc is None and not pid_alive(pid):
                return False
            if self._answers():
                # The answer must come from this process, not from a daemon that held the repo.
                return proc is None or proc.poll() is None
            time.sleep(0.1)
        return False

    def _reap(self, proc: subprocess.Popen[bytes], kill: bool = False) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if kill:
            self._remove_lock()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (js-ipfs then closes its repo cleanly); SIGKILL after `timeout`.
        Safe to call twice, on a daemon that crashed, or on one another process started."""
        pid = self.pid
        alive = pid is not None and self._is_our_daemon(pid)
        killed = False
        if alive:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self._wait_exit(pid, timeout):
                killed = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._wait_exit(pid, 10.0)
        elif self._proc is not None:
            self._proc.poll()  # reap
        self._proc, self._pid = None, None
        self.pid_file.unlink(missing_ok=True)
        if killed or (pid is not None and not alive):
            # A clean exit removes the lock and api file; a SIGKILL or crash leaves them behind.
            self._remove_lock()

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._proc is not None and self._proc.pid == pid:
                try:
                    self._proc.wait(timeout=max(0.0, min(0.2, end - time.monotonic())))
                    return True
                except subprocess.TimeoutExpired:
                    continue
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
        return not pid_alive(pid)

    def kill(self) -> None:
        """SIGKILL without cleanup, as a crash would; for tests of restart after a crash."""
        pid = self.pid
        if pid is not None and self._is_our_daemon(pid):
            os.kill(pid, signal.SIGKILL)
            self._wait_exit(pid, 10.0)
        self._proc, self._pid = None, None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repo_dir": str(self.repo_dir),
            "api_url": self.api_url,
            "peer_id": self.peer_id,
            "swarm_addrs": self.swarm_addrs(),
            "pid": self.pid,
        }


class _PortInUse(Exception):
    pass


def connect_all(daemons: Sequence[IpfsDaemon], timeout: float | None = None) -> None:
    """Swarm-connect every pair of daemons over 127.0.0.1 and wait until each sees the others.

    The n(n-1)/2 connections are made a few at a time in parallel; the default budget grows with
    them (30 s, or 0.1 s per pair beyond that)."""
    from concurrent.futures import ThreadPoolExecutor

    pairs = [(i, j) for i in range(len(daemons)) for j in range(i + 1, len(daemons))]
    timeout = timeout if timeout is not None else max(30.0, 0.1 * len(pairs))
    deadline = time.monotonic() + timeout
    clients = [d.client(timeout=timeout) for d in daemons]
    try:
        addrs = [d.swarm_addrs() for d in daemons]

        def connect(pair: tuple[int, int]) -> None:
            i, j = pair
            for addr in addrs[j]:
                while True:
                    try:
                        clients[i].swarm_connect(addr, timeout=max(1.0, deadline - time.monotonic()))
                        break
                    except IpfsError:
                        # A dial can fail while both sides are busy dialling others (js-ipfs:
                        # "All promises were rejected"); try again until the budget runs out.
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(connect, pairs))
        want = {d.peer_id for d in daemons}
        while True:
            missing = [
                (d.name, sorted(want - {d.peer_id} - set(c.swarm_peers()))) for d, c in zip(daemons, clients)
            ]
            missing = [(n, m) for n, m in missing if m]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise IpfsDaemonError(f"IPFS nodes not connected within {timeout:g} s: {missing}")
            time.sleep(0.1)
    finally:
        for c in clients:
            c.close()



def start_all(daemons: Sequence[IpfsDaemon], timeout: float = 90.0, parallel: int = 4) -> None:
    """Start several daemons, `parallel` at a time (each takes seconds of Node.js start-up; on two
    cores 25 started at once missed a 90 s budget), each with its own `timeout`.
    If any fails, the ones that started are stopped again and the first error is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(daemons)))) as pool:
        futures = [pool.submit(d.start, timeout) for d in daemons]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        for d in daemons:
            d.stop()
        raise failed[0]
