"""hyperopt's TPE (`tpe.suggest`, its defaults: 20 random start-up trials, 24 EI candidates).

hyperopt has no public ask/tell, so we do what `fmin` does inside its loop: `tpe.suggest` for one
new trial id, insert the trial document, and at `tell` mark it done with `{"loss", "status": ok}`
and refresh. The per-call seed comes from `np.random.default_rng(seed)`, as `fmin(rstate=...)` does.
hyperopt only minimises, so maximised objectives are negated.

Space mapping: categorical -> hp.choice; float -> hp.uniform / hp.loguniform (hp.quniform for a
step); int -> hp.quniform / hp.qloguniform over [low - 0.5, high + 0.5] (q = step) so the end
values get their full share; values are snapped onto the param's grid by the harness.
Conditional params use hyperopt's own idiom, a nested hp.choice, when the parent is categorical:
each parent value's branch holds the children active under it (labels made unique per branch).
Children of a numeric parent cannot be nested; they are sampled always and dropped when inactive.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from benchmarks import space as sp


def _leaf(p: sp.Param, label: str) -> Any:
    from hyperopt import hp

    if p.type == "float":
        if p.log:
            return hp.loguniform(label, math.log(p.low), math.log(p.high))
        if p.step:
            return hp.quniform(label, p.low - p.step / 2, p.high + p.step / 2, p.step)
        return hp.uniform(label, p.low, p.high)
    if p.type == "int":
        step = int(p.step or 1)
        if p.log:
            return hp.qloguniform(label, math.log(p.low - 0.5), math.log(p.high + 0.5), 1)
        return hp.quniform(label, p.low - step / 2, p.high + step / 2, step)
    raise AssertionError(p.type)


def build_space(params: list[sp.Param]) -> dict[str, Any]:
    """A hyperopt expression whose evaluation is a (possibly nested) dict of param values."""
    from hyperopt import hp

    children: dict[str, list[sp.Param]] = {}
    for p in params:
        if p.parent is not None:
            children.setdefault(p.parent, []).append(p)
    by_name = {p.name: p for p in params}

    def nestable(p: sp.Param) -> bool:
        return p.parent is not None and by_name[p.parent].type == "categorical"

    def node(p: sp.Param, suffix: str) -> dict[str, Any]:
        label = p.name + suffix
        kids = [c for c in children.get(p.name, []) if nestable(c)]
        if p.type != "categorical":
            return {p.name: _leaf(p, label)}
        if not kids:
            return {p.name: hp.choice(label, list(p.choices))}
        branches = []
        for i, choice in enumerate(p.choices):
            branch: dict[str, Any] = {p.name: choice}
            for c in kids:
                if any(sp.same_value(choice, v) for v in c.parent_values):
                    branch[f"__{c.name}"] = node(c, f"{suffix}|{p.name}={i}")
            branches.append(branch)
        return {f"__{p.name}": hp.choice(label, branches)}

    expr: dict[str, Any] = {}
    for p in params:
        if not nestable(p):
            expr.update(node(p, ""))
    return expr


def flatten(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k.startswith("__") and isinstance(v, dict):
            out.update(flatten(v))
        else:
            out[k] = sp.to_builtin(v)
    return out


class HyperoptTPE:
    def __init__(self, task: Any, seed: int) -> None:
        from hyperopt import Trials
        from hyperopt.base import Domain

        logging.getLogger("hyperopt").setLevel(logging.WARNING)
        self.params = sp.parse(task.space)
        self.sign = 1.0 if task.direction == "minimize" else -1.0
        self.expr = build_space(self.params)
        self.domain = Domain(lambda _: 0.0, self.expr)  # fn is never called: we evaluate
        self.trials = Trials()
        self.rstate = np.random.default_rng(seed)
        self._pending: dict[int, dict] = {}

    def ask(self) -> dict[str, Any]:
        from hyperopt import space_eval, tpe

        new_ids = self.trials.new_trial_ids(1)
        self.trials.refresh()
        docs = tpe.suggest(new_ids, self.domain, self.trials,
                           int(self.rstate.integers(2**31 - 1)))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()
        doc = docs[0]
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if len(v)}
        config = flatten(space_eval(self.expr, vals))
        self._pending[id(config)] = doc["tid"]
        return config

    def tell(self, params: dict[str, Any], value: float) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_OK

        tid = self._pending.pop(id(params))
        for trial in self.trials._dynamic_trials:  # as fmin's own serial loop does
            if trial["tid"] == tid:
                trial["state"] = JOB_STATE_DONE
                trial["result"] = {"loss": self.sign * float(value), "status": STATUS_OK}
                break
        else:
            raise KeyError(f"hyperopt trial {tid} not found")
        self.trials.refresh()
