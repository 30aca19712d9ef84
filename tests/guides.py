"""Running a Markdown guide as written: every ```sh block in order (scripts/run_guide.sh), in a
fresh directory, with this checkout's `fedledger` first on PATH; whatever it started (IPFS
daemons, the devnet, node processes) is stopped when the test ends, pass or fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.node.chain.devnet import Devnet
from fedledger.node.storage.orgnode import OrgIpfsDaemon

ROOT = Path(__file__).resolve().parent.parent


def stop_guide_processes(run_dir: Path) -> None:
    for repo in run_dir.glob("*/ipfs"):
        OrgIpfsDaemon(repo).stop()
    if (run_dir / "devnet" / "devnet.json").exists():
        Devnet.load(run_dir / "devnet").down()


def run_guide(guide: Path, run_dir: Path, tmp_path: Path, request, timeout: float = 540) -> str:
    """Run `guide` in `run_dir`; its output. Fails the test, with the node logs, when the guide
    fails or takes longer than `timeout` seconds."""
    from tests.plugins.ipfs import require_jsipfs

    require_jsipfs()
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "fedledger").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fedledger.node.cli "$@"\n')
    (shim / "fedledger").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(ROOT / "scripts" / "run_guide.sh"), str(guide), str(run_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        stop_guide_processes(run_dir)

    request.addfinalizer(stop)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop()
        logs = "\n".join(p.read_text()[-2000:] for p in run_dir.glob("*/*.log"))
        pytest.fail(f"{guide} did not finish within {timeout:.0f} s; logs:\n{logs}")
    logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in run_dir.glob("*/node.log"))
    assert proc.returncode == 0, out[-6000:] + logs
    return out
