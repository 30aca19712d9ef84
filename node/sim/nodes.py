"""Starting a simulated organisation's node: a separate `fedledger node run` process, its
keystore password in its environment only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The environment variable that carries the simulation's keystore password to its node processes.
PASSWORD_ENV = "FEDLEDGER_SIM_PASSWORD"


def spawn_node(config_path: Path, log_path: Path, password: str) -> subprocess.Popen:
    env = dict(os.environ)
    env[PASSWORD_ENV] = password
    env.setdefault("OMP_NUM_THREADS", "1")
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "fedledger.node.cli", "node", "run", "--config", str(config_path)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    log.close()
    return proc
