"""When, and at which commit, a benchmark measured: every results file in bench/results records both.

    from provenance import stamp
    doc = {**stamp(), "rows": rows}    # {"measured_at": "2026-12-01T10:00:00Z", "commit": "1a2b3c4", ...}

`commit` is `git rev-parse --short HEAD`, with `-dirty` appended when tracked files other than
results and prose (bench/results, docs, *.md) differ from it (the code measured is then not
exactly that commit), and
"unknown" outside a git checkout. bench/report.py prints both next to every table it generates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit() -> str:
    """The commit the working tree is at, `-dirty` when tracked code differs from it."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    # Results and prose do not change what is measured; anything else that differs does.
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results",
                   ":(exclude)docs", ":(exclude)*.md")
    return f"{head}-dirty" if changed else head


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stamp() -> dict[str, str]:
    """`measured_at` (UTC) and `commit`, for a results file or one part of it."""
    return {"measured_at": now(), "commit": commit()}


def write_results(out: Path, args: Any, started: float, **fields: Any) -> None:
    """Write an in-process bench's results: stamp, its command-line arguments as `config`, the given
    fields and the seconds since `started`; say where."""
    doc = {**stamp(), **fields, "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "seconds": round(time.time() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
