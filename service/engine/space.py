"""The data model of a search space: parameters, conditions, validation and uniform sampling.

Everything here is a frozen value object so a space can be shared between threads, cached per
study and compared by value. Errors name the offending field and say what must hold and what was
received (Optuna's distributions.py habit), because the API turns them into 422 responses verbatim.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.engine.cells import (
    FEATURES_PER_OP,
    MAX_CELL_EDGES,
    MAX_CELLS,
    CellEdge,
    CellError,
    parse_cell_edge,
)

# Limits a real HAS space never needs, so every ask costs time and memory polynomial in what a
# client may declare (docs/api-contract.md, "Limits of a space").
MAX_PARAMS = 256
MAX_CHOICES = 1024  # of one categorical
# The encoder's vector: one-hot choices, one number per numeric param, one activity bit per
# conditional param. It sizes every candidate matrix and the pruner's first layer (and so its
# stored weights): 2,048 covers a DARTS cell (14 edges x 8 operations, twice) many times over.
MAX_ENCODED_WIDTH = 2048
# A cell annotation's limits (cells per space, edges per cell, node numbers) live beside its
# parser in ``service.engine.cells``; its structure features count in the encoded width below.
MAX_CONDITION_DEPTH = 8  # params on one parent chain (a child of a child of ... of a root)
MAX_NAME_LENGTH = 128
# Numbers must be exact in float64, which the engine computes in: integers within +-(2**53 - 1);
# float bounds within +-1e15, so ``high - low`` and every grid point stay finite and distinct.
MAX_SAFE_INT = 2**53 - 1
MAX_ABS_FLOAT = 1e15
MAX_GRID_POINTS = 2**53  # of a stepped float: (high - low) / step

Choice = str | int | float | bool


class SpaceError(ValueError):
    """A space or a configuration breaks a rule; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Condition:
    """The param is active only when ``parent`` currently takes one of ``values``."""

    parent: str
    values: tuple[Choice, ...]

    def holds(self, parent_value: Any) -> bool:
        try:  # one set lookup: conditions are checked for every param of every candidate
            return _choice_token(parent_value) in self._tokens
        except TypeError:  # unhashable: it matches no value
            return False

    @functools.cached_property
    def _tokens(self) -> frozenset[tuple[bool, bool, Any]]:
        return frozenset(_choice_token(v) for v in self.values)


@dataclass(frozen=True)
class FloatParam:
    """A real number in ``[low, high]``, optionally log-scaled or quantised to ``step``."""

    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    condition: Condition | None = None

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return self.clip(value)

    def clip(self, value: float) -> float:
        """Bring a number onto the param's domain (range and step grid)."""
        value = min(max(float(value), self.low), self.high)
        if self.step is not None:
            value = self.low + round((value - self.low) / self.step) * self.step
            value = min(max(value, self.low), self.high)
        return value


