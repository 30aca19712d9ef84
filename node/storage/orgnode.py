"""An organisation's own dev IPFS node (`fedledger ipfs ...`): the loopback dev daemon, plus a swarm
on an address other organisations dial, fixed ports if wanted, a bootstrap list of the other
organisations' nodes, and a read-only gateway beside the swarm. In production this is Kubo."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError, StorageError
from ..procs import free_port
from .daemon import META_FILE, IpfsDaemon, loopback_config


_MULTIADDR = re.compile(r"^/(ip4|ip6|dns4|dns6|dns)/[^/]+/tcp/\d{1,5}/(p2p|ipfs)/[1-9A-HJ-NP-Za-km-z]{20,}$")


def check_multiaddr(addr: str) -> str:
    if not _MULTIADDR.match(addr.strip()):
        raise InputError(f"{addr!r} is not a dialable peer multiaddr; expected /ip4/ADDR/tcp/PORT/p2p/PEER_ID "
                       "(`fedledger ipfs init` or `ipfs id` on the other organisation's node prints it)")
    return addr.strip()


class OrgIpfsDaemon(IpfsDaemon):
    """An organisation's dev IPFS node: the loopback-only dev daemon, plus what an organisation
    needs to take part from its own host: the swarm listening on a chosen address (so other
    organisations can connect), fixed ports if wanted, and a bootstrap list of the other
    organisations' nodes that the daemon dials by itself (and redials), as Kubo's
    Bootstrap/Peering lists do in production. The RPC API always stays on 127.0.0.1; the
    read-only HTTP gateway listens beside the swarm, for the other organisations' peers to fetch
    what this one stored (hash-checked by them, like everything they download).

    Settings given once are kept in the repo's fedledger-ipfs.json and reused by later starts."""

    def __init__(self, repo_dir: Path | str, name: str | None = None, *, swarm_host: str | None = None,
                 swarm_port: int | None = None, api_port: int | None = None,
                 bootstrap: list[str] | None = None, gateway_port: int | None = None):
        if name is None:  # the name given at init, else a neutral one
            try:
                name = json.loads((Path(repo_dir) / META_FILE).read_text()).get("name") or "ipfs"
            except (OSError, ValueError):
                name = "ipfs"
        super().__init__(repo_dir, name)
        if swarm_host is not None:
            try:
                ip = ipaddress.IPv4Address(swarm_host)
            except ValueError:
                raise InputError(f"--swarm-host {swarm_host!r} is not an IPv4 address") from None
            if ip.is_unspecified:
                raise InputError("--swarm-host must be the address other organisations dial, not 0.0.0.0")
        self._want: dict[str, Any] = {"swarm_host": swarm_host, "swarm_port": swarm_port, "api_port": api_port,
                                      "gateway_port": gateway_port,
                                      "bootstrap": [check_multiaddr(a) for a in bootstrap] if bootstrap is not None else None}

    def _pick_ports(self) -> dict[str, int]:  # type: ignore[override]
        fixed = {k: self._want[k] for k in ("swarm_port", "api_port", "gateway_port") if self._want.get(k)}
        if len(set(fixed.values())) < len(fixed):
            raise InputError(f"the swarm, API and gateway ports must differ, got {fixed}")
        ports = set(fixed.values())
        out = dict(fixed)
        for key in ("swarm_port", "api_port", "gateway_port"):
            if key not in out:
                p = free_port()
                while p in ports:
                    p = free_port()
                out[key] = p
                ports.add(p)
        return out

    def _apply_config(self, meta: dict[str, Any]) -> None:
        for key, value in self._want.items():
            if value is not None:
                meta[key] = value
        self._write_json(self.repo_dir / META_FILE, meta)
        cfg = loopback_config(self._config(), meta["swarm_port"], meta["api_port"], meta["gateway_port"])
        cfg["Addresses"]["Swarm"] = [f"/ip4/{meta.get('swarm_host', '127.0.0.1')}/tcp/{meta['swarm_port']}"]
        cfg["Addresses"]["Gateway"] = f"/ip4/{meta.get('swarm_host', '127.0.0.1')}/tcp/{meta['gateway_port']}"
        cfg["Bootstrap"] = list(meta.get("bootstrap") or [])
        self._write_json(self.config_path, cfg)

    @property
    def swarm_host(self) -> str:
        return self._meta().get("swarm_host", "127.0.0.1")

    @property
    def bootstrap(self) -> list[str]:
        return list(self._meta().get("bootstrap") or [])

    def swarm_addrs(self) -> list[str]:
        return [f"/ip4/{self.swarm_host}/tcp/{self._meta()['swarm_port']}/p2p/{self.peer_id}"]

    @property
    def gateway_url(self) -> str:  # type: ignore[override]
        return f"http://{self.swarm_host}:{self._meta()['gateway_port']}"

    def dial_bootstrap(self, timeout: float = 5.0) -> dict[str, str]:
        """Dial every bootstrap peer once now (the daemon keeps redialling them on its own);
        returns multiaddr -> "connected" or the reason it failed (the peer may not be up yet)."""
        out = {}
        with self.client(timeout=timeout) as client:
            for addr in self.bootstrap:
                try:
                    client.swarm_connect(addr, timeout=timeout)
                    out[addr] = "connected"
                except StorageError as exc:
                    reason = "not reachable yet" if "rejected" in str(exc) else str(exc)
                    out[addr] = f"{reason} (the daemon keeps redialling)"
        return out

    def describe(self) -> dict[str, Any]:
        running = self.running
        meta = self._meta()
        info: dict[str, Any] = {"repo": str(self.repo_dir), "name": self.name, "running": running,
                                "api_url": self.api_url, "peer_id": self.peer_id, "swarm_addrs": self.swarm_addrs(),
                                "swarm_port": meta["swarm_port"], "api_port": meta["api_port"],
                                "gateway_url": self.gateway_url,
                                "bootstrap": self.bootstrap, "pid": self.pid if running else None}
        if running:
            try:
                with self.client(timeout=5) as c:
                    info["connected_peers"] = c.swarm_peers()
            except StorageError:
                info["connected_peers"] = None
        return info
