"""The one interface every method is driven through, and the loop that drives it.

Sequential on purpose: one `ask`, one objective call, one `tell`. Trials-to-target is then a plain
count, every method sees the same information at every step, and a method's own parallel tricks
(constant liar and the like) play no part. Each adapter owns the translation of the DyESP space into
its library's form and the direction (most peers only minimise); the values it is told are the
task's raw objective values.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from benchmarks import space as sp


@runtime_checkable
class Optimizer(Protocol):
    def ask(self) -> dict[str, Any]: ...

    def tell(self, params: dict[str, Any], value: float) -> None: ...


def run_trials(optimizer: Optimizer, task: Any, budget: int) -> dict[str, Any]:
    """Drive `optimizer` for `budget` trials; the trace of values, best-so-far and timings.

    Parameters the optimizer returns for inactive branches are dropped and numbers are snapped to
    their grid before the objective sees them, identically for every method. Repeated
    configurations count as trials: a method that re-proposes a point spends budget, as it would
    on a real training job.
    """
    params_list = sp.parse(task.space)
    values: list[float] = []
    best: list[float] = []
    ask_s: list[float] = []
    tell_s: list[float] = []
    configs: list[dict[str, Any]] = []
    extra: list[Any] = []
    current = None
    for _ in range(budget):
        t0 = time.perf_counter()
        raw = optimizer.ask()
        t1 = time.perf_counter()
        params = sp.clean(params_list, raw)
        value = float(task.objective(params))
        t2 = time.perf_counter()
        optimizer.tell(raw, value)
        t3 = time.perf_counter()
        current = value if current is None or task.better(value, current) else current
        values.append(value)
        best.append(current)
        configs.append(params)
        ask_s.append(t1 - t0)
        tell_s.append(t3 - t2)
        extra.append(getattr(optimizer, "last_info", None))
    out = {"values": values, "best": best, "ask_s": ask_s, "tell_s": tell_s, "params": configs}
    if any(e is not None for e in extra):
        out["info"] = extra
    return out