@dataclass(frozen=True)
class IntParam:
    """An integer in ``[low, high]`` on a grid of ``step`` (default 1), optionally log-scaled."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    condition: Condition | None = None

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            # Sample in log space over [low - 0.5, high + 0.5] so the ends get their fair share.
            value = math.exp(rng.uniform(math.log(self.low - 0.5), math.log(self.high + 0.5)))
            return self.clip(value)
        n_values = (self.high - self.low) // self.step + 1
        return self.low + int(rng.integers(n_values)) * self.step

    def clip(self, value: float) -> int:
        value = min(max(float(value), self.low), self.high)
        return min(max(self.low + round((value - self.low) / self.step) * self.step, self.low),
                   self.high)


@dataclass(frozen=True)
class CategoricalParam:
    """One of a finite, unordered set of choices (strings, numbers or booleans); ``cell`` says
    it is the operation on an edge of a DAG cell (``service.engine.cells``), None for most."""

    name: str
    choices: tuple[Choice, ...]
    condition: Condition | None = None
    cell: CellEdge | None = None

    def sample(self, rng: np.random.Generator) -> Choice:
        return self.choices[int(rng.integers(len(self.choices)))]

    def index(self, value: Any) -> int:
        """Position of ``value`` among the choices; raises ValueError when absent."""
        try:  # the hot path of every encoding: a dict lookup that makes _same_choice's cuts
            hit = _choice_lookup(self).get(_choice_token(value))
        except TypeError:  # unhashable: let the slow path say it is absent
            hit = None
        if hit is not None:
            return hit
        for i, choice in enumerate(self.choices):
            if _same_choice(value, choice):
                return i
        raise ValueError(value)

    def indices(self, values: Iterable[Any]) -> list[int]:
        """``index`` of each value, the lookups fetched once: encoding a candidate pool asks for
        thousands, and fetching a lookup hashes the whole param each time. Strings (most
        choices) are looked up directly: a string equals only string choices, so its token
        (``_choice_token``) is redundant."""
        values = values if isinstance(values, Sequence) else list(values)
        try:
            out: list[int | None] = list(map(_string_lookup(self).get, values))
        except TypeError:  # an unhashable value: each goes the general way
            out = [None] * len(values)
        if None in out:
            lookup = _choice_lookup(self)
            for i, hit in enumerate(out):
                if hit is None:
                    value = values[i]
                    try:
                        hit = lookup.get(_choice_token(value))
                    except TypeError:
                        hit = None
                    out[i] = hit if hit is not None else self.index(value)
        return out  # type: ignore[return-value]  # every None was replaced


Param = FloatParam | IntParam | CategoricalParam


def _choice_token(value: Any) -> tuple[bool, bool, Any]:
    """A dict key that equals another exactly when ``_same_choice`` says the values match."""
    return isinstance(value, bool), isinstance(value, str), value


@functools.lru_cache(maxsize=4096)
def _string_lookup(param: CategoricalParam) -> dict[str, int]:
    """The string choices' positions (the first of equal ones, as ``_choice_lookup``)."""
    lookup: dict[str, int] = {}
    for i, choice in enumerate(param.choices):
        if isinstance(choice, str):
            lookup.setdefault(choice, i)
    return lookup


@functools.lru_cache(maxsize=4096)
def _choice_lookup(param: CategoricalParam) -> dict[tuple[bool, bool, Any], int]:
    lookup: dict[tuple[bool, bool, Any], int] = {}
    for i, choice in enumerate(param.choices):
        lookup.setdefault(_choice_token(choice), i)
    return lookup


