"""Run the Flower side of the benchmarks as a Flower user would, on 127.0.0.1 only.

    deployment   one `flower-superlink` and N `flower-supernode` processes (one per client, each
                 with ``--node-config "partition-id=i num-partitions=N"``), then `flwr run`
    simulation   `flower-superlink --simulation`, then `flwr run --federation-config
                 num-supernodes=N` (Flower's Simulation Runtime on Ray, Flower's default client
                 resources)

Everything runs from the .venv-bench environment (flwr 1.42 + Ray, torch, scikit-learn and
fedledger installed with --no-deps), with a private FLWR_HOME per run, telemetry, update checks
and runtime dependency installation off, and Ray pinned to the loopback address: nothing leaves
the machine and nothing is downloaded. Imported by bench/round_overhead.py and bench/scale.py
(which run in .venv); this module itself needs only the standard library and httpx.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

APP_DIR = Path(__file__).resolve().parent
REPO = APP_DIR.parent.parent
BENCH_VENV = Path(os.environ.get("FEDLEDGER_BENCH_VENV", REPO / ".venv-bench"))


class FlowerRunError(RuntimeError):
    """The Flower run did not finish; the message names the log to read."""


def bench_bin(name: str) -> Path:
    path = BENCH_VENV / "bin" / name
    if not path.exists():
        raise FlowerRunError(
            f"{path} not found: the Flower comparison needs the bench venv "
            f"({BENCH_VENV}) with flwr[simulation]==1.42.0, torch==2.13.0, scikit-learn and fedledger "
            "(pip install --no-deps -e .); see docs/bench.md")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray binds to the loopback address instead of the machine's outward IP.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{BENCH_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("VIRTUAL_ENV", None)
    return env


def _wait_health(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FlowerRunError(f"flower-superlink exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise FlowerRunError(f"flower-superlink did not answer on 127.0.0.1:{port} within {timeout:g} s; see {log}")


class _Procs:
    """Processes we started, each in its own session, ended by process group on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
        fh = open(log, "ab")
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                             start_new_session=True)
        fh.close()
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Children of a group leader (superexec, ClientApp, Ray workers) may outlive it: end the groups.
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if p.poll() is None:
                p.wait(timeout=5)


def run_flower(mode: str, clients: int, rounds: int, work: Path, *, seed: int = 0, partition: str = "dirichlet:0.5",
               fraction_evaluate: float = 1.0, timeout: float = 3600.0, task: str = "digits-mlp", lr: float | None = None,
               say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict:
    """Run the app in ``mode`` ("deployment" or "simulation"); returns the ServerApp's results
    (see fedbench/server_app.py) plus ``wall_seconds`` from the first process started to the
    results file, and ``run_dir``. ``task`` is a fedledger built-in workload; ``lr`` replaces the
    app's learning rate (pyproject.toml) when given."""
    if mode not in ("deployment", "simulation"):
        raise ValueError(f"mode must be deployment or simulation, not {mode!r}")
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    home = work / "flwr-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
        f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    results = work / "flower-results.json"
    if results.exists():
        results.unlink()
    env = flower_env(home)
    procs = _Procs()
    t0 = time.time()
    try:
        link_cmd = [str(bench_bin("flower-superlink")), "--insecure", "--host", "127.0.0.1", "--port", str(port),
                    "--disable-runtime-dependency-installation"]
        if mode == "simulation":
            link_cmd.append("--simulation")
        link = procs.start(link_cmd, work / "superlink.log", env, work)
        _wait_health(port, link, work / "superlink.log")
        if mode == "deployment":
            for i in range(clients):
                procs.start([str(bench_bin("flower-supernode")), "--insecure", "--superlink", f"127.0.0.1:{port}",
                             "--host", "127.0.0.1", "--port", str(free_port()),
                             "--node-config", f"partition-id={i} num-partitions={clients}"],
                            work / f"supernode{i}.log", env, work)
            say(f"flower {mode}: superlink on 127.0.0.1:{port}, {clients} supernodes")
        else:
            say(f"flower {mode}: superlink --simulation on 127.0.0.1:{port}, {clients} virtual supernodes")
        run_config = (f"num-server-rounds={rounds} num-clients={clients} seed={seed} partition='{partition}' "
                      f"fraction-evaluate={fraction_evaluate} results-path='{results}' mode='{mode}' task='{task}'"
                      + (f" lr={lr}" if lr is not None else ""))
        cmd = [str(bench_bin("flwr")), "run", str(APP_DIR), "bench", "--stream", "--run-config", run_config]
        if mode == "simulation":
            cmd += ["--federation-config", f"num-supernodes={clients}"]
        runner = procs.start(cmd, work / "flwr-run.log", env, work)
        deadline = time.monotonic() + timeout
        last = ""
        while not results.exists():
            if time.monotonic() > deadline:
                raise FlowerRunError(f"flower {mode} did not finish within {timeout:.0f} s; see {work}/*.log")
            if link.poll() is not None:
                raise FlowerRunError(f"flower-superlink exited with {link.returncode}; see {work}/superlink.log")
            line = _progress(work / "flwr-run.log")
            if line and line != last:
                say(f"flower {mode}: {line}")
                last = line
            if runner.poll() is not None and not results.exists():
                time.sleep(2)  # the stream may end just before the ServerApp's file lands
                if not results.exists():
                    raise FlowerRunError(f"`flwr run` exited with {runner.returncode} and no results; "
                                         f"see {work}/flwr-run.log")
            time.sleep(0.5)
        doc = json.loads(results.read_text())
        doc["wall_seconds"] = round(time.time() - t0, 2)
        doc["run_dir"] = str(work)
        errors = sum(r["errors"] for r in doc["rounds"])
        if errors:
            raise FlowerRunError(f"flower {mode}: {errors} client replies were errors; see {work}/flwr-run.log")
        return doc
    finally:
        procs.stop()


def _progress(log: Path) -> str:
    """The last `[ROUND r/R]` line of the streamed ServerApp log, if any."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 8192))
            tail = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    marks = [ln for ln in tail.splitlines() if "[ROUND " in ln]
    if not marks:
        return ""
    return marks[-1][marks[-1].index("[ROUND "):].strip()
