"""`fedledger sim`: every option is declared once, in `sim.options.SimOptions` (and the training
options in `training.config.TrainingConfig`); this module only turns them into a command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ..sim.options import SimOptions
from ..training.config import TrainingConfig
from .output import EXIT_CODES_HELP, add_options, deprecated, pick, reflow, reporting

TRAINING = "Local training (default: the workload's)"


@add_options(TrainingConfig, exclude=("seed",), unset_default=True, panel=TRAINING)
@add_options(SimOptions)
@reflow
def sim(task: Optional[str] = typer.Option(None, "--task", hidden=True, help="Deprecated: --workload."),
        **options: Any) -> None:
    """Simulate a consortium on this machine: N organisations, each a separate node process with its
    own key and IPFS node, federate on a local Anvil chain. Writes OUT/report.json and OUT/accuracy.png.

    Every option is checked before anything starts."""
    console = Console(stderr=True)
    if task is not None:
        deprecated("--task NAME (the built-in model and data)", "--workload NAME")
        options["workload"] = task
    with reporting():
        from ..sim.run import run_sim

        opts = SimOptions(**pick(SimOptions, options), training=pick(TrainingConfig, options, drop_none=True))
        opts.check()
        started = time.time()
        try:
            report = run_sim(opts, say=lambda line: console.print(f"[dim]{time.time() - started:6.1f}s[/dim] {line}"))
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None
    print_rounds(report)
    print(f"final accuracy {report['final_accuracy']:.4f} (centralized baseline {report['centralized_accuracy']:.4f})")
    out = Path(opts.out)
    print(f"report: {out / 'report.json'}   plot: {out / 'accuracy.png'}")


def print_rounds(report: dict) -> None:
    from rich.table import Table

    table = Table(title="rounds", title_justify="left")
    for col in ("round", "leader", "attempts", "updates", "accuracy", "gas", "seconds", "global model sha256"):
        table.add_column(col, no_wrap=True)
    for r in report["rounds"]:
        attempts = " ".join(f"{a['leader']}:{a['outcome']}" for a in r["attempts"])
        table.add_row(str(r["round"]), r["leader"], attempts, str(len(r["participants"])), f"{r['accuracy']:.4f}",
                      f"{r['gas_used']:,}", f"{r['seconds']['total']:.2f}", r["model_sha256"][:16])
    Console(width=140).print(table)


def register(app: typer.Typer) -> None:
    app.command("sim", epilog=EXIT_CODES_HELP)(sim)