@dataclass(frozen=True)
class SearchSpace:
    """An ordered tuple of params; parents always come before the params they condition.

    >>> space = SearchSpace.from_dict({"params": [
    ...     {"name": "depth", "type": "int", "low": 1, "high": 4},
    ...     {"name": "width_3", "type": "int", "low": 16, "high": 256, "log": True,
    ...      "condition": {"parent": "depth", "values": [3, 4]}},
    ...     {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1, "log": True}]})
    >>> config = space.sample(np.random.default_rng(0))
    >>> space.validate_config(config) == config
    True
    """

    params: tuple[Param, ...]
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Build and validate a space from its API form ``{"params": [...]}``."""
        return parse_space(data)

    def to_dict(self) -> dict[str, Any]:
        return {"params": [param_to_dict(p) for p in self.params]}

    @property
    def fingerprint(self) -> str:
        """A short stable hash of the space, so stored artefacts can refuse a different layout."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def is_active(self, param: Param, config: Mapping[str, Any]) -> bool:
        """Whether ``param`` takes part in ``config`` (its parent chain is active and matches)."""
        condition = param.condition
        while condition is not None:
            if condition.parent not in config:
                return False
            if not condition.holds(config[condition.parent]):
                return False
            condition = self._by_name[condition.parent].condition
        return True

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniform random configuration holding exactly the active params."""
        config: dict[str, Any] = {}
        for param in self.params:
            if self.is_active(param, config):
                config[param.name] = param.sample(rng)
        return config

    def complete(self, partial: Mapping[str, Any], rng: np.random.Generator, *,
                 checked: bool = False) -> dict[str, Any]:
        """Keep the active values of ``partial``, drop inactive ones and sample what is missing.

        Strategies that change one value (a parent, say) use this to repair the rest.
        ``checked``: the values are known to be on their params' domains (the encoder made
        them), so they are kept as they are instead of validated again.
        """
        config: dict[str, Any] = {}
        for param in self.params:
            if not self.is_active(param, config):
                continue
            if param.name in partial:
                value = partial[param.name]
                config[param.name] = value if checked else _coerce(param, value,
                                                                   f"params.{param.name}")
            else:
                config[param.name] = param.sample(rng)
        return config

    def _check_names(self, config: Mapping[str, Any]) -> None:
        """A user-given configuration is an object naming only this space's params."""
        if not isinstance(config, Mapping):
            raise SpaceError("params", f"must be an object, got {type(config).__name__}")
        for name in config:
            if name not in self._by_name:
                raise SpaceError(f"params.{name}", "is not a parameter of this study's space")

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a user-given configuration: every active param present and in range, nothing else.

        Returns the configuration with numbers coerced to their param's type, in space order.
        """
        self._check_names(config)
        result: dict[str, Any] = {}
        for param in self.params:
            path = f"params.{param.name}"
            active = self.is_active(param, result)
            if not active:
                if param.name in config:
                    raise SpaceError(path, "is inactive under the given parent values")
                continue
            if param.name not in config:
                raise SpaceError(path, "is required (active) but missing")
            result[param.name] = _coerce(param, config[param.name], path)
        return result

    def validate_partial(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a configuration that may leave params out (an enqueue with some values fixed,
        the rest filled in when it is handed out): every given param exists, holds a valid value
        and is active under the given values of its parents, which must be given too (else
        whether it is active cannot be known).

        Returns the given values coerced to their param's type, in space order.

        >>> space = SearchSpace.from_dict({"params": [
        ...     {"name": "depth", "type": "int", "low": 1, "high": 4},
        ...     {"name": "width_3", "type": "int", "low": 16, "high": 256,
        ...      "condition": {"parent": "depth", "values": [3, 4]}},
        ...     {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-1}]})
        >>> space.validate_partial({"lr": 0.01})
        {'lr': 0.01}
        >>> try:
        ...     space.validate_partial({"depth": 1, "width_3": 32})
        ... except SpaceError as error:
        ...     print(error)
        params.width_3: is inactive under the given parent values
        """
        self._check_names(config)
        result: dict[str, Any] = {}
        for param in self.params:
            if param.name not in config:
                continue
            path = f"params.{param.name}"
            parent = param.condition.parent if param.condition is not None else None
            if parent is not None and parent not in config:
                raise SpaceError(path, f"is conditional on {parent!r}: give {parent!r} too, so "
                                 "its condition can be checked")
            if not self.is_active(param, result):
                raise SpaceError(path, "is inactive under the given parent values")
            result[param.name] = _coerce(param, config[param.name], path)
        return result


