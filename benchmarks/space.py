"""A small, dependency-free reading of the DyESP space format for the benchmark harness.

Why not `service.engine.space`? The peers' adapters and random search must keep working while the
engine team changes its internals, and the harness must never be the thing that tells the engine
how to read a space. This module only covers what the adapters need: parameters in parent-first
order, whether a parameter is active, uniform sampling, and snapping a peer's number back onto the
param's grid (peers report 0.6000000000000001 for a 0.3-step float; ints come back as floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    parent: str | None = None
    parent_values: tuple[Any, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.type in ("float", "int")

    def grid(self) -> list[float] | None:
        """The finite list of values of a stepped numeric param, else None."""
        if not self.is_numeric:
            return None
        step = self.step if self.step is not None else (1 if self.type == "int" else None)
        if step is None:
            return None
        n = round((self.high - self.low) / step) + 1
        values = [self.low + i * step for i in range(n)]
        return [round(v) for v in values] if self.type == "int" else values

    def snap(self, value: Any) -> Any:
        """Bring a peer's raw value onto the domain: clip, round to the step, cast ints."""
        if not self.is_numeric:
            return value
        v = min(max(float(value), self.low), self.high)
        step = self.step if self.step is not None else (1 if self.type == "int" else None)
        if step is not None:
            v = self.low + round((v - self.low) / step) * step
            v = min(max(v, self.low), self.high)
        return round(v) if self.type == "int" else float(v)

    def sample(self, rng: np.random.Generator) -> Any:
        if self.type == "categorical":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.log:
            lo, hi = self.low, self.high
            if self.type == "int":  # the end values get a full-width share
                lo, hi = lo - 0.5, hi + 0.5
            return self.snap(math.exp(rng.uniform(math.log(max(lo, 1e-300)), math.log(hi))))
        grid = self.grid()
        if grid is not None:
            return grid[int(rng.integers(len(grid)))]
        return self.snap(rng.uniform(self.low, self.high))


def parse(space: dict) -> list[Param]:
    """Params of a space dict in parent-first order (children after the param they depend on)."""
    params = []
    for item in space["params"]:
        cond = item.get("condition") or {}
        params.append(Param(
            name=item["name"], type=item["type"], low=item.get("low"), high=item.get("high"),
            log=bool(item.get("log") or False), step=item.get("step"),
            choices=tuple(item.get("choices") or ()), parent=cond.get("parent"),
            parent_values=tuple(cond.get("values") or ())))
    by_name = {p.name: p for p in params}
    ordered: list[Param] = []
    done: set[str] = set()

    def visit(p: Param, depth: int = 0) -> None:
        if p.name in done:
            return
        if depth > len(params):
            raise ValueError(f"condition cycle through {p.name!r}")
        if p.parent is not None:
            visit(by_name[p.parent], depth + 1)
        done.add(p.name)
        ordered.append(p)

    for p in params:
        visit(p)
    return ordered


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps "1" apart from 1 and True apart from 1 (as the engine does)."""
    if isinstance(a, (str, bool)) or isinstance(b, (str, bool)):
        return type(a) is type(b) and a == b
    return a == b


def is_active(param: Param, config: dict[str, Any]) -> bool:
    """Active when the parent is in `config` (i.e. active itself) and takes an allowed value."""
    if param.parent is None:
        return True
    if param.parent not in config:
        return False
    return any(same_value(config[param.parent], v) for v in param.parent_values)


def active_only(params: list[Param], config: dict[str, Any]) -> dict[str, Any]:
    """Drop inactive params (peers that sample every param hand those back too) and snap values."""
    out: dict[str, Any] = {}
    for p in params:
        if p.name in config and is_active(p, out):
            out[p.name] = p.snap(config[p.name])
    return out


def clean(params: list[Param], raw: dict[str, Any]) -> dict[str, Any]:
    """What the objective sees of an optimizer's `raw` configuration: the active params only,
    snapped to their grid, as plain Python scalars (identically for every method)."""
    return {k: to_builtin(v) for k, v in active_only(params, raw).items()}


def sample(params: list[Param], rng: np.random.Generator) -> dict[str, Any]:
    """A uniform random configuration holding exactly the active params."""
    config: dict[str, Any] = {}
    for p in params:
        if is_active(p, config):
            config[p.name] = p.sample(rng)
    return config


def to_builtin(value: Any) -> Any:
    """numpy scalars -> Python scalars, so configs compare, hash and serialise plainly."""
    if isinstance(value, np.generic):
        return value.item()
    return value
