"""Task names -> factories. `DEV_TASKS` is the development suite of the issue.

Factories are cached per process (`get_task`), so a worker building the same task for many runs
loads its table once. Other datasets of the same families are registered too (not in the default
suite), for held-out checks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from functools import cache, partial

from benchmarks.tasks import hpobench, hpolib, lcbench, nasbench201
from benchmarks.tasks.base import Task

FACTORIES: dict[str, Callable[[], Task]] = {}
for _d in hpolib.DATASETS:
    FACTORIES[f"hpolib/{_d}"] = partial(hpolib.make, _d)
for _d in hpobench.DATASETS:
    FACTORIES[f"hpobench/{_d}"] = partial(hpobench.make, _d)
for _d in nasbench201.DATASETS:
    FACTORIES[f"nb201/{_d}"] = partial(nasbench201.make, _d)
    FACTORIES[f"nb201-cell/{_d}"] = partial(nasbench201.make_cell, _d)
for _t in lcbench.TASK_IDS:
    FACTORIES[f"lcbench/{_t}"] = partial(lcbench.make, _t)

DEV_TASKS: tuple[str, ...] = (
    "hpolib/naval_propulsion", "hpolib/parkinsons_telemonitoring",
    "hpobench/car", "hpobench/phoneme", "hpobench/vehicle", "hpobench/australian",
    "nb201/cifar10",
    *(f"lcbench/{t}" for t in lcbench.TASK_IDS),
)


def register(name: str, factory: Callable[[], Task]) -> None:
    FACTORIES[name] = factory


def _factory(name: str) -> Callable[[], Task] | None:
    """A registered task's factory, or any LCBench task of the ONNX surrogate by its OpenML id
    (``lcbench/<id>``, e.g. the held-out ones): usable by name, yet never a transfer donor or a
    match of a glob, which see only the registered tasks."""
    if name in FACTORIES:
        return FACTORIES[name]
    family, _, arg = name.partition("/")
    if family == "lcbench" and arg.isdigit():
        return partial(lcbench.make, arg)
    return None


@cache
def get_task(name: str) -> Task:
    factory = _factory(name)
    if factory is None:
        raise KeyError(f"unknown task {name!r}; known: {sorted(FACTORIES)} and lcbench/<id>")
    return factory()


def task_names(patterns: str | None = None) -> list[str]:
    """Expand a comma list of names/globs ("hpobench/*,nb201/cifar10"); None -> DEV_TASKS."""
    if not patterns:
        return list(DEV_TASKS)
    names: list[str] = []
    for pat in (p.strip() for p in patterns.split(",") if p.strip()):
        pool = list(DEV_TASKS) + [n for n in FACTORIES if n not in DEV_TASKS]
        hits = [n for n in pool if fnmatch.fnmatchcase(n, pat)]
        if not hits and _factory(pat) is not None:
            hits = [pat]
        if not hits:
            raise KeyError(f"no task matches {pat!r}; known: {sorted(FACTORIES)}")
        names.extend(h for h in hits if h not in names)
    return names