def _same_choice(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 and "1" apart from 1, as users mean them."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_integral(value: Any) -> bool:
    """Whether a number is a whole one, checked exactly (``2**53 + 1`` is; a float compare of it
    with its own float is not)."""
    if isinstance(value, (int, np.integer)):
        return True
    return math.isfinite(float(value)) and float(value).is_integer()


def _coerce(param: Param, value: Any, path: str) -> Any:
    if isinstance(param, CategoricalParam):
        try:
            return param.choices[param.index(value)]
        except ValueError:
            raise SpaceError(path, f"must be one of {list(param.choices)}, got {value!r}") from None
    if not _is_number(value) or not math.isfinite(float(value)):
        raise SpaceError(path, f"must be a finite number, got {value!r}")
    if not param.low <= value <= param.high:
        raise SpaceError(path, f"`{param.low} <= value <= {param.high}` must hold, got {value!r}")
    if isinstance(param, IntParam):
        if not _is_integral(value) or (int(value) - param.low) % param.step:
            raise SpaceError(path, f"must be an integer on step {param.step} from {param.low}, "
                             f"got {value!r}")
        return int(value)
    if param.step is not None:
        k = (float(value) - param.low) / param.step
        if abs(k - round(k)) > 1e-6:
            raise SpaceError(path, f"must lie on step {param.step} from {param.low}, got {value!r}")
    return float(value)


# --- parsing the API form ---------------------------------------------------------------------

_KEYS = {
    "float": {"name", "type", "low", "high", "log", "step", "condition"},
    "int": {"name", "type", "low", "high", "log", "step", "condition"},
    "categorical": {"name", "type", "choices", "condition", "cell"},
}


def parse_space(data: Mapping[str, Any]) -> SearchSpace:
    """Validate the API form of a space; raise SpaceError naming the first bad field."""
    if not isinstance(data, Mapping):
        raise SpaceError("space", f"must be an object, got {type(data).__name__}")
    unknown = set(data) - {"params"}
    if unknown:
        raise SpaceError(f"space.{sorted(unknown)[0]}", "is not a known field")
    raw = data.get("params")
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise SpaceError("space.params", "must be a list of params")
    if not raw:
        raise SpaceError("space.params", "must hold at least one param")
    if len(raw) > MAX_PARAMS:
        raise SpaceError("space.params", f"at most {MAX_PARAMS} params allowed, got {len(raw)}")
    params: list[Param] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        param = _parse_param(item, f"space.params[{i}]")
        if param.name in seen:
            raise SpaceError(f"space.params[{i}].name",
                             f"duplicate name {param.name!r} (also params[{seen[param.name]}])")
        seen[param.name] = i
        params.append(param)
    ordered = tuple(_order_by_condition(params, seen))
    _check_cells(params, seen)
    _check_size(ordered, seen)
    return SearchSpace(ordered)


def _check_cells(params: list[Param], index: dict[str, int]) -> None:
    """The edges of one cell share their choices (in order) and their zero, each edge appears
    once, and the cells and their edges stay within ``MAX_CELLS`` and ``MAX_CELL_EDGES``."""
    first: dict[str, CategoricalParam] = {}
    edges: dict[str, dict[tuple[int, int], str]] = {}
    for p in params:
        if not isinstance(p, CategoricalParam) or p.cell is None:
            continue
        path = f"space.params[{index[p.name]}]"
        cell = p.cell
        if cell.zero is not None and not _value_possible(p, cell.zero):
            raise SpaceError(f"{path}.cell.zero", f"must be one of the param's choices "
                             f"{list(p.choices)}, got {cell.zero!r}")
        head = first.setdefault(cell.cell, p)
        if len(first) > MAX_CELLS:
            raise SpaceError(f"{path}.cell.name", f"at most {MAX_CELLS} cells in a space, got "
                             f"{cell.cell!r} as cell {len(first)}")
        if [_choice_token(c) for c in p.choices] != [_choice_token(c) for c in head.choices]:
            raise SpaceError(f"{path}.choices", f"the edges of cell {cell.cell!r} must have the "
                             f"same choices in the same order: {head.name!r} has "
                             f"{list(head.choices)}, got {list(p.choices)}")
        zero = head.cell.zero  # type: ignore[union-attr]
        if (cell.zero is None) != (zero is None) or (
                zero is not None and not _same_choice(cell.zero, zero)):
            raise SpaceError(f"{path}.cell.zero", f"the edges of cell {cell.cell!r} must share "
                             f"one zero: {head.name!r} has {zero!r}, got {cell.zero!r}")
        seen = edges.setdefault(cell.cell, {})
        edge = (cell.source, cell.target)
        if edge in seen:
            raise SpaceError(f"{path}.cell.edge", f"edge {list(edge)} of cell {cell.cell!r} is "
                             f"already {seen[edge]!r}")
        seen[edge] = p.name
        if len(seen) > MAX_CELL_EDGES:
            raise SpaceError(f"{path}.cell", f"at most {MAX_CELL_EDGES} edges in a cell, got "
                             f"{len(seen)} in {cell.cell!r}")


def _check_size(params: tuple[Param, ...], index: dict[str, int]) -> None:
    """The limits on what a space costs the engine: its encoded width (with the cells'
    structure features, which the pruner and the GP read beside it) and condition depth."""
    width = 0
    cells: set[str] = set()
    depth: dict[str, int] = {}
    for p in params:  # parents come first
        width += (len(p.choices) if isinstance(p, CategoricalParam) else 1) + \
            (p.condition is not None)
        if isinstance(p, CategoricalParam) and p.cell is not None and p.cell.cell not in cells:
            cells.add(p.cell.cell)
            width += FEATURES_PER_OP * len(p.choices) + 1
        depth[p.name] = 1 if p.condition is None else depth[p.condition.parent] + 1
        if depth[p.name] > MAX_CONDITION_DEPTH:
            raise SpaceError(f"space.params[{index[p.name]}].condition",
                             f"at most {MAX_CONDITION_DEPTH} params on one chain of conditions, "
                             f"got {depth[p.name]} ending at {p.name!r}")
    if width > MAX_ENCODED_WIDTH:
        raise SpaceError("space.params",
                         f"the encoded width (all categorical choices + one per numeric param + "
                         f"one per conditional param + {FEATURES_PER_OP} per choice of a cell + "
                         f"one per cell) must be at most {MAX_ENCODED_WIDTH}, got {width}")


def _parse_param(item: Any, path: str) -> Param:
    if not isinstance(item, Mapping):
        raise SpaceError(path, f"must be an object, got {type(item).__name__}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SpaceError(f"{path}.name", "must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise SpaceError(f"{path}.name", f"at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    kind = item.get("type")
    if kind not in _KEYS:
        raise SpaceError(f"{path}.type", f"must be one of float, int, categorical, got {kind!r}")
    unknown = set(item) - _KEYS[kind]
    if unknown:
        raise SpaceError(f"{path}.{sorted(unknown)[0]}", f"is not a field of a {kind} param")
    condition = _parse_condition(item.get("condition"), f"{path}.condition")
    if kind == "categorical":
        cell = None
        if item.get("cell") is not None:
            try:
                cell = parse_cell_edge(item["cell"], MAX_NAME_LENGTH)
            except CellError as error:
                raise SpaceError(f"{path}.{error.field}", error.reason) from None
        return CategoricalParam(name, _parse_choices(item.get("choices"), f"{path}.choices"),
                                condition, cell)
    log = item.get("log", False)
    if log is None:
        log = False
    if not isinstance(log, bool):
        raise SpaceError(f"{path}.log", f"must be a boolean, got {log!r}")
    low, high = item.get("low"), item.get("high")
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value) or not math.isfinite(float(value)):
            raise SpaceError(f"{path}.{key}", f"must be a finite number, got {value!r}")
        if kind == "int" and not _is_integral(value):
            raise SpaceError(f"{path}.{key}", f"must be an integer, got {value!r}")
        if kind == "int" and abs(value) > MAX_SAFE_INT:
            raise SpaceError(f"{path}.{key}", f"`|{key}| <= 2**53 - 1` must hold (integers exact "
                             f"in float64), got {value!r}")
        if kind == "float" and abs(value) > MAX_ABS_FLOAT:
            raise SpaceError(f"{path}.{key}", f"`|{key}| <= 1e15` must hold, got {value!r}")
    if not low <= high:
        raise SpaceError(f"{path}.high", f"`low <= high` must hold, got low={low}, high={high}")
    if log and low <= 0:
        raise SpaceError(f"{path}.low", f"`low > 0` must hold when log is true, got low={low}")
    step = item.get("step")
    if step is not None:
        if not _is_number(step) or not math.isfinite(float(step)) or step <= 0:
            raise SpaceError(f"{path}.step", f"must be a positive number, got {step!r}")
        if log:
            raise SpaceError(f"{path}.step", "cannot be combined with log=true")
        if kind == "int" and not _is_integral(step):
            raise SpaceError(f"{path}.step", f"must be an integer for an int param, got {step!r}")
        if kind == "int" and step > MAX_SAFE_INT:
            raise SpaceError(f"{path}.step", f"`step <= 2**53 - 1` must hold, got {step!r}")
        k = (high - low) / step
        if k > MAX_GRID_POINTS:
            raise SpaceError(f"{path}.step", f"`(high - low) / step <= 2**53` must hold, got "
                             f"{k:.3g} grid points")
        if abs(k - round(k)) > 1e-9 * max(1.0, abs(k)):
            raise SpaceError(f"{path}.step", f"must divide high - low = {high - low}, got {step}")
    if kind == "int":
        return IntParam(name, int(low), int(high), log, int(step or 1), condition)
    return FloatParam(name, float(low), float(high), log,
                      None if step is None else float(step), condition)


def _parse_choices(raw: Any, path: str) -> tuple[Choice, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise SpaceError(path, "must be a non-empty list")
    if len(raw) > MAX_CHOICES:
        raise SpaceError(path, f"at most {MAX_CHOICES} choices allowed, got {len(raw)}")
    choices: list[Choice] = []
    seen: set[tuple[bool, bool, Any]] = set()  # _choice_token: one lookup per choice, not a scan
    for i, choice in enumerate(raw):
        if not isinstance(choice, (str, bool, int, float)) or (
            isinstance(choice, float) and not math.isfinite(choice)
        ):
            raise SpaceError(f"{path}[{i}]", f"must be a string, number or boolean, got {choice!r}")
        if isinstance(choice, int) and not isinstance(choice, bool) and abs(choice) > MAX_SAFE_INT:
            raise SpaceError(f"{path}[{i}]", f"`|choice| <= 2**53 - 1` must hold, got {choice!r}")
        token = _choice_token(choice)
        if token in seen:
            raise SpaceError(f"{path}[{i}]", f"duplicate choice {choice!r}")
        seen.add(token)
        choices.append(choice)
    return tuple(choices)


def _parse_condition(raw: Any, path: str) -> Condition | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpaceError(path, "must be an object {parent, values}")
    unknown = set(raw) - {"parent", "values"}
    if unknown:
        raise SpaceError(f"{path}.{sorted(unknown)[0]}", "is not a field of a condition")
    parent = raw.get("parent")
    if not isinstance(parent, str) or not parent:
        raise SpaceError(f"{path}.parent", "must name another param")
    values = raw.get("values")
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)) or not values:
        raise SpaceError(f"{path}.values", "must be a non-empty list")
    for i, v in enumerate(values):
        if not isinstance(v, (str, bool, int, float)):
            raise SpaceError(f"{path}.values[{i}]",
                             f"must be a string, number or boolean, got {v!r}")
    return Condition(parent, tuple(values))


def _order_by_condition(params: list[Param], index: dict[str, int]) -> list[Param]:
    """Topologically order params so parents precede children; reject unknown parents and cycles."""
    by_name = {p.name: p for p in params}
    for p in params:
        if p.condition is None:
            continue
        path = f"space.params[{index[p.name]}].condition"
        parent = by_name.get(p.condition.parent)
        if parent is None:
            raise SpaceError(f"{path}.parent", f"unknown param {p.condition.parent!r}")
        if parent.name == p.name:
            raise SpaceError(f"{path}.parent", "a param cannot be conditioned on itself")
        for i, v in enumerate(p.condition.values):
            if not _value_possible(parent, v):
                raise SpaceError(f"{path}.values[{i}]",
                                 f"{v!r} is not a possible value of {parent.name!r}")
    ordered: list[Param] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(p: Param, chain: list[str]) -> None:
        if state.get(p.name) == 2:
            return
        if state.get(p.name) == 1:
            cycle = " -> ".join([*chain, p.name])
            raise SpaceError(f"space.params[{index[p.name]}].condition", f"cycle: {cycle}")
        state[p.name] = 1
        if p.condition is not None:
            visit(by_name[p.condition.parent], [*chain, p.name])
        state[p.name] = 2
        ordered.append(p)

    for p in params:
        visit(p, [])
    return ordered


def _value_possible(param: Param, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        try:
            param.index(value)
        except ValueError:
            return False
        return True
    return _is_number(value) and param.low <= value <= param.high


def param_to_dict(param: Param) -> dict[str, Any]:
    """The API form of one param (inverse of parsing)."""
    out: dict[str, Any] = {"name": param.name}
    if isinstance(param, CategoricalParam):
        out.update(type="categorical", choices=list(param.choices))
    else:
        out.update(type="int" if isinstance(param, IntParam) else "float",
                   low=param.low, high=param.high, log=param.log)
        if isinstance(param, FloatParam) and param.step is not None:
            out["step"] = param.step
        if isinstance(param, IntParam) and param.step != 1:
            out["step"] = param.step
    if param.condition is not None:
        out["condition"] = {"parent": param.condition.parent,
                            "values": list(param.condition.values)}
    if isinstance(param, CategoricalParam) and param.cell is not None:
        out["cell"] = param.cell.to_dict()
    return out


# --- helpers for strategies: identity, size and enumeration of configurations ---------------------

def config_key(config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A hashable identity of a configuration, so "already tried" is one set lookup.

    Floats are rounded to 12 significant digits: a value that went through JSON and back (or
    through the encoder) must still match itself.
    """
    items: list[tuple[str, Any]] = []
    append = items.append
    for name in sorted(config):
        value = config[name]
        kind = type(value)  # exact types first: a key per candidate, hundreds per ask
        if kind is str or kind is bool:
            append((name, value))
        elif kind is float:
            append((name, int(value) if value.is_integer() else float(f"{value:.12g}")))
        elif kind is int:  # as the general path (via float), which is exact up to 2**53
            append((name, value if -_EXACT_INT <= value <= _EXACT_INT else int(float(value))))
        elif isinstance(value, (bool, str)):
            append((name, value))
        elif _is_number(value):
            number = float(value)
            append((name, int(number) if number.is_integer() else float(f"{number:.12g}")))
        else:
            append((name, repr(value)))
    return tuple(items)


_EXACT_INT = 2**53  # every int up to this magnitude survives int(float(x)) unchanged


def n_values(param: Param) -> float:
    """How many values a param can take; ``inf`` for a continuous float."""
    if isinstance(param, CategoricalParam):
        return float(len(param.choices))
    if isinstance(param, IntParam):
        return float((param.high - param.low) // param.step + 1)
    if param.step is not None:
        return float(round((param.high - param.low) / param.step) + 1)
    return math.inf


@functools.lru_cache(maxsize=1024)
def space_size(space: SearchSpace) -> float:
    """The number of distinct configurations (``inf`` with a continuous float).

    Conditional params are counted only under the parent values that activate them, so a tiny
    conditional space is recognised as exhausted rather than sampled forever. Conditions form a
    forest (one parent each), so the count is a product over roots of per-subtree sums: linear in
    the space's declared size, never a walk over its configurations.
    """
    children: dict[str, list[Param]] = {}
    for param in space.params:
        if param.condition is not None:
            children.setdefault(param.condition.parent, []).append(param)

    def subtree(param: Param) -> float:
        kids = children.get(param.name, [])
        if not kids:
            return n_values(param)
        counts = [subtree(kid) for kid in kids]  # parents come first: depth <= the chain limit
        # Values no condition mentions activate no child: each counts as one configuration.
        mentioned: dict[tuple[bool, bool, Any], Any] = {}
        for kid in kids:
            for value in kid.condition.values:  # type: ignore[union-attr]
                if _on_domain(param, value):
                    mentioned.setdefault(_choice_token(value), value)
        total = n_values(param) - len(mentioned)
        for value in mentioned.values():
            product = 1.0
            for kid, count in zip(kids, counts, strict=True):
                if kid.condition.holds(value):  # type: ignore[union-attr]
                    product *= count
            total += product
        return total

    total = 1.0
    for param in space.params:
        if param.condition is None:
            total *= subtree(param)
    return total


def _on_domain(param: Param, value: Any) -> bool:
    """Whether ``param`` can take exactly ``value`` (a condition naming any other value never
    holds)."""
    if not _value_possible(param, value):
        return False
    if isinstance(param, CategoricalParam):
        return True
    if isinstance(param, IntParam):
        return _is_integral(value) and (int(value) - param.low) % param.step == 0
    if param.step is None:
        return True  # one point of a continuum: counts nothing next to infinity
    return param.clip(value) == value


def _values(param: Param, limit: int) -> list[Any] | None:
    """Every value of a discrete param in order, or None when continuous or above ``limit``."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    count = n_values(param)
    if math.isinf(count) or count > limit:
        return None
    if isinstance(param, IntParam):
        return list(range(param.low, param.high + 1, param.step))
    assert param.step is not None
    return [param.clip(param.low + k * param.step) for k in range(int(count))]


def enumerate_configs(space: SearchSpace, limit: int) -> list[dict[str, Any]] | None:
    """All configurations of a discrete space in a fixed order, or None when more than ``limit``.

    Used to find the last untried configurations of a small space instead of sampling blindly.
    """
    if space_size(space) > limit:
        return None
    out: list[dict[str, Any]] = []

    def walk(i: int, config: dict[str, Any]) -> None:
        if i == len(space.params):
            out.append(dict(config))
            return
        param = space.params[i]
        if not space.is_active(param, config):
            walk(i + 1, config)
            return
        for value in _values(param, limit) or []:
            config[param.name] = value
            walk(i + 1, config)
            del config[param.name]

    walk(0, {})
    return out
