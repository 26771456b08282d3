"""Training the pruner with torch, outside the pure engine (DESIGN rules 1 and 8).

Only workers and benchmarks import this package; the API process never does.
"""

from service.training.torch_mlp import TrainOptions, evaluate, train_pruner

__all__ = ["TrainOptions", "evaluate", "train_pruner"]
