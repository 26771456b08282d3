"""LCBench via YAHPO Gym's ONNX surrogate: an MLP's depth/width and training hyperparameters.

The data lives outside the repository (`../shared/data/yahpo_lcbench`, or `$DYESP_LCBENCH_DIR`)
and is read at run time. We call the ONNX model with onnxruntime directly: the `yahpo-gym` package
pins ConfigSpace<=0.6.1 and numpy<2, which would clash with the peers.

The objective is the surrogate's validation accuracy (0-100, maximised) at the full budget of 52
epochs; the surrogate is deterministic, so there is no seed to average. The space is continuous,
so optimum/target/worst are estimated from 100,000 uniform random configurations drawn with a
fixed seed (a method may beat the estimated optimum; its regret is then 0). The estimates are
cached in `benchmarks/results/lcbench_references.json` (recomputed in ~4 s when missing).

Chosen OpenML tasks: 126025 (adult), 167168 (vehicle), 189906 (segment): different sizes and
difficulty, none with a saturated top (the top 0.5% sits 5-7 accuracy points below the optimum),
and none tuned against.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks.space import parse
from benchmarks.tasks.base import Task, reference_values

TASK_IDS = ("126025", "167168", "189906")
# Held out (DyESP's developers' guide): never used to tune the engine, only to check it.
HELDOUT_TASK_IDS = ("3945", "7593", "34539", "168868", "189873")
EPOCH = 52
N_REFERENCE = 100_000
REFERENCE_SEED = 0
REFERENCES_FILE = Path(__file__).resolve().parents[1] / "results" / "lcbench_references.json"

# Order of the surrogate's continuous input (after epoch), see the data README.
INPUT_ORDER = ("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers",
               "max_units", "max_dropout")

SPACE = {"params": [
    {"name": "num_layers", "type": "int", "low": 1, "high": 5},
    {"name": "max_units", "type": "int", "low": 64, "high": 1024, "log": True},
    {"name": "max_dropout", "type": "float", "low": 0.0, "high": 1.0},
    {"name": "batch_size", "type": "int", "low": 16, "high": 512, "log": True},
    {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    {"name": "momentum", "type": "float", "low": 0.1, "high": 0.99},
    {"name": "weight_decay", "type": "float", "low": 1e-5, "high": 0.1},
]}


def data_dir() -> Path:
    env = os.environ.get("DYESP_LCBENCH_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "yahpo_lcbench"


@lru_cache(maxsize=1)
def _session():
    """One single-threaded onnxruntime session per process (workers share 2 cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(data_dir() / "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])


@lru_cache(maxsize=1)
def _codes() -> dict[str, int]:
    with open(data_dir() / "encoding.json") as fh:
        return json.load(fh)["OpenML_task_id"]


def predict(task_id: str, rows: np.ndarray, epochs: np.ndarray | float = EPOCH) -> np.ndarray:
    """Validation accuracy for rows of the raw inputs in INPUT_ORDER (epoch is prepended).

    `epochs` is one epoch for every row (the default: the full budget) or one per row.
    """
    sess = _session()
    epoch_col = np.broadcast_to(np.asarray(epochs, dtype=float), (len(rows),))
    x_cont = np.column_stack([epoch_col, rows]).astype(np.float32)
    x_cat = np.full((len(rows), 1), _codes()[task_id], dtype=np.int32)
    out = sess.run(None, {sess.get_inputs()[0].name: x_cat, sess.get_inputs()[1].name: x_cont})
    return out[0][:, 1].astype(float)  # column 1 = val_accuracy


def predict_curve(task_id: str, row: np.ndarray | tuple) -> np.ndarray:
    """The learning curve of one configuration: val_accuracy at epochs 1..EPOCH, one ONNX call.

    Its last value is exactly `predict(task_id, [row])` (same float32 rows, checked in the tests).
    """
    epochs = np.arange(1, EPOCH + 1, dtype=float)
    return predict(task_id, np.tile(np.asarray(row, dtype=float), (EPOCH, 1)), epochs)


class LCBenchObjective:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._cache: dict[tuple, float] = {}
        self._curves: dict[tuple, np.ndarray] = {}

    def __call__(self, params: dict) -> float:
        row = tuple(float(params[n]) for n in INPUT_ORDER)
        if row not in self._cache:
            self._cache[row] = float(predict(self.task_id, np.asarray([row]))[0])
        return self._cache[row]

    def curve(self, params: dict) -> np.ndarray:
        """val_accuracy at epochs 1..EPOCH (index e - 1), cached per configuration."""
        row = tuple(float(params[n]) for n in INPUT_ORDER)
        if row not in self._curves:
            self._curves[row] = predict_curve(self.task_id, row)
        return self._curves[row]

    def at_epoch(self, params: dict, epoch: int) -> float:
        if not 1 <= epoch <= EPOCH:
            raise ValueError(f"epoch must be within [1, {EPOCH}], got {epoch}")
        return float(self.curve(params)[epoch - 1])


def random_rows(n: int, seed: int) -> np.ndarray:
    """n uniform configurations of SPACE (ints snapped, logs log-uniform) in INPUT_ORDER."""
    rng = np.random.default_rng(seed)
    by_name = {p.name: p for p in parse(SPACE)}
    cols = []
    for name in INPUT_ORDER:
        p = by_name[name]
        if p.type == "int":
            lo, hi = p.low - 0.5, p.high + 0.5
            if p.log:
                raw = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
            else:
                raw = rng.uniform(lo, hi, n)
            cols.append(np.clip(np.round(raw), p.low, p.high))
        elif p.log:
            cols.append(np.exp(rng.uniform(np.log(p.low), np.log(p.high), n)))
        else:
            cols.append(rng.uniform(p.low, p.high, n))
    return np.column_stack(cols)


def references(task_id: str) -> dict[str, float]:
    """optimum/target/worst from N_REFERENCE random configs; cached on disk by task id."""
    key = f"{task_id}@epoch{EPOCH}/n{N_REFERENCE}/seed{REFERENCE_SEED}"
    cache: dict = {}
    if REFERENCES_FILE.exists():
        with open(REFERENCES_FILE) as fh:
            cache = json.load(fh)
    if key not in cache:
        values = predict(task_id, random_rows(N_REFERENCE, REFERENCE_SEED))
        cache[key] = reference_values(values, "maximize")
        REFERENCES_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = REFERENCES_FILE.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(cache, fh, indent=1, sort_keys=True)
        os.replace(tmp, REFERENCES_FILE)  # atomic: parallel workers may race here
    return cache[key]


def make(task_id: str) -> Task:
    if task_id not in _codes():
        raise ValueError(f"unknown LCBench OpenML task {task_id!r}")
    return Task(name=f"lcbench/{task_id}", space=SPACE, direction="maximize",
                objective=LCBenchObjective(task_id), n_configs=N_REFERENCE,
                description=f"LCBench (YAHPO surrogate) OpenML task {task_id}: "
                            f"validation accuracy at epoch {EPOCH}",
                **references(task_id))
