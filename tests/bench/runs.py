"""Made-up benchmark runs for the tests of the tools that read the run cache."""

from __future__ import annotations

from pathlib import Path

from benchmarks.runner import run_path, write_record


def store_run(root: Path, task: str, method: str, seed: int, reached_at: int | None,
              budget: int = 20) -> None:
    """A run whose best value drops under the toy tasks' target (0.1) at trial ``reached_at``
    (never when None)."""
    best = [1.0] * budget
    if reached_at is not None:
        best[reached_at - 1:] = [0.05] * (budget - reached_at + 1)
    write_record(run_path(root, task, method, seed, budget),
                 {"task": task, "method": method, "seed": seed, "budget": budget, "best": best})
