"""Whether a study found by name is the one a caller describes (``load_if_exists``).

The server stores a space normalised (parents before children, defaults filled in), so spaces
are compared param by param in that normal form, not as the JSON the caller wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dyesp_client._study import Study

__all__ = ["check_same_study", "space_differences"]


def _choice(value: Any) -> tuple[str, Any]:
    """A choice with its kind, so ``True`` differs from ``1`` and ``"1"`` as the server says."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    return ("number", float(value))


def _normal(param: Mapping[str, Any]) -> dict[str, Any]:
    kind = param.get("type")
    out: dict[str, Any] = {"type": kind}
    if kind == "categorical":
        out["choices"] = [_choice(c) for c in param.get("choices") or []]
    else:
        out["low"], out["high"] = float(param["low"]), float(param["high"])
        out["log"] = bool(param.get("log") or False)
        step = param.get("step")
        out["step"] = None if step is None or (kind == "int" and step == 1) else float(step)
    condition = param.get("condition")
    out["condition"] = None if not condition else (
        condition["parent"], sorted(_choice(v) for v in condition["values"]))
    cell = param.get("cell")
    out["cell"] = None if not cell else (
        cell["name"], tuple(cell["edge"]),
        None if cell.get("zero") is None else _choice(cell["zero"]))
    return out


def space_differences(given: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                      stored: Mapping[str, Any]) -> list[str]:
    """What differs between the space a caller gave and a study's stored one (empty: same)."""
    given_params = given["params"] if isinstance(given, Mapping) else given
    mine = {p["name"]: _normal(p) for p in given_params}
    theirs = {p["name"]: _normal(p) for p in stored["params"]}
    out = [f"param {name!r} only in the given space" for name in mine if name not in theirs]
    out += [f"param {name!r} only in the stored space" for name in theirs if name not in mine]
    for name in mine.keys() & theirs.keys():
        for key, value in mine[name].items():
            if theirs[name][key] != value:
                out.append(f"param {name!r}: {key} differs")
    return sorted(out)


def check_same_study(study: Study, direction: str,
                     space: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError naming every difference between ``study`` and the one described."""
    problems = space_differences(space, study.space)
    if study.direction != direction:
        problems.insert(0, f"direction is {study.direction!r}, not {direction!r}")
    if problems:
        raise ValueError(f"study {study.name!r} ({study.id}) exists but differs from the one "
                         f"given: {'; '.join(problems)}; load it with load_study(name) or "
                         "choose another name")
