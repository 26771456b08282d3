"""Our engine, in-process, through the same ask/tell loop as the peers.

Written against the engine team's interface (service/engine/optimizer.py):

    space = SearchSpace.from_dict(task.space)
    opt = EngineOptimizer(space, direction=..., seed=..., trainer=..., options=...)
    suggestion = opt.ask()          # suggestion.params: dict; suggestion.proposal.strategy: str
    opt.tell(suggestion, value)

The trainer is `service.training.train_pruner` (torch); None disables the learned pruner. The
ablations are separate methods so the report shows them side by side:
`dyesp` (scheduler + pruner), `dyesp-scheduler-only` (options={"pruner": False}, no trainer: the
pruner is off, so torch is not needed) and `dyesp-pruner-only` (options={"scheduler": False}).
The strategy that produced each suggestion is recorded in the trace (`last_info`).
`prior` (``service.engine.transfer.build_prior``) warm-starts the engine from finished studies;
the transfer benchmark (`benchmarks/transfer.py`) passes it, every other method leaves it None.
"""

from __future__ import annotations

from typing import Any


def _engine() -> tuple[Any, Any]:
    try:
        from service.engine.optimizer import Optimizer as EngineOptimizer
        from service.engine.space import SearchSpace
    except ImportError as exc:
        raise ImportError(
            "the DyESP engine is not importable (service.engine.optimizer / service.engine.space);"
            f" run from the repository root with the engine in place: {exc}") from exc
    return SearchSpace, EngineOptimizer


def _trainer() -> Any:
    try:
        from service.training import train_pruner
    except ImportError as exc:
        raise ImportError(f"the pruner's trainer (service.training.train_pruner, torch) is not "
                          f"importable: {exc}") from exc
    return train_pruner


class DyESP:
    """Scheduler and pruner, the engine's defaults; `options` / `use_trainer` select an ablation."""

    options: dict[str, Any] | None = None
    use_trainer: bool = True

    def __init__(self, task: Any, seed: int, options: dict[str, Any] | None = None,
                 use_trainer: bool | None = None, prior: Any = None) -> None:
        search_space, engine_optimizer = _engine()
        options = self.options if options is None else options
        use_trainer = self.use_trainer if use_trainer is None else use_trainer
        self.opt = engine_optimizer(
            search_space.from_dict(task.space), direction=task.direction, seed=seed,
            trainer=_trainer() if use_trainer else None,
            options=dict(options) if options else None, prior=prior)
        self._pending: dict[int, Any] = {}
        self.last_info: dict[str, Any] | None = None

    def ask(self) -> dict[str, Any]:
        suggestion = self.opt.ask()
        params = dict(suggestion.params)
        proposal = getattr(suggestion, "proposal", None)
        self.last_info = {"strategy": getattr(proposal, "strategy", None)}
        self._pending[id(params)] = suggestion
        return params

    def tell(self, params: dict[str, Any], value: float) -> None:
        self.opt.tell(self._pending.pop(id(params)), float(value))


class DyESPSchedulerOnly(DyESP):
    options = {"pruner": False}
    use_trainer = False


class DyESPPrunerOnly(DyESP):
    options = {"scheduler": False}
